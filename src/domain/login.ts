import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { appendCtes, appendEvents, appendResultOf, type AppendedRow } from '../store/events.js';
import type { ChallengesTable, Database } from '../store/schema.js';
import { everyStepFound, inTransaction, runStatement } from '../store/transaction.js';
import { parseAssertion, requestOptions, type ParsedAssertion } from '../webauthn/authentication-response.js';
import { verifyAssertionWith } from '../webauthn/assertion-verifier.js';
import { resolveRpId } from '../webauthn/relying-party.js';
import { defaultOrgId } from './bootstrap.js';
import { DomainError, invalid, notFound, precondition, unauthenticated } from './errors.js';
import { createPseudoCredentials, type CredentialDescriptor, type LoginLookup } from './pseudo-credentials.js';
import { touchUserFrom } from './registration-codes.js';
import { hashSessionToken, insertChallenge, openSession, recordLoginFailure, sessionAggregate, sessionTokenMatches } from './sessions.js';
import type { ChangeDetails } from './types.js';

type UserVerification = ChallengesTable['user_verification'];

/** One message for every "this credential cannot finish this session", so refusals reveal nothing. */
const NOT_ACCEPTED = 'this credential cannot sign in to this session';

/** What CreateSession asks for. */
export interface StartLoginInput {
  /** checks.user; undefined for a usernameless (discoverable credential) login. */
  user: LoginLookup | undefined;
  /** challenges.web_auth_n; undefined when no challenge is wanted yet. */
  webauthn: { domain: string; userVerification: UserVerification | undefined } | undefined;
  /** A lifetime shorter than the configured one. */
  lifetimeSeconds: number | undefined;
}

export interface StartedLogin {
  sessionId: string;
  sessionToken: string;
  details: ChangeDetails;
  /** `{"publicKey": PublicKeyCredentialRequestOptionsJSON}` when a challenge was asked for. */
  requestOptions: Record<string, unknown> | undefined;
}

/** What SetSession brings. */
export interface FinishLoginInput {
  sessionId: string;
  sessionToken: string | undefined;
  /** checks.web_auth_n.credential_assertion_data (AuthenticationResponseJSON). */
  assertion: unknown;
}

export interface FinishedLogin {
  details: ChangeDetails;
  /** A fresh session token: the one handed out before the login stops working (no session fixation). */
  sessionToken: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
}

export interface ChallengeInput {
  sessionId: string;
  sessionToken: string | undefined;
  webauthn: { domain: string; userVerification: UserVerification | undefined };
}

export interface ChallengedSession {
  details: ChangeDetails;
  requestOptions: Record<string, unknown>;
}

/** Passkey login: CreateSession's challenge, SetSession's assertion check, and the access token. */
export interface Login {
  start(input: StartLoginInput, creator: string): Promise<StartedLogin>;
  challenge(input: ChallengeInput, creator: string): Promise<ChallengedSession>;
  finish(input: FinishLoginInput, creator: string): Promise<FinishedLogin>;
}

export interface LoginDeps {
  db: Kysely<Database>;
  config: Config;
  tokens: TokenService;
}

/** A login's session with its open challenge, read in one query. */
interface SessionContext {
  id: string;
  token_hash: Uint8Array;
  user_id: string | null;
  login_digest: Uint8Array | null;
  webauthn_checked_at: Date | null;
  expires_at: Date;
  owner: string;
  challenge_id: string | null;
  challenge: string | null;
  rp_id: string | null;
  user_verification: UserVerification | null;
  challenge_expires_at: Date | null;
}

/** A READY passkey with what a login needs of its user. */
interface LoginPasskey {
  id: string;
  user_id: string;
  org_id: string;
  public_key: Uint8Array | null;
  sign_count: number;
  rp_id: string;
  webauthn_user_handle: Uint8Array;
}

/**
 * Builds the login flow. Per process it keeps only what never changes: the default organization
 * (owner of every session aggregate) and the pseudo-credential secret.
 */
