import type { UniversalServerResponse } from '@connectrpc/connect/protocol';

/**
 * Percent-encodes a grpc-message value the way the gRPC spec asks: only '%' and bytes outside printable
 * ASCII. connect-node encodes with encodeURIComponent (":" becomes "%3A"), which @grpc/grpc-js — decoding
 * with decodeURI — then shows to its users as is ("email.email%3A is not a valid ...").
 */
export function specGrpcMessage(encoded: string): string {
  let text: string;
  try {
    text = decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

function fixGrpcMessage(h: Headers | undefined): void {
  const m = h?.get('grpc-message');
  if (m) h!.set('grpc-message', specGrpcMessage(m));
}

/**
 * For gRPC responses of Connect's handler (not gRPC-web, whose clients decode fully): re-encodes
 * grpc-message in headers and trailers with {@link specGrpcMessage}, so a gRPC client shows the same
 * text whether the fast path or Connect answered.
 */
export function withSpecGrpcMessage(uRes: UniversalServerResponse): UniversalServerResponse {
  const type = uRes.header?.get('content-type') ?? '';
  if (!type.startsWith('application/grpc') || type.startsWith('application/grpc-web')) return uRes;
  fixGrpcMessage(uRes.header);
  const body = uRes.body;
  if (!body) {
    fixGrpcMessage(uRes.trailer);
    return uRes;
  }
  // The trailers are filled in when the body ends (the handler sets the status last).
  async function* fixedAtEnd() {
    yield* body!;
    fixGrpcMessage(uRes.trailer);
  }
  return { ...uRes, body: fixedAtEnd() };
}
