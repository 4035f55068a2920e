import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Code, ContextValues } from '@connectrpc/connect';
import { httpStatusOf, statusBody } from '../../errors.js';

/**
 * A request as node:http and node:http2's compatibility API hand it over. One name for every layer that
 * touches Node's requests (the port, the public routes, the RPC adapter, the fast path, REST), so they
 * wire together without casts; it is the very union connect-node accepts.
 */
export type NodeRequest = IncomingMessage | Http2ServerRequest;

/** The response paired with {@link NodeRequest}. */
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** Builds the per-request context values (client address, ...): every protocol's calls see the same ones. */
export type ContextValuesOf = (req: NodeRequest) => ContextValues;

/**
 * Writes the status line and headers. The two response classes each overload writeHead, so TypeScript
 * cannot call it on their union; both accept this form.
 */
export function writeHead(res: NodeResponse, status: number, headers?: OutgoingHttpHeaders): void {
  (res as ServerResponse).writeHead(status, headers);
}

/** The path of a request's URL, without its query (which may carry a token, so it is kept out of logs). */
export function pathOf(req: NodeRequest, fallback = ''): string {
  return (req.url ?? fallback).split('?', 1)[0]!;
}

/** Writes JSON text already serialized, with its length, so the answer needs no chunked framing. */
export function sendJsonText(res: NodeResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  writeHead(res, status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** Writes a value as JSON with the given status. */
export function sendJson(res: NodeResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** How a plain-HTTP error answer departs from the defaults: HTTP status, google.rpc.Status details, headers. */
export interface StatusOptions {
  /** Overrides the code's HTTP status where HTTP says something more precise (405, 413). */
  status?: number;
  details?: unknown[];
  headers?: Record<string, string>;
}

/**
 * Writes a plain-HTTP error answer: a google.rpc.Status body with the HTTP status src/errors.ts maps its
 * code to, so REST, the public routes and the not-found answer all speak the same error vocabulary.
 */
export function sendStatus(res: NodeResponse, code: Code, message: string, options: StatusOptions = {}): void {
  sendJson(res, options.status ?? httpStatusOf(code), statusBody(code, message, options.details), options.headers);
}
