import type { Registry } from 'prom-client';
import { oauthDiscovery } from '../api/oauth/routes.js';
import { sendJson, writeHead, type NodeRequest, type NodeResponse } from '../api/transport/http.js';
import type { TokenService } from '../auth/tokens.js';

/** A public route: answers GET and HEAD on one path (app.ts answers a throw or rejection with 500). */
export type RouteHandler = (req: NodeRequest, res: NodeResponse) => void | Promise<void>;

/** What the public routes read: the issuer for discovery, the keys for JWKS, the database for readiness, the metrics. */
export interface PublicRouteDeps {
  issuer: string;
  tokens: TokenService;
  ping: () => Promise<void>;
  registry: Registry;
}

/** The plain HTTP routes: discovery, JWKS, liveness, readiness and metrics. */
export function createPublicRoutes(deps: PublicRouteDeps): Map<string, RouteHandler> {
  const discovery = {
    issuer: deps.issuer,
    jwks_uri: `${deps.issuer.replace(/\/$/, '')}/.well-known/jwks.json`,
    id_token_signing_alg_values_supported: ['ES256'],
    subject_types_supported: ['public'],
    response_types_supported: ['token'],
    ...oauthDiscovery(deps.issuer),
  };
  return new Map<string, RouteHandler>([
    ['/.well-known/openid-configuration', (_req, res) => sendJson(res, 200, discovery, { 'cache-control': 'public, max-age=300' })],
    ['/.well-known/jwks.json', async (_req, res) => sendJson(res, 200, await deps.tokens.jwks(), { 'cache-control': 'public, max-age=60' })],
    ['/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' })],
    [
      '/readyz',
      async (_req, res) => {
        try {
          await deps.ping();
          sendJson(res, 200, { status: 'ready' });
        } catch {
          sendJson(res, 503, { status: 'database unavailable' });
        }
      },
    ],
    [
      '/metrics',
      async (_req, res) => {
        const text = await deps.registry.metrics();
        writeHead(res, 200, { 'content-type': deps.registry.contentType });
        res.end(text);
      },
    ],
  ]);
}
