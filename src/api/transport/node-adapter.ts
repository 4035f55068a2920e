import { Code, ConnectError } from '@connectrpc/connect';
import type { UniversalHandler } from '@connectrpc/connect/protocol';
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import type { Logger } from '../../log.js';
import { withClientFaultCodes } from './client-faults.js';
import { withSpecGrpcMessage } from './grpc-message.js';
import { pathOf, writeHead, type ContextValuesOf, type NodeRequest, type NodeResponse } from './http.js';
import type { UnaryFastPath } from './unary-fast-path.js';

/** What the RPC handler needs besides the router's handlers. */
export interface RpcNodeHandlerOptions {
  contextValues: ContextValuesOf;
  /** Serves paths that name no RPC. */
  fallback: (req: NodeRequest, res: NodeResponse) => void;
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
export function createRpcNodeHandler(handlers: readonly UniversalHandler[], options: RpcNodeHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const byPath = new Map<string, UniversalHandler>();
  for (const h of handlers) byPath.set(h.requestPath, h);

  /** Runs one request through Connect's handler; `body`: the bytes the fast path read already. */
  const viaConnect = (h: UniversalHandler, req: NodeRequest, res: NodeResponse, body?: Uint8Array): void => {
    let uReq;
    try {
      uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues(req));
    } catch (err) {
      // No authority (an HTTP/1.0 request without Host): nothing sensible to answer with but 400.
      options.log.debug({ err: (err as Error).message }, 'unusable request');
      writeHead(res, 400);
      res.end();
      return;
    }
    if (body) uReq = { ...uReq, body: bodyOf(body) };
    h(uReq)
      .then((uRes) => withClientFaultCodes(uRes))
      .then((uRes) => universalResponseToNodeResponse(withSpecGrpcMessage(uRes), res))
      .catch((reason) => {
        // A client that went away mid-response is not a server failure.
        if (ConnectError.from(reason).code === Code.Aborted || ConnectError.from(reason).code === Code.Canceled) return;
        options.log.error({ err: reason, procedure: `${h.service.typeName}/${h.method.name}` }, 'rpc handler failed');
      });
  };

  return (req, res) => {
    const path = pathOf(req);
    const h = byPath.get(path);
    if (!h) {
      options.fallback(req, res);
      return;
    }
    const fast = options.fastPath;
    if (
      fast?.take(
        req,
        res,
        path,
        () => options.contextValues(req),
        (body) => viaConnect(h, req, res, body),
      )
    )
      return;
    viaConnect(h, req, res);
  };
}
