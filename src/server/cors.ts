import type { ServerResponse } from 'node:http';
import type { NodeRequest, NodeResponse } from '../api/transport/http.js';

/** Methods a browser may use: Connect/gRPC-web (POST, GET for idempotent Connect calls) and the REST verbs. */
const CORS_ALLOWED_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * Request headers browsers may send: what connect-web and gRPC-web clients set (the list @connectrpc/cors
 * publishes, written out here because that package is not a dependency) plus Authorization for Bearer tokens.
 */
export const CORS_ALLOWED_HEADERS = [
  'content-type',
  'connect-protocol-version',
  'connect-timeout-ms',
  'connect-accept-encoding',
  'connect-content-encoding',
  'grpc-timeout',
  'x-grpc-web',
  'x-user-agent',
  'authorization',
];

/** Response headers scripts may read: the gRPC(-web) status trailers-in-headers and rate-limit hints. */
export const CORS_EXPOSED_HEADERS = ['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'retry-after'];

/** How long a browser may cache a preflight answer (seconds). */
const MAX_AGE_SECONDS = 7200;

/**
 * CORS for the configured origins, on every path of the server. Returns a function that decorates a
 * response with CORS headers (allowed origins only) and answers preflight requests itself: it returns true
 * when the request was fully handled. A disallowed origin gets no CORS headers at all, so the browser
 * blocks the call; non-browser clients (no Origin header) are unaffected.
 */
export function createCors(origins: readonly string[]) {
  // Origins compare as scheme://host[:port]; normalize configuration the same way browsers send them.
  const allowed = new Set(origins.map((o) => new URL(o).origin));
  const allowMethods = CORS_ALLOWED_METHODS.join(', ');
  const allowHeaders = CORS_ALLOWED_HEADERS.join(', ');
  const expose = CORS_EXPOSED_HEADERS.join(', ');
  return (req: NodeRequest, res: NodeResponse): boolean => {
    const out = res as ServerResponse;
    // Responses differ per Origin, so caches must key on it even when no CORS header is sent.
    out.setHeader('vary', 'Origin');
    const origin = req.headers.origin;
    const ok = typeof origin === 'string' && allowed.has(origin);
    const preflight = req.method === 'OPTIONS' && typeof origin === 'string' && req.headers['access-control-request-method'] !== undefined;
    if (ok) {
      out.setHeader('access-control-allow-origin', origin);
      out.setHeader('access-control-expose-headers', expose);
    }
    if (!preflight) return false;
    if (ok) {
      out.setHeader('access-control-allow-methods', allowMethods);
      out.setHeader('access-control-allow-headers', allowHeaders);
      out.setHeader('access-control-max-age', String(MAX_AGE_SECONDS));
    }
    // A disallowed origin's preflight still ends here (no CORS headers: the browser refuses the call).
    out.writeHead(204);
    out.end();
    return true;
  };
}
