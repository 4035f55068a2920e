import { decodeJwt } from 'jose';
import type { Principal } from '../../auth/callers.js';
import { OAuthError } from '../../domain/oauth.js';
import { getUser } from '../../domain/users.js';
import { PasskeydError } from '../../errors.js';
import type { NodeRequest, NodeResponse } from '../transport/http.js';
import { addressOf, authenticateClient, claimedClient, limit, type OAuthDeps, readForm, refuse, sendOAuthJson } from './common.js';

/** A token longer than this is none of ours (a PAT is 88 characters, an access token well under 2 KiB). */
const MAX_TOKEN_CHARS = 8 * 1024;

const INACTIVE = { active: false } as const;

/**
 * The token's principal, or undefined when it is not good now: unknown, malformed, expired, signed by a
 * removed key, its session ended, its key, secret or PAT revoked, its user deactivated or deleted. The
 * same check every API call makes (src/auth/callers.ts), so introspection and the API agree. A database
 * outage is not an answer about the token: it propagates (503).
 */
async function principalOf(deps: OAuthDeps, token: string): Promise<Principal | undefined> {
  if (token.length > MAX_TOKEN_CHARS) return undefined;
  try {
    return await deps.callers.resolve(token);
  } catch (err) {
    if (err instanceof PasskeydError && err.kind !== 'unavailable') return undefined;
    throw err;
  }
}

/** The user's username, when the subject is a user that still exists (not the CLI's bootstrap token). */
async function usernameOf(deps: OAuthDeps, userId: string): Promise<string | undefined> {
  try {
    return (await getUser(deps.db, userId)).username;
  } catch (err) {
    if (err instanceof PasskeydError && err.kind === 'not_found') return undefined;
    throw err;
  }
}

/** RFC 7662 §2.2's answer for a good token, with passkeyd's `org`, `sid` and `username`. */
async function describe(deps: OAuthDeps, token: string, p: Principal): Promise<Record<string, unknown>> {
  const username = await usernameOf(deps, p.subject);
  const common = { sub: p.subject, org: p.orgId, ...(username === undefined ? {} : { username }) };
  if (p.credential === 'pat') {
    return { active: true, ...common, iss: deps.config.issuer, exp: Math.floor(p.expiresAt.getTime() / 1000), jti: p.tokenId, token_type: 'pat' };
  }
  // A JWT that resolve() verified: its claims are as signed.
  const claims = decodeJwt(token);
  return {
    active: true,
    ...common,
    iss: claims.iss,
    aud: claims.aud,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    token_type: 'Bearer',
    // A machine token was issued to its own user as the OAuth client (client_id = its username).
    ...(p.credential === 'machine_token' && username !== undefined ? { client_id: username } : {}),
    ...(p.sessionId === undefined ? {} : { sid: p.sessionId }),
  };
}

/**
 * `POST /oauth/v2/introspect` (RFC 7662): a service holding a token asks whether it is good right now.
 * The caller authenticates as a machine user (client secret or client assertion); an answer about a
 * revoked credential is at most half a second old (the callers' lookup cache).
 */
export async function introspectionEndpoint(deps: OAuthDeps, req: NodeRequest, res: NodeResponse): Promise<void> {
  const startedAt = performance.now();
  try {
    await limit(deps, addressOf(req));
    const form = await readForm(req, res);
    await limit(deps, claimedClient(req, form));
    await authenticateClient(deps, req, form);
    const token = form.get('token');
    if (token === undefined) throw new OAuthError('invalid_request', 'token is missing');
    // token_type_hint (RFC 7662 §2.1) needs no attention: a PAT and a JWT tell themselves apart.
    const principal = await principalOf(deps, token);
    sendOAuthJson(res, principal ? await describe(deps, token, principal) : INACTIVE);
  } catch (err) {
    await refuse(deps, res, err, startedAt, '/oauth/v2/introspect');
  }
}
