import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { TokenService } from '../auth/tokens.js';
import type { Principal } from '../auth/callers.js';
import type { Config } from '../config/config.js';
import { PasskeydError, invalid, notFound, precondition, unauthenticated } from '../errors.js';
import { completeLogin } from '../store/login-complete.js';
import { findSessionAndPasskey, findSessionContext } from '../store/login-reads.js';
import type { Database } from '../store/schema.js';
import { randomBytesPooled } from '../ids.js';
import { parseAssertion, type ParsedAssertion } from '../webauthn/authentication-response.js';
import { verifyAssertionFast, verifyAssertionWith } from '../webauthn/assertion-verifier.js';
import { event, type EventOf } from './events.js';
import { refuseWhenSso } from './login-policy.js';
import { orReadFirst, readFirst } from './read-first.js';
import { checkSessionCaller, contextChangeOf, metadataFull } from './session-context.js';
import { hashSessionToken, recordLoginFailure, sessionAggregate } from './sessions.js';
import type { ChangeDetails } from './types.js';

/** SetSession's passkey check: the assertion verified, the login stored, the access token signed. */

/** One message for every "this credential cannot finish this session", so refusals reveal nothing. */
const NOT_ACCEPTED = 'this credential cannot sign in to this session';

/** What SetSession brings. */
export interface FinishLoginInput {
  sessionId: string;
  sessionToken: string | undefined;
  /** checks.web_auth_n.credential_assertion_data (AuthenticationResponseJSON). */
  assertion: unknown;
  /** The caller, when it sent a Bearer credential: a session manager needs no session token. */
  caller?: Principal | undefined;
  lifetimeSeconds?: number | undefined;
  metadata?: Record<string, Uint8Array> | undefined;
}

export interface FinishedLogin {
  details: ChangeDetails;
  /** A fresh session token: the one handed out before the login stops working (no session fixation). */
  sessionToken: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
}

/**
 * What never changes about a passkey, remembered per process by credential id: its public key, RP ID,
 * user and organization. Everything that can change (its state, its counter, the user's state, the
 * login policy, the session) is checked by the login's statement itself.
 */
interface KnownCredential {
  passkeyId: string;
  userId: string;
  orgId: string;
  rpId: string;
  publicKey: Uint8Array;
}

/** The credentials a process knows, by base64url credential id. */
export type KnownCredentials = LRUCache<string, KnownCredential>;

/** Filled by CreateSession's allow list and by SetSession's read; 20,000 credentials take a few MB. */
export function knownCredentials(): KnownCredentials {
  return new LRUCache<string, KnownCredential>({ max: 20_000 });
}

/** How SetSession logins went in this process: with no read (`known`), or read first (`read`). */
const finishes = { known: 0, read: 0 };

/** How many SetSession logins skipped their read (the credential was known) and how many read first. */
export function loginFinishStats(): { known: number; read: number } {
  return { ...finishes };
}

const readFirstRefusals = { consumed: readFirst, ended: readFirst, notAccepted: readFirst, metadataFull: readFirst };

export interface FinishDeps {
  db: Kysely<Database>;
  config: Config;
  tokens: TokenService;
  known: KnownCredentials;
  /** The default organization: the owner of every session aggregate. */
  sessionOwner: () => Promise<string>;
}

