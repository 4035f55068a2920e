import { type AuthenticatedClient, issueMachineToken, JWT_BEARER, OAuthError, verifyAssertion } from '../../domain/oauth.js';
import type { NodeRequest, NodeResponse } from '../transport/http.js';
import { addressOf, authenticateClient, claimedClient, limit, type OAuthDeps, readForm, refuse, sendOAuthJson } from './common.js';

/** The grants the token endpoint issues machine access tokens for. */
export const GRANT_TYPES = [JWT_BEARER, 'client_credentials'] as const;

/**
 * `POST /oauth/v2/token` (RFC 6749 §4.4, RFC 7523 §2.1): a machine user exchanges a JWT signed with one
 * of its keys (jwt-bearer grant), or authenticates with its client secret or a client assertion
 * (client_credentials), for an access token. Only machine users have these credentials; nothing here
 * issues a token to a human.
 */
export async function tokenEndpoint(deps: OAuthDeps, req: NodeRequest, res: NodeResponse): Promise<void> {
  const startedAt = performance.now();
  try {
    await limit(deps, addressOf(req));
    const form = await readForm(req, res);
    await limit(deps, claimedClient(req, form));
    const grantType = form.get('grant_type');
    if (grantType === undefined) throw new OAuthError('invalid_request', 'grant_type is missing');
    let client: AuthenticatedClient;
    if (grantType === JWT_BEARER) {
      // RFC 7523 §2.1: the assertion itself authenticates; no client authentication is needed (and any
      // sent is not looked at).
      const assertion = form.get('assertion');
      if (assertion === undefined) throw new OAuthError('invalid_request', 'assertion is missing');
      client = await verifyAssertion(deps.db, deps.config.issuer, assertion);
    } else if (grantType === 'client_credentials') {
      client = await authenticateClient(deps, req, form);
    } else {
      throw new OAuthError('unsupported_grant_type', `grant_type must be one of ${GRANT_TYPES.join(', ')}`);
    }
    const issued = await issueMachineToken(deps.db, deps.tokens, client, grantType, deps.config.tokenTtlSeconds);
    sendOAuthJson(res, { access_token: issued.accessToken, token_type: 'Bearer', expires_in: issued.expiresIn });
  } catch (err) {
    await refuse(deps, res, err, startedAt, '/oauth/v2/token');
  }
}
