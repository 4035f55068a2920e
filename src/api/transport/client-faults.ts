import { Code } from '@connectrpc/connect';
import type { UniversalServerResponse } from '@connectrpc/connect/protocol';
import { HTTP_STATUS_TOO_LARGE, httpStatusOf } from '../../errors.js';

/**
 * Connect's handlers answer two client faults in the words of a server fault, and no option of theirs
 * changes it; this puts them right in the answers of Connect's handler, on every protocol:
 *
 * - bytes that are not a protobuf message (premature EOF, a bad varint, an illegal tag, invalid UTF-8,
 *   nesting past the recursion limit): Connect's binary serialization throws INTERNAL "parse binary: …";
 *   they are the client's bytes, so INVALID_ARGUMENT (HTTP 400 over Connect);
 * - a message over the size limit: RESOURCE_EXHAUSTED, which the Connect protocol answers with HTTP 429,
 *   a rate limit's status; a request that is too large is HTTP 413, as REST answers it.
 *
 * The faults are recognized by the messages Connect words them with (`@connectrpc/*` is pinned to one
 * exact version; test/malformed-input.test.ts fails if the wording changes). The INTERNAL that the gRPC
 * specification prescribes (a message flagged compressed without a grpc-encoding) is left alone.
 */

const PARSE_BINARY = 'parse binary:';
const TOO_LARGE = /larger than configured readMaxBytes/;

function decoded(message: string | null): string {
  if (!message) return '';
  try {
    return decodeURIComponent(message);
  } catch {
    return message;
  }
}

/** gRPC: fixes the status in trailers (set when the body ends). */
function fixGrpcStatus(h: Headers | undefined): void {
  if (h?.get('grpc-status') === String(Code.Internal) && decoded(h.get('grpc-message')).startsWith(PARSE_BINARY)) h.set('grpc-status', String(Code.InvalidArgument));
}

/** gRPC-web: the status travels in the body's trailer frame (flag 0x80), which Connect yields as a chunk of its own. */
function fixGrpcWebTrailerFrame(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== 0x80) return chunk;
  const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (buf.readUInt32BE(1) !== buf.length - 5) return chunk;
  const text = buf.subarray(5).toString('utf8');
  const lines = text.split('\r\n');
  const message = lines.find((l) => l.toLowerCase().startsWith('grpc-message:'));
  const internal = lines.findIndex((l) => /^grpc-status:\s*13$/i.test(l));
  if (internal < 0 || !message || !decoded(message.slice(message.indexOf(':') + 1).trim()).startsWith(PARSE_BINARY)) return chunk;
  lines[internal] = `grpc-status: ${Code.InvalidArgument}`;
  const data = Buffer.from(lines.join('\r\n'), 'utf8');
  const out = Buffer.alloc(5 + data.length);
  out[0] = 0x80;
  out.writeUInt32BE(data.length, 1);
  out.set(data, 5);
  return out;
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** Connect unary: the JSON error body and the HTTP status. */
async function fixConnectError(uRes: UniversalServerResponse): Promise<UniversalServerResponse> {
  const bytes = uRes.body ? await readAll(uRes.body as AsyncIterable<Uint8Array>) : Buffer.alloc(0);
  let error: { code?: unknown; message?: unknown };
  try {
    error = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { ...uRes, body: once(bytes) };
  }
  const message = typeof error.message === 'string' ? error.message : '';
  let status = uRes.status;
  let body: Uint8Array = bytes;
  if (error.code === 'internal' && message.startsWith(PARSE_BINARY)) {
    status = httpStatusOf(Code.InvalidArgument);
    body = Buffer.from(JSON.stringify({ ...error, code: 'invalid_argument' }), 'utf8');
    uRes.header?.set('content-length', String(body.byteLength));
  } else if (error.code === 'resource_exhausted' && TOO_LARGE.test(message)) {
    status = HTTP_STATUS_TOO_LARGE;
  }
  return { ...uRes, status, body: once(body) };
}

/**
 * The answer of Connect's handler with client faults in the client's words (see above). Only error
 * answers are touched: a gRPC or gRPC-web answer is inspected at its trailers, a Connect answer only when
 * its status is 500 or 429.
 */
export function withClientFaultCodes(uRes: UniversalServerResponse): UniversalServerResponse | Promise<UniversalServerResponse> {
  const type = uRes.header?.get('content-type') ?? '';
  const body = uRes.body as AsyncIterable<Uint8Array> | undefined;
  if (type.startsWith('application/grpc-web')) {
    if (!body) return uRes;
    async function* fixedFrames() {
      for await (const chunk of body!) yield fixGrpcWebTrailerFrame(chunk);
    }
    return { ...uRes, body: fixedFrames() };
  }
  if (type.startsWith('application/grpc')) {
    fixGrpcStatus(uRes.header);
    if (!body) {
      fixGrpcStatus(uRes.trailer);
      return uRes;
    }
    async function* fixedAtEnd() {
      yield* body!;
      fixGrpcStatus(uRes.trailer);
    }
    return { ...uRes, body: fixedAtEnd() };
  }
  if ((uRes.status === 500 || uRes.status === 429) && type.startsWith('application/json')) return fixConnectError(uRes);
  return uRes;
}