/** SetSession with an assertion (see {@link FinishDeps}). */
export function createFinishLogin({ db, config, tokens, known, sessionOwner }: FinishDeps): (input: FinishLoginInput, creator: string) => Promise<FinishedLogin> {
  return finish;

  async function finish(input: FinishLoginInput, creator: string): Promise<FinishedLogin> {
    let parsed: ParsedAssertion | undefined;
    let parseError: unknown;
    try {
      parsed = parseAssertion(input.assertion);
    } catch (err) {
      parseError = err;
    }
    const credentialKey = parsed?.credentialId.toString('base64url');
    if (parsed) {
      const done = await finishKnown(parsed, known.get(credentialKey!), input);
      if (done) return done;
    }
    finishes.read++;
    const [session, passkey] = parsed ? await findSessionAndPasskey(db, input.sessionId, parsed.credentialId) : [await findSessionContext(db, input.sessionId), undefined];
    if (passkey?.public_key) {
      known.set(credentialKey!, { passkeyId: passkey.id, userId: passkey.user_id, orgId: passkey.org_id, rpId: passkey.rp_id, publicKey: passkey.public_key });
    } else if (credentialKey) {
      known.delete(credentialKey);
    }
    if (!session) throw notFound(`session ${input.sessionId}`);
    // Only the holder of the session token (or its organization's session manager) may check it;
    // anyone else is refused before anything is recorded (no failure events on someone else's session).
    checkSessionCaller(session, input.sessionToken, input.caller, 'session_token is missing or does not match this session');
    // Lifetime and metadata ride on the login's own statement; their bounds are checked before anything runs.
    const context = contextChangeOf(session, input, config, Date.now());
    try {
      const now = Date.now();
      if (session.expires_at.getTime() <= now) throw precondition('the session has expired; start a new login');
      if (!parsed) throw parseError;
      if (session.challenge_id === null) {
        // The challenge row goes with the first success: an assertion arriving after it is a replay.
        if (session.webauthn_checked_at !== null) throw unauthenticated('this assertion was already used');
        throw precondition('no WebAuthn challenge is open for this session; request one with challenges.web_auth_n');
      }
      if (session.challenge_expires_at!.getTime() <= now) throw precondition('the WebAuthn challenge has expired; start a new login');
      if (!passkey?.public_key) throw unauthenticated(NOT_ACCEPTED);
      if (session.user_id !== null) {
        if (passkey.user_id !== session.user_id) throw unauthenticated(NOT_ACCEPTED);
      } else if (session.login_digest !== null) {
        // Opened for a login name that does not exist: no credential completes it.
        throw unauthenticated(NOT_ACCEPTED);
      } else if (!parsed.userHandle) {
        throw invalid('checks.web_auth_n.credential_assertion_data.response.userHandle: is required for a login without a user');
      }
      if (parsed.userHandle && !parsed.userHandle.equals(Buffer.from(passkey.webauthn_user_handle))) throw new Refused('userHandle does not belong to this credential');
      // The credential's stored RP ID decides; a challenge issued for another RP ID cannot be used with it.
      if (passkey.rp_id !== session.rp_id) throw new Refused(`this credential is registered for another relying party than "${session.rp_id}"`);
      let verified: Awaited<ReturnType<typeof verifyAssertionWith>>;
      try {
        // SimpleWebAuthn's checks with a cached node:crypto key (test/assertion-verifier.test.ts proves
        // it accepts and refuses exactly what SimpleWebAuthn does); odd key types go to SimpleWebAuthn.
        verified = await verifyAssertionWith(parsed, {
          challenge: session.challenge!,
          origins: config.origins,
          rpId: passkey.rp_id,
          requireUserVerification: session.user_verification === 'required',
          publicKey: passkey.public_key,
        });
      } catch (err) {
        // Before the signature is known good, every refusal reads the same to the caller: a different
        // message for a real credential would tell an anonymous caller that the login name exists.
        if (err instanceof PasskeydError && err.kind === 'unauthenticated') throw new Refused(err.message);
        throw err;
      }
      // Also a usernameless login, or a session opened before the organization turned to SSO.
      refuseWhenSso(passkey);
      const stored = Number(passkey.sign_count);
      const regressed = (verified.signCount > 0 || stored > 0) && verified.signCount <= stored;
      const counterEvent = regressed
        ? event('user.passkey.signcount.rejected', { passkey_id: passkey.id, session_id: session.id, stored, received: verified.signCount, policy: config.signCountPolicy })
        : undefined;
      if (regressed && config.signCountPolicy === 'reject') {
        throw new CounterRegression(stored, verified.signCount, counterEvent!);
      }
      return await complete({
        session: { id: session.id, owner: session.owner, challenge: session.challenge! },
        passkey: { id: passkey.id, userId: passkey.user_id, orgId: passkey.org_id, rpId: passkey.rp_id },
        userHandle: parsed.userHandle,
        verified,
        counterEvent,
        now,
        context,
      });
    } catch (err) {
      if (err instanceof PasskeydError) {
        const userEvent = err instanceof CounterRegression && passkey ? { userId: passkey.user_id, orgId: passkey.org_id, event: err.event } : undefined;
        // The reason may quote client text (origin, challenge): no NUL into jsonb.
        const reason = (err instanceof Refused ? err.reason : err.message).replace(/\u0000/g, '');
        try {
          const failed = event('session.webauthn.failed', { reason, code: err.kind, passkey_id: passkey?.id ?? null });
          await recordLoginFailure(db, { id: session.id, owner: session.owner }, failed, creator, userEvent);
        } catch {
          // Failing to record must not replace the refusal the caller is owed.
        }
      }
      throw err;
    }
  }

  /**
   * SetSession with no read before its write, when this process knows the credential (its key, RP ID
   * and user never change) and the caller presented a session token: verify the assertion against the
   * challenge it signed, then let the login's statement check that challenge, the token and everything
   * else that can change, against the rows as they are. Undefined when that is not possible or the
   * statement (or the verification) refused: the caller then reads and decides, and records any failure,
   * the slow way. A login with a lifetime or metadata change always reads (it needs the session's keys).
   */
  async function finishKnown(parsed: ParsedAssertion, credential: KnownCredential | undefined, input: FinishLoginInput): Promise<FinishedLogin | undefined> {
    if (!credential || input.sessionToken === undefined || input.lifetimeSeconds !== undefined || (input.metadata && Object.keys(input.metadata).length)) return undefined;
    let verified: ReturnType<typeof verifyAssertionFast>;
    try {
      // User verification, when the challenge requires it, is the statement's to check.
      verified = verifyAssertionFast(parsed, {
        challenge: parsed.challenge,
        origins: config.origins,
        rpId: credential.rpId,
        requireUserVerification: false,
        publicKey: credential.publicKey,
      });
    } catch {
      return undefined;
    }
    const sessionToken = input.sessionToken;
    const done = await orReadFirst(async () =>
      complete({
        session: { id: input.sessionId, owner: await sessionOwner(), challenge: parsed.challenge },
        passkey: { id: credential.passkeyId, userId: credential.userId, orgId: credential.orgId, rpId: credential.rpId },
        userHandle: parsed.userHandle,
        verified,
        now: Date.now(),
        presentedTokenHash: hashSessionToken(sessionToken),
      }),
    );
    if (done) finishes.known++;
    return done;
  }

  /**
   * Stores a verified login (one statement: see completeLogin in src/store/login-complete.ts), then signs the
   * access token. The counter policy is checked again by the statement against the row as it is now:
   * two logins racing with one credential cannot both pass with the same counter. With
   * `presentedTokenHash` (no read came first) every refusal is ReadFirst, and a counter that did not
   * increase is refused whatever the policy, so the read path records it.
   */
  async function complete({ session, passkey, userHandle, verified, counterEvent, now, context, presentedTokenHash }: VerifiedLogin): Promise<FinishedLogin> {
    const userId = passkey.userId;
    const sessionToken = randomBytesPooled(32).toString('base64url');
    // The login's one event: the session's, with the counter the authenticator reported and its backup state.
    const checked = event('session.webauthn.checked', {
      user_id: userId,
      passkey_id: passkey.id,
      user_verified: verified.userVerified,
      sign_count: verified.signCount,
      backed_up: verified.backedUp,
    });
    const { details, expiresAt } = await completeLogin(
      db,
      {
        session: sessionAggregate(session.id, session.owner),
        challenge: session.challenge,
        rpId: passkey.rpId,
        presentedTokenHash,
        userHandle,
        tokenHash: hashSessionToken(sessionToken),
        passkey: { id: passkey.id, userId, orgId: passkey.orgId },
        at: new Date(now),
        ...verified,
        rejectCounterRegression: presentedTokenHash !== undefined || config.signCountPolicy === 'reject',
        context: context?.change,
      },
      [checked, ...(context?.events ?? [])],
      counterEvent ? [counterEvent] : [],
      presentedTokenHash
        ? readFirstRefusals
        : {
            consumed: () => unauthenticated('this assertion was already used'),
            ended: () => precondition('the session has ended; start a new login'),
            notAccepted: () => unauthenticated(NOT_ACCEPTED),
            metadataFull,
          },
    );
    const issued = await tokens.issue({ subject: userId, orgId: passkey.orgId, sessionId: session.id, ttlSeconds: config.tokenTtlSeconds, notAfter: expiresAt });
    return { details, sessionToken, accessToken: issued.token, accessTokenExpiresAt: issued.expiresAt };
  }
}

