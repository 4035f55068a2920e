import { sendJson, type NodeRequest, type NodeResponse } from '../transport/http.js';
import type { OAuthDeps } from './common.js';
import { introspectionEndpoint } from './introspection.js';
import { GRANT_TYPES, tokenEndpoint } from './token-endpoint.js';

export type { OAuthDeps } from './common.js';

const TOKEN_PATH = '/oauth/v2/token';
const INTROSPECTION_PATH = '/oauth/v2/introspect';

/** How a machine user may authenticate at either endpoint (see authenticateClient in common.ts). */
const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'];
/** What a machine user's key may sign with (a key's algorithm is fixed when it is added). */
const ASSERTION_ALGS = ['RS256', 'ES256'];

/**
 * The OAuth part of `/.well-known/openid-configuration` (RFC 8414 names): kept beside the endpoints so
 * the document says exactly what they accept.
 */
export function oauthDiscovery(issuer: string): Record<string, unknown> {
  const base = issuer.replace(/\/+$/, '');
  return {
    token_endpoint: `${base}${TOKEN_PATH}`,
    introspection_endpoint: `${base}${INTROSPECTION_PATH}`,
    grant_types_supported: [...GRANT_TYPES],
    token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
    introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    introspection_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGS,
  };
}

/**
 * The OAuth endpoints as plain HTTP (RFC 6749 forms, not RPCs). Returns a function that answers a
 * request for one of their paths and says whether it did. They are for servers, not browsers: the
 * server routes them before CORS, so no origin is ever allowed to read their answers.
 */
export function createOAuthEndpoints(deps: OAuthDeps): (req: NodeRequest, res: NodeResponse, path: string) => boolean {
  const routes = new Map([
    [TOKEN_PATH, tokenEndpoint],
    [INTROSPECTION_PATH, introspectionEndpoint],
  ]);
  return (req, res, path) => {
    const endpoint = routes.get(path);
    if (!endpoint) return false;
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'invalid_request', error_description: `${path} takes POST` }, { allow: 'POST', 'cache-control': 'no-store' });
      return true;
    }
    // Each endpoint answers its own failures (refuse() in common.ts); this catches only a failed write.
    endpoint(deps, req, res).catch((err: unknown) => deps.log.error({ err, path }, 'oauth endpoint failed'));
    return true;
  };
}
