/**
 * Raw calls with arbitrary bytes on each of the four protocols, for malformed input and fuzzing: no
 * client library stands between the test and the wire, so a request can be as broken as wanted. Every
 * answer is reduced to the gRPC code it carries (or, for REST, the google.rpc.Status code) and the HTTP
 * status, so one assertion covers all four.
 */
import type http2 from 'node:http2';
import net from 'node:net';

/** How long a call may go unanswered before the helpers report it as "no answer" (a server bug, not slowness). */
const NO_ANSWER_MS = 15_000;

/** One answer: the gRPC code (undefined when none could be read), HTTP status and message. */
export interface RawAnswer {
  code: number | undefined;
  httpStatus: number;
  message: string;
}

/** Connect's JSON error code names as numeric gRPC codes. */
const CONNECT_CODES = [
  'ok',
  'canceled',
  'unknown',
  'invalid_argument',
  'deadline_exceeded',
  'not_found',
  'already_exists',
  'permission_denied',
  'resource_exhausted',
  'failed_precondition',
  'aborted',
  'out_of_range',
  'unimplemented',
  'internal',
  'unavailable',
  'data_loss',
  'unauthenticated',
];

/** gRPC's message prefix: flags, then the length as a big-endian uint32. */
export function frame(message: Uint8Array, flags = 0, length = message.length): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(length >>> 0, 1);
  out.set(message, 5);
  return out;
}

/** A gRPC call over HTTP/2 with a raw body (prefix included); the status from trailers or trailers-only headers. */
export function grpcCall(session: http2.ClientHttp2Session, path: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', () => {});
    req.on('error', reject);
    const timer = setTimeout(() => {
      req.close();
      reject(new Error(`no answer within ${NO_ANSWER_MS} ms`));
    }, NO_ANSWER_MS);
    req.on('close', () => {
      clearTimeout(timer);
      const all = { ...head, ...trailers };
      const status = all['grpc-status'];
      resolve({
        code: status === undefined ? undefined : Number(status),
        httpStatus: Number(head[':status'] ?? 0),
        message: decodeURIComponent(String(all['grpc-message'] ?? '')),
      });
    });
    req.end(body);
  });
}

/** The status of a gRPC-web answer: in the headers (trailers-only) or in the body's trailer frame. */
function grpcWebStatus(headers: Headers, body: Buffer): { code: number | undefined; message: string } {
  const fields = new Map<string, string>();
  headers.forEach((v, k) => fields.set(k, v));
  let at = 0;
  while (at + 5 <= body.length) {
    const len = body.readUInt32BE(at + 1);
    if (body[at]! & 0x80) {
      for (const line of body
        .subarray(at + 5, at + 5 + len)
        .toString('utf8')
        .split('\r\n')) {
        const i = line.indexOf(':');
        if (i > 0) fields.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
    }
    at += 5 + len;
  }
  const status = fields.get('grpc-status');
  return { code: status === undefined ? undefined : Number(status), message: decodeURIComponent(fields.get('grpc-message') ?? '') };
}

/** A body fetch accepts (a copy on its own ArrayBuffer). */
const asBody = (body: Uint8Array | string | undefined): BodyInit | undefined => (body === undefined || typeof body === 'string' ? body : new Uint8Array(body));

/** A gRPC-web call over HTTP/1.1 (fetch) with a raw body. */
export async function grpcWebCall(url: string, path: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', ...headers },
    body: asBody(body),
    signal: AbortSignal.timeout(NO_ANSWER_MS),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { ...grpcWebStatus(res.headers, bytes), httpStatus: res.status };
}

/** A Connect unary call over HTTP/1.1 (fetch): `application/proto` or `application/json`, raw body. */
export async function connectCall(url: string, path: string, body: Uint8Array | string, contentType: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': contentType, 'connect-protocol-version': '1', ...headers },
    body: asBody(body),
    signal: AbortSignal.timeout(NO_ANSWER_MS),
  });
  const text = await res.text();
  if (res.status === 200) return { code: 0, httpStatus: 200, message: '' };
  try {
    const err = JSON.parse(text) as { code?: string; message?: string };
    const code = CONNECT_CODES.indexOf(err.code ?? '');
    return { code: code < 0 ? undefined : code, httpStatus: res.status, message: err.message ?? '' };
  } catch {
    return { code: undefined, httpStatus: res.status, message: text.slice(0, 200) };
  }
}

/** A REST call (fetch) with a raw body; the google.rpc.Status code of an error answer. */
export async function restCall(url: string, method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const res = await fetch(url + path, { method, headers: { 'content-type': 'application/json', ...headers }, body: asBody(body), signal: AbortSignal.timeout(NO_ANSWER_MS) });
  const text = await res.text();
  // Any 2xx is success over REST: POST /v2/sessions answers 201 Created, as ZITADEL does.
  if (res.ok) return { code: 0, httpStatus: res.status, message: '' };
  try {
    const err = JSON.parse(text) as { code?: number; message?: string };
    return { code: err.code, httpStatus: res.status, message: err.message ?? '' };
  } catch {
    return { code: undefined, httpStatus: res.status, message: text.slice(0, 200) };
  }
}

/**
 * Sends raw bytes on a fresh TCP connection and returns whatever comes back before the server closes
 * it (or `waitMs` passes): an answer that never came is an empty string, not a hang.
 */
export function rawExchange(port: number, bytes: Buffer | string, waitMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // The status line and headers are all a test reads.
      if (Buffer.concat(chunks).includes('\r\n\r\n')) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(bytes);
  });
}