/** A verified assertion on its way to the login statement. */
interface VerifiedLogin {
  session: { id: string; owner: string; challenge: string };
  passkey: { id: string; userId: string; orgId: string; rpId: string };
  userHandle: Buffer | undefined;
  verified: { signCount: number; userVerified: boolean; backedUp: boolean };
  /** The counter went backwards under a policy that lets the login through: recorded with it. */
  counterEvent?: EventOf<'user'> | undefined;
  now: number;
  /** SetSession's lifetime and metadata change, if any (read path only). */
  context?: ReturnType<typeof contextChangeOf> | undefined;
  /** Set when no read came first (the known-credential path): the statement checks this session token. */
  presentedTokenHash?: Buffer | undefined;
}

/** A refusal the caller sees as NOT_ACCEPTED, whatever its reason; the reason goes to the audit event only. */
class Refused extends PasskeydError {
  constructor(readonly reason: string) {
    super('unauthenticated', NOT_ACCEPTED);
  }
}

/** A sign counter that did not increase, under the 'reject' policy. */
class CounterRegression extends PasskeydError {
  constructor(
    stored: number,
    received: number,
    readonly event: EventOf<'user'>,
  ) {
    super('unauthenticated', `the authenticator's sign counter did not increase (stored ${stored}, received ${received}); the credential may be cloned`);
  }
}
