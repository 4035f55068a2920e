import { createPublicKey } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { Kysely } from 'kysely';
import { verifySecret } from '../auth/secrets.js';
import type { TokenService } from '../auth/tokens.js';
import { findClient, findKeyForAssertion, useAssertion } from '../store/credentials.js';
import { appendEvents } from '../store/events.js';
import type { Database } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { event } from './events.js';

/** RFC 7523's grant type, and its client assertion type (RFC 7521). */
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** The longest a JWT-profile assertion may live (RFC 7523 leaves it to the server). */
const MAX_ASSERTION_LIFETIME_SECONDS = 3600;

/** An OAuth refusal (RFC 6749 §5.2): its error code and the HTTP status it is sent with. */
export class OAuthError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'unauthorized_client',
    readonly description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

/** Every refused credential reads the same (no hint whether the user, key or secret exists, or why). */
const BAD_ASSERTION = () => new OAuthError('invalid_grant', 'the assertion was not accepted');
const BAD_CLIENT = () => new OAuthError('invalid_client', 'client authentication failed', 401);

/** A machine user that proved who it is, and with which credential. */
export interface AuthenticatedClient {
  userId: string;
  orgId: string;
  /** `key:<key id>` or `secret:<secret id>`: revoking it ends the tokens issued for it. */
  credentialId: string;
  /** For the audit event; never the secret. */
  method: 'jwt-bearer' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
}

/**
 * Verifies a JWT-profile assertion (RFC 7523): signed by a key of an active machine user (`kid`), `iss`
 * = `sub` = that user, `aud` = the issuer, `exp` in the future and at most an hour after `iat`, a `jti`
 * not used before (on any instance). RS256 or ES256 only, as the key says: `alg: none` and HS256
 * (with the public key as the secret) are refused.
 */
export async function verifyAssertion(db: Kysely<Database>, issuer: string, assertion: string): Promise<AuthenticatedClient> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(assertion).kid;
  } catch {
    throw BAD_ASSERTION();
  }
  if (!kid || kid.length > 200) throw BAD_ASSERTION();
  const key = await findKeyForAssertion(db, kid);
  if (key?.user_type !== 'machine' || key.user_state !== 'active' || key.expires_at.getTime() <= Date.now()) throw BAD_ASSERTION();
  let payload: { iss?: string; sub?: string; exp?: number; iat?: number; jti?: string };
  try {
    ({ payload } = await jwtVerify(assertion, createPublicKey(key.public_key), {
      algorithms: [key.algorithm],
      // The issuer, or the endpoint the assertion is presented to (RFC 7523 §3 allows either).
      audience: [issuer, `${issuer.replace(/\/+$/, '')}/oauth/v2/token`, `${issuer.replace(/\/+$/, '')}/oauth/v2/introspect`],
      issuer: key.user_id,
      subject: key.user_id,
      requiredClaims: ['exp', 'iat'],
    }));
  } catch (err) {
    if (err instanceof joseErrors.JOSEError) throw BAD_ASSERTION();
    throw err;
  }
  if (payload.exp! - payload.iat! > MAX_ASSERTION_LIFETIME_SECONDS || payload.exp! - Date.now() / 1000 > MAX_ASSERTION_LIFETIME_SECONDS) throw BAD_ASSERTION();
  const jti = typeof payload.jti === 'string' && payload.jti.length > 0 && payload.jti.length <= 200 ? payload.jti : undefined;
  if (!jti) throw BAD_ASSERTION();
  if (!(await useAssertion(db, key.user_id, jti, new Date(payload.exp! * 1000)))) throw BAD_ASSERTION();
  return { userId: key.user_id, orgId: key.org_id, credentialId: `key:${key.id}`, method: 'jwt-bearer' };
}

/** Checks HTTP Basic client credentials (the machine user's username and client secret). */
export async function verifyClientSecret(db: Kysely<Database>, username: string, secret: string): Promise<AuthenticatedClient> {
  const client = username.length <= 200 ? await findClient(db, username) : undefined;
  // The hash is checked even when there is no such client (against a decoy), so both take as long.
  const ok = await verifySecret(secret, client?.secret_hash);
  if (!ok || !client || client.type !== 'machine' || client.state !== 'active' || !client.secret_id) throw BAD_CLIENT();
  return { userId: client.id, orgId: client.org_id, credentialId: `secret:${client.secret_id}`, method: 'client_secret_basic' };
}

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
}

/** Issues a machine access token (ES256, no `sid`, `cid` = the credential) and records `user.token.issued`. */
export async function issueMachineToken(db: Kysely<Database>, tokens: TokenService, client: AuthenticatedClient, grantType: string, ttlSeconds: number): Promise<IssuedToken> {
  const issued = await tokens.issue({ subject: client.userId, orgId: client.orgId, credentialId: client.credentialId, ttlSeconds });
  await inTransaction(db, (trx) =>
    appendEvents(
      trx,
      { type: 'user', id: client.userId, owner: client.orgId },
      [event('user.token.issued', { token_id: issued.tokenId, grant_type: grantType, credential: client.credentialId, expires_at: issued.expiresAt.toISOString() })],
      client.userId,
    ),
  );
  return { accessToken: issued.token, expiresIn: ttlSeconds };
}