export function createLogin({ db, config, tokens }: LoginDeps): Login {
  const pseudo = createPseudoCredentials(db);
  let owner: Promise<string> | undefined;
  // Sessions belong to the instance's default organization from the start: owning them by the user's
  // organization would put that organization into CreateSession's `details` and tell an anonymous
  // caller that the login name exists. The session row's org_id says whose user it is.
  const sessionOwner = (): Promise<string> => {
    owner ??= defaultOrgId(db).catch((err: unknown) => {
      owner = undefined;
      throw err;
    });
    return owner;
  };

  const challengeTtlMs = config.challengeTtlSeconds * 1000;

  /** The user's READY passkeys for an RP ID, or pseudo ones when there are none (or no such user). */
  async function allowList(rpId: string, lookup: LoginLookup): Promise<{ userId: string | undefined; orgId: string | undefined; digest: Buffer; allow: CredentialDescriptor[] }> {
    let q = db
      .selectFrom('users as u')
      .leftJoin('passkeys as p', (j) => j.onRef('p.user_id', '=', 'u.id').on('p.state', '=', 'ready').on('p.rp_id', '=', rpId))
      .select(['u.id', 'u.org_id', 'p.credential_id', 'p.transports'])
      .where('u.state', '=', 'active');
    q = 'loginName' in lookup ? q.where('u.username_lower', '=', lookup.loginName.toLowerCase()) : q.where('u.id', '=', lookup.userId);
    const [rows, digest] = await Promise.all([q.orderBy('p.created_at').execute(), pseudo.digest(lookup)]);
    const user = rows[0];
    const allow = rows.filter((r) => r.credential_id).map((r) => ({ id: Buffer.from(r.credential_id!).toString('base64url'), transports: r.transports ?? [] }));
    return { userId: user?.id, orgId: user?.org_id, digest, allow: allow.length ? allow : await pseudo.derive(rpId, digest) };
  }

  async function optionsFor(rpId: string, userVerification: UserVerification, allow: CredentialDescriptor[]) {
    const challenge = randomBytes(32);
    const publicKey = await requestOptions({ rpId, challenge, allow, userVerification, timeoutMs: challengeTtlMs });
    return { publicKey, challenge: publicKey.challenge as string };
  }

  function sessionQuery(sessionId: string) {
    return db
      .selectFrom('sessions as s')
      .innerJoin('aggregates as a', (j) => j.on('a.aggregate_type', '=', 'session').onRef('a.aggregate_id', '=', 's.id'))
      .leftJoin('challenges as c', (j) => j.onRef('c.session_id', '=', 's.id').on('c.kind', '=', 'authentication'))
      .select([
        's.id',
        's.token_hash',
        's.user_id',
        's.login_digest',
        's.webauthn_checked_at',
        's.expires_at',
        'a.resource_owner as owner',
        'c.id as challenge_id',
        'c.challenge',
        'c.rp_id',
        'c.user_verification',
        'c.expires_at as challenge_expires_at',
      ])
      .where('s.id', '=', sessionId)
      .orderBy('c.created_at', 'desc')
      .limit(1);
  }

  async function loadSession(sessionId: string): Promise<SessionContext | undefined> {
    return sessionQuery(sessionId).executeTakeFirst();
  }

  function passkeyQuery(credentialId: Buffer) {
    return db
      .selectFrom('passkeys as p')
      .innerJoin('users as u', 'u.id', 'p.user_id')
      .select(['p.id', 'p.user_id', 'p.org_id', 'p.public_key', 'p.sign_count', 'p.rp_id', 'u.webauthn_user_handle'])
      .where('p.credential_id', '=', credentialId)
      .where('p.state', '=', 'ready')
      .where('u.state', '=', 'active');
  }

  /**
   * SetSession's two reads in one round trip (each query costs more client CPU than its SQL): the
   * session with its open challenge, and the passkey the assertion names. Both are joined laterally
   * to a one-row table, so either may be missing; the passkey's columns come back prefixed `p_`.
   */
  async function loadSessionAndPasskey(sessionId: string, credentialId: Buffer): Promise<[SessionContext | undefined, LoginPasskey | undefined]> {
    type Row = Partial<SessionContext> & { p_id: string | null; p_user_id: string; p_org_id: string; p_public_key: Uint8Array | null; p_sign_count: number; p_rp_id: string; p_webauthn_user_handle: Uint8Array };
    const { rows } = await sql<Row>`
      select s.*, p.id as p_id, p.user_id as p_user_id, p.org_id as p_org_id, p.public_key as p_public_key, p.sign_count as p_sign_count,
        p.rp_id as p_rp_id, p.webauthn_user_handle as p_webauthn_user_handle
      from (select 1) one
      left join lateral (${sessionQuery(sessionId)}) s on true
      left join lateral (${passkeyQuery(credentialId)}) p on true`.execute(db);
    const { p_id, p_user_id, p_org_id, p_public_key, p_sign_count, p_rp_id, p_webauthn_user_handle, ...session } = rows[0]!;
    const passkey = p_id === null ? undefined : { id: p_id, user_id: p_user_id, org_id: p_org_id, public_key: p_public_key, sign_count: p_sign_count, rp_id: p_rp_id, webauthn_user_handle: p_webauthn_user_handle };
    return [session.id == null ? undefined : (session as SessionContext), passkey];
  }

  return {
    async start(input, creator) {
      if (!input.user && !input.webauthn) throw invalid('checks.user or challenges.web_auth_n is required');
      const rpId = resolveRpId(config, input.webauthn?.domain);
      let lifetime = config.sessionTtlSeconds;
      if (input.lifetimeSeconds !== undefined) {
        if (!(input.lifetimeSeconds > 0)) throw invalid('lifetime: must be positive');
        lifetime = Math.min(lifetime, input.lifetimeSeconds);
      }
      const [digest, ownerId] = await Promise.all([input.user ? pseudo.digest(input.user) : undefined, sessionOwner()]);
      const userVerification = input.webauthn ? (input.webauthn.userVerification ?? config.userVerification) : undefined;
      // The challenge is stored by the same statement that finds the user's passkeys, so it is drawn first.
      const challenge = input.webauthn ? randomBytes(32) : undefined;
      const now = Date.now();
      const opened = await openSession(
        db,
        {
          lookup: input.user,
          rpId,
          loginDigest: digest,
          owner: ownerId,
          expiresAt: new Date(now + lifetime * 1000),
          challenge: challenge && { challenge: challenge.toString('base64url'), rpId, userVerification: userVerification!, expiresAt: new Date(now + challengeTtlMs) },
          // The user id (added by the statement) only when known: events are read by admins, never by the anonymous caller.
          payload: { usernameless: !input.user, ...(challenge ? { rp_id: rpId, user_verification: userVerification } : {}) },
        },
        creator,
      );
      let options: Record<string, unknown> | undefined;
      if (challenge) {
        // No passkey for this name and RP ID (or no such user): stand-in credentials, the same every time.
        const allow: CredentialDescriptor[] = opened.credentials.length
          ? opened.credentials.map((c) => ({ id: Buffer.from(c.id).toString('base64url'), transports: c.transports }))
          : digest
            ? await pseudo.derive(rpId, digest)
            : [];
        const publicKey = await requestOptions({ rpId, challenge, allow, userVerification: userVerification!, timeoutMs: challengeTtlMs });
        if (publicKey.challenge !== challenge.toString('base64url')) throw new Error('the request options do not carry the stored challenge');
        options = { publicKey };
      }
      return { sessionId: opened.id, sessionToken: opened.token, details: opened.details, requestOptions: options };
    },

    async challenge(input, creator) {
      const session = await loadSession(input.sessionId);
      if (!session || session.expires_at.getTime() <= Date.now()) throw notFound(`session ${input.sessionId}`);
      // A challenge replaces the open one; only the holder of the session token may do that.
      if (input.sessionToken === undefined || !sessionTokenMatches(session.token_hash, input.sessionToken)) {
        throw unauthenticated('session_token is required to request a challenge for this session');
      }
      const rpId = resolveRpId(config, input.webauthn.domain);
      const userVerification = input.webauthn.userVerification ?? config.userVerification;
      let allow: CredentialDescriptor[] = [];
      if (session.user_id) allow = (await allowList(rpId, { userId: session.user_id })).allow;
      // A session for a name without passkeys offers the same pseudo credentials as CreateSession did.
      if (!allow.length && session.login_digest) allow = await pseudo.derive(rpId, session.login_digest);
      const options = await optionsFor(rpId, userVerification, allow);
      const now = Date.now();
      const details = await inTransaction(db, async (trx) => {
        await trx.deleteFrom('challenges').where('session_id', '=', session.id).where('kind', '=', 'authentication').execute();
        const d = await appendEvents(trx, sessionAggregate(session.id, session.owner), [{ type: 'session.webauthn.challenged', payload: { rp_id: rpId, user_verification: userVerification } }], creator);
        await trx.updateTable('sessions').set({ sequence: d.sequence, updated_at: d.changeDate }).where('id', '=', session.id).execute();
        await insertChallenge(trx, session.id, session.user_id, { challenge: options.challenge, rpId, userVerification, expiresAt: new Date(now + challengeTtlMs) });
        return d;
      });
      return { details, requestOptions: { publicKey: options.publicKey } };
    },

    async finish(input, creator) {
      let parsed: ParsedAssertion | undefined;
      let parseError: unknown;
      try {
        parsed = parseAssertion(input.assertion);
      } catch (err) {
        parseError = err;
      }
      const [session, passkey] = parsed ? await loadSessionAndPasskey(input.sessionId, parsed.credentialId) : [await loadSession(input.sessionId), undefined];
      if (!session) throw notFound(`session ${input.sessionId}`);
      // Only the holder of the session token may check it; anyone else is refused before anything is
      // recorded (no failure events written onto someone else's session).
      if (input.sessionToken === undefined || !sessionTokenMatches(session.token_hash, input.sessionToken)) {
        throw unauthenticated('session_token is missing or does not match this session');
      }
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
        if (!passkey || !passkey.public_key) throw unauthenticated(NOT_ACCEPTED);
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
          if (err instanceof DomainError && err.kind === 'unauthenticated') throw new Refused(err.message);
          throw err;
        }
        const stored = Number(passkey.sign_count);
        const regressed = (verified.signCount > 0 || stored > 0) && verified.signCount <= stored;
        const counterEvent = regressed
          ? { type: 'user.passkey.signcount.rejected', payload: { passkey_id: passkey.id, session_id: session.id, stored, received: verified.signCount, policy: config.signCountPolicy } }
          : undefined;
        if (regressed && config.signCountPolicy === 'reject') {
          throw new CounterRegression(stored, verified.signCount, counterEvent!);
        }
        return await complete(session, passkey, verified, counterEvent, now);
      } catch (err) {
        if (err instanceof DomainError) {
          const userEvent = err instanceof CounterRegression && passkey ? { userId: passkey.user_id, orgId: passkey.org_id, ...err.event } : undefined;
          // The reason may quote client text (origin, challenge): no NUL into jsonb.
          const reason = (err instanceof Refused ? err.reason : err.message).replace(/\u0000/g, '');
          try {
            await recordLoginFailure(db, { id: session.id, owner: session.owner }, { reason, code: err.kind, passkey_id: passkey?.id ?? null }, creator, userEvent);
          } catch {
            // Failing to record must not replace the refusal the caller is owed.
          }
        }
        throw err;
      }
    },
  };

  /**
   * A verified login in ONE statement, atomic on its own (one round trip: no BEGIN or COMMIT): consume
   * the challenge (a second use finds nothing), record the factor on the session, update the passkey,
   * then the access token. Each step of the statement is conditioned on the one before; when one found
   * nothing, the final SELECT calls `passkeyd_refuse()`, whose error aborts the statement (undoing
   * every step) and names the step, so the caller gets the same errors as ever.
   *
   * Aggregates are touched in one order everywhere (session, then user), so concurrent logins cannot
   * deadlock on them. The CTEs of one statement run in no documented order, but each one here needs
   * rows of the one before (`from sess`, `exists (select 1 from live)`, ...), so the executor must run
   * them as a chain: challenge row, session aggregate, session row, user aggregate, passkey row,
   * users row — the order the multi-statement version took its locks in.
   */
  async function complete(
    session: SessionContext,
    passkey: LoginPasskey,
    verified: { signCount: number; userVerified: boolean; backedUp: boolean },
    counterEvent: { type: string; payload: Record<string, unknown> } | undefined,
    now: number,
  ): Promise<FinishedLogin> {
    const userId = passkey.user_id;
    const sessionToken = randomBytes(32).toString('base64url');
    const at = new Date(now);
    const checked = { type: 'session.webauthn.checked', payload: { user_id: userId, passkey_id: passkey.id, user_verified: verified.userVerified } };
    const used = { type: 'user.passkey.used', payload: { passkey_id: passkey.id, session_id: session.id, sign_count: verified.signCount, backed_up: verified.backedUp, user_verified: verified.userVerified } };
    // The counter policy is checked again against the row as it is now: two logins racing with one
    // credential cannot both pass with the same counter.
    const counterGuard = config.signCountPolicy === 'reject' ? sql<boolean>`(sign_count < ${verified.signCount} or (${verified.signCount} = 0 and sign_count = 0))` : sql<boolean>`true`;
    const completed = async () => {
      const { rows } = await sql<AppendedRow>`
        with consumed as (
          delete from challenges where id = ${session.challenge_id!}::text returning id
        ), ${appendCtes('sess', sessionAggregate(session.id, session.owner), [checked], userId, sql<boolean>`exists (select 1 from consumed)`)}, live as (
          update sessions s set
            token_hash = ${hashSessionToken(sessionToken)}::bytea, user_id = ${userId}::text, org_id = ${passkey.org_id}::text,
            user_checked_at = ${at}::timestamptz, webauthn_checked_at = ${at}::timestamptz, webauthn_user_verified = ${verified.userVerified}::boolean,
            passkey_id = ${passkey.id}::text, updated_at = sess.updated_at, sequence = sess.sequence
          from sess
          where s.id = ${session.id}::text and s.expires_at > ${at}::timestamptz
          returning s.id
        ), ${appendCtes('usr', { type: 'user', id: userId, owner: passkey.org_id }, counterEvent ? [counterEvent, used] : [used], userId, sql<boolean>`exists (select 1 from live)`)}, accepted as (
          update passkeys set sign_count = greatest(sign_count, ${verified.signCount}::bigint), backed_up = ${verified.backedUp}::boolean,
            last_used_at = ${at}::timestamptz, updated_at = ${at}::timestamptz
          where id = ${passkey.id}::text and state = 'ready' and ${counterGuard} and exists (select 1 from usr)
          returning id
        ), bumped as (${touchUserFrom('usr', userId)})
        select sess.sequence, sess.created_at, sess.updated_at, sess.resource_owner, ${everyStepFound(['consumed', 'live', 'accepted'])} as ok
        from (select 1) one left join sess on true`.execute(db);
      return appendResultOf(rows[0]!);
    };
    const details = await runStatement(completed, {
      consumed: () => unauthenticated('this assertion was already used'),
      live: () => precondition('the session has ended; start a new login'),
      accepted: () => unauthenticated(NOT_ACCEPTED),
    });
    const remaining = Math.floor((session.expires_at.getTime() - Date.now()) / 1000);
    const issued = await tokens.issue({ subject: userId, orgId: passkey.org_id, sessionId: session.id, ttlSeconds: Math.max(1, Math.min(config.tokenTtlSeconds, remaining)) });
    return { details, sessionToken, accessToken: issued.token, accessTokenExpiresAt: issued.expiresAt };
  }
}

/** A refusal the caller sees as NOT_ACCEPTED, whatever its reason; the reason goes to the audit event only. */
class Refused extends DomainError {
  constructor(readonly reason: string) {
    super('unauthenticated', NOT_ACCEPTED);
  }
}

/** A sign counter that did not increase, under the 'reject' policy. */
class CounterRegression extends DomainError {
  constructor(
    stored: number,
    received: number,
    readonly event: { type: string; payload: Record<string, unknown> },
  ) {
    super('unauthenticated', `the authenticator's sign counter did not increase (stored ${stored}, received ${received}); the credential may be cloned`);
  }
}
