import type net from 'node:net';
import { Code } from '@connectrpc/connect';
import { HTTP_STATUS_HEADERS_TOO_LARGE, HTTP_STATUS_TOO_LARGE, httpStatusOf, statusBody } from '../errors.js';

/** What Node's HTTP/1.1 parser refuses, and how it is answered: status, reason phrase, gRPC code. */
function answerOf(errorCode: string | undefined): { status: number; reason: string; code: Code; message: string } | undefined {
  switch (errorCode) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: HTTP_STATUS_HEADERS_TOO_LARGE, reason: 'Request Header Fields Too Large', code: Code.ResourceExhausted, message: 'request line or headers too large' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: HTTP_STATUS_TOO_LARGE, reason: 'Payload Too Large', code: Code.ResourceExhausted, message: 'chunk extensions too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, reason: 'Request Timeout', code: Code.DeadlineExceeded, message: 'the request took too long to arrive' };
    default:
      if (errorCode?.startsWith('HPE_'))
        return { status: httpStatusOf(Code.InvalidArgument), reason: 'Bad Request', code: Code.InvalidArgument, message: 'malformed HTTP request' };
      return undefined;
  }
}

/**
 * The HTTP/1.1 server's `clientError` listener: a request Node's parser refuses (a request line or header
 * over 16 KiB, malformed framing, a request that never finished arriving) is answered, with the status
 * HTTP has for it and a google.rpc.Status body, before the connection closes; a reset without an answer
 * leaves a client guessing. Errors of the socket itself (the client went away) are not answered.
 */
export function answerClientError(err: Error & { code?: string }, socket: net.Socket): void {
  const answer = answerOf(err.code);
  // As Node's default listener: only when no response of this connection has begun on the wire.
  const current = (socket as net.Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (answer && socket.writable && !current?.headersSent) {
    const body = JSON.stringify(statusBody(answer.code, answer.message));
    const head = `HTTP/1.1 ${answer.status} ${answer.reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close`;
    // Closed once the answer is flushed: the rest of what the client sends is not read.
    socket.end(`${head}\r\n\r\n${body}`, () => socket.destroy());
    return;
  }
  socket.destroy();
}
