import { Code, ConnectError, type ContextValues } from '@connectrpc/connect';
import type { UniversalHandler, UniversalServerResponse } from '@connectrpc/connect/protocol';
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import type { Logger } from '../../log.js';
import type { UnaryFastPath } from '../unary-fast-path.js';

/** A request of node:http or node:http2 (the type connect-node accepts; it does not export the name). */
export type NodeServerRequest = Parameters<typeof universalRequestFromNodeRequest>[0];
/** A response of node:http or node:http2. */
export type NodeServerResponse = Parameters<typeof universalResponseToNodeResponse>[1];

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

/** For gRPC (not gRPC-web, whose clients decode fully) responses: re-encodes grpc-message in headers and trailers. */
function withSpecGrpcMessage(uRes: UniversalServerResponse): UniversalServerResponse {
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

/** Builds the per-request context values (client address, ...) for a Node request. */
export type ContextValuesOf = (req: NodeServerRequest) => ContextValues;

/** What the RPC handler needs besides the router's handlers. */
export interface RpcNodeHandlerOptions {
  contextValues: ContextValuesOf;
  /** Serves paths that name no RPC. */
  fallback: (req: NodeServerRequest, res: NodeServerResponse) => void;
  log: Logger;
  /** Serves plain unary gRPC and Connect calls without Connect's per-call machinery (see unary-fast-path.ts). */
  fastPath?: UnaryFastPath;
}

/** A body already read from the request: handed to Connect as the request's whole body. */
async function* bodyOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * Serves gRPC, gRPC-web and Connect from a router's universal handlers (what connectNodeAdapter does),
 * so that the same handler objects, with their interceptors, can also be handed to the REST transcoder.
 */
export function createRpcNodeHandler(handlers: readonly UniversalHandler[], options: RpcNodeHandlerOptions) {
  const byPath = new Map<string, UniversalHandler>();
  for (const h of handlers) byPath.set(h.requestPath, h);

  /** Runs one request through Connect's handler; `body`: the bytes the fast path read already. */
  const viaConnect = (h: UniversalHandler, req: NodeServerRequest, res: NodeServerResponse, body?: Uint8Array): void => {
    let uReq;
    try {
      uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues(req));
    } catch (err) {
      // No authority (an HTTP/1.0 request without Host): nothing sensible to answer with but 400.
      options.log.debug({ err: (err as Error).message }, 'unusable request');
      (res as any).writeHead(400);
      res.end();
      return;
    }
    if (body) uReq = { ...uReq, body: bodyOf(body) };
    h(uReq)
      .then((uRes) => universalResponseToNodeResponse(withSpecGrpcMessage(uRes), res))
      .catch((reason) => {
        // A client that went away mid-response is not a server failure.
        if (ConnectError.from(reason).code === Code.Aborted || ConnectError.from(reason).code === Code.Canceled) return;
        options.log.error({ err: reason, procedure: `${h.service.typeName}/${h.method.name}` }, 'rpc handler failed');
      });
  };

  return (req: NodeServerRequest, res: NodeServerResponse): void => {
    const path = (req.url ?? '').split('?', 1)[0]!;
    const h = byPath.get(path);
    if (!h) {
      options.fallback(req, res);
      return;
    }
    const fast = options.fastPath;
    if (fast?.take(req as any, res as any, path, () => options.contextValues(req), (body) => viaConnect(h, req, res, body))) return;
    viaConnect(h, req, res);
  };
}
