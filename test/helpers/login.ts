/**
 * Test helpers for passkey login: CreateSession → software authenticator → SetSession over a real
 * client, with each step available on its own so tests can tamper in between.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import { SessionService } from '../../gen/passkeyd/session/v2/session_service_pb.js';
import { UserVerificationRequirement } from '../../gen/passkeyd/session/v2/session_pb.js';
import type { CeremonyOverrides, SoftAuthenticator } from './authenticator.js';
import { clientFor, type Protocol } from './clients.js';
import type { Database } from '../../src/store/schema.js';
import { DEFAULT_ORIGIN } from './passkeys.js';

/** The `publicKey` member of CreateSession's request options Struct. */
export function requestOptionsOf(struct: JsonObject | undefined): PublicKeyCredentialRequestOptionsJSON {
  const pk = struct?.publicKey;
  if (!pk || typeof pk !== 'object' || Array.isArray(pk)) throw new Error('CreateSession: response has no publicKey options');
  return pk as unknown as PublicKeyCredentialRequestOptionsJSON;
}

export interface BeginLoginOptions {
  /** checks.user by login name; omit both for a usernameless login. */
  loginName?: string;
  /** checks.user by user id. */
  userId?: string;
  /** challenges.web_auth_n.domain */
  domain?: string;
  userVerification?: UserVerificationRequirement;
  protocol?: Protocol;
}

export interface BegunLogin {
  sessionId: string;
  sessionToken: string;
  options: PublicKeyCredentialRequestOptionsJSON;
}

/** CreateSession with a WebAuthn challenge. */
export async function beginLogin(baseUrl: string, o: BeginLoginOptions = {}): Promise<BegunLogin> {
  const sessions = clientFor(SessionService, o.protocol ?? 'connect', baseUrl);
  const search = o.loginName !== undefined ? { case: 'loginName' as const, value: o.loginName } : o.userId !== undefined ? { case: 'userId' as const, value: o.userId } : undefined;
  const created = await sessions.createSession({
    checks: search ? { user: { search } } : undefined,
    challenges: { webAuthN: { domain: o.domain ?? '', userVerificationRequirement: o.userVerification ?? UserVerificationRequirement.UNSPECIFIED } },
  });
  sessionTokens.set(created.sessionId, created.sessionToken);
  return { sessionId: created.sessionId, sessionToken: created.sessionToken, options: requestOptionsOf(created.challenges?.webAuthN?.publicKeyCredentialRequestOptions) };
}

/** Signs a begun login's options with an authenticator (origin defaults to the test servers'). */
export function sign(authenticator: SoftAuthenticator, begun: BegunLogin, overrides: Partial<CeremonyOverrides> = {}): Promise<AuthenticationResponseJSON> {
  return authenticator.authenticate(begun.options, { origin: DEFAULT_ORIGIN, ...overrides });
}

/** SetSession with an assertion. */
export async function finishLogin(baseUrl: string, sessionId: string, assertion: unknown, o: { protocol?: Protocol; sessionToken?: string } = {}) {
  const sessions = clientFor(SessionService, o.protocol ?? 'connect', baseUrl);
  const done = await sessions.setSession({
    sessionId,
    sessionToken: o.sessionToken ?? sessionTokens.get(sessionId) ?? '',
    checks: { webAuthN: { credentialAssertionData: assertion as JsonObject } },
  });
  // A successful check rotates the session token.
  if (done.sessionToken) sessionTokens.set(sessionId, done.sessionToken);
  return done;
}

/** The current token of each session begun here, as a client keeps it (SetSession needs it). */
const sessionTokens = new Map<string, string>();

/** A whole login; returns the begun session and SetSession's response. */
export async function login(baseUrl: string, authenticator: SoftAuthenticator, o: BeginLoginOptions & { overrides?: Partial<CeremonyOverrides> } = {}) {
  const begun = await beginLogin(baseUrl, o);
  const assertion = await sign(authenticator, begun, o.overrides);
  const done = await finishLogin(baseUrl, begun.sessionId, assertion, { protocol: o.protocol });
  return { begun, assertion, done };
}

/** The payloads of one aggregate's events of one type, oldest first. */
export async function eventPayloads<T = Record<string, unknown>>(db: Kysely<Database>, aggregateId: string, eventType: string): Promise<T[]> {
  const rows = await db.selectFrom('events').select('payload').where('aggregate_id', '=', aggregateId).where('event_type', '=', eventType).orderBy('sequence').execute();
  return rows.map((r) => r.payload as T);
}

/** The session.webauthn.failed events of a session, oldest first: what the audit trail says about its refusals. */
export function loginFailures(db: Kysely<Database>, sessionId: string): Promise<{ reason: string; code: string }[]> {
  return eventPayloads(db, sessionId, 'session.webauthn.failed');
}

// Tests that import codeOf/errorOf from here get the shared ones.
export { codeOf, errorOf } from './codes.js';

/** A base64url string with one bit of one byte flipped (index from the start, or from the end when negative). */
export function flipByte(b64: string, index: number): string {
  const buf = Buffer.from(b64, 'base64url');
  const i = index < 0 ? buf.length + index : index;
  buf[i] = buf[i]! ^ 0x01;
  return buf.toString('base64url');
}
