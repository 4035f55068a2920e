import { sql, type Kysely } from 'kysely';
import { newId } from '../ids.js';
import { appendResultOf, appendSteps, type AggregateRef, type AppendResult, type AppendedRow, type NewEvent } from './events.js';
import type { ChallengesTable, Database, SessionUserAgent } from './schema.js';
import { runSteps, type Step } from './statement.js';

/**
 * The login's hot statements (CreateSession and SetSession): each one round trip, written as steps
 * of one statement where they change anything. Session aggregates, then user aggregates: every
 * statement takes its locks in that order, so concurrent logins cannot deadlock on them.
 */

type UserVerification = ChallengesTable['user_verification'];

/** A challenge to open together with a session. */
export interface NewChallenge {
  challenge: string;
  rpId: string;
  userVerification: UserVerification;
  expiresAt: Date;
}

export interface NewSession {
  id: string;
  tokenHash: Buffer;
  /** The login name or user id asked for (checks.user); undefined for a usernameless login. */
  lookup: { loginName: string } | { userId: string } | undefined;
  /** The RP ID whose READY passkeys of the user are returned (the allow list). */
  rpId: string;
  /** For checks.user: the keyed digest of the name asked for, known or not. */
  loginDigest: Uint8Array | undefined;
  /** The organization owning the session aggregate. */
  owner: string;
  expiresAt: Date;
  challenge: NewChallenge | undefined;
  userAgent: SessionUserAgent;
  /** Key → base64 of the value. */
  metadata: Record<string, string>;
}

export interface InsertedSession {
  details: AppendResult;
  /** The active user the lookup found, if any. */
  userId: string | undefined;
  orgId: string | undefined;
  /** That user's READY passkeys for the RP ID, oldest first. */
  credentials: { id: Uint8Array; transports: string[] }[];
}

/**
 * Opens a session and, when asked, its WebAuthn challenge, with its events, for the user a login name
 * or id names, in ONE statement: it looks the user up, stores the session bound to whoever it found
 * (the user's id is merged into the events' payloads), and returns that user's passkeys for the allow
 * list. The same statement runs whether or not the login name exists.
 */
export async function insertSession(db: Kysely<Database>, s: NewSession, events: readonly NewEvent[], creator: string): Promise<InsertedSession> {
  const lookup = s.lookup;
  const found = lookup === undefined ? sql`false` : 'loginName' in lookup ? sql`username_lower = ${lookup.loginName.toLowerCase()}::text` : sql`id = ${lookup.userId}::text`;
  const c = s.challenge;
  const steps: Step[] = [
    // Machine users never sign in: a name of one is treated like an unknown name.
    { name: 'u', body: sql`select id, org_id from users where state = 'active' and type = 'human' and ${found}` },
    {
      name: 'creds',
      body: sql`select p.credential_id, p.transports, p.created_at from passkeys p join u on p.user_id = u.id where p.state = 'ready' and p.rp_id = ${s.rpId}::text`,
    },
    ...appendSteps('agg', { type: 'session', id: s.id, owner: s.owner }, events, creator, { patch: sql`jsonb_build_object('user_id', (select id from u))`, row: false }),
    {
      name: 'session',
      body: sql`insert into sessions (id, token_hash, user_id, org_id, login_digest, created_at, updated_at, expires_at, sequence, user_agent, metadata, creator)
        select ${s.id}::text, ${s.tokenHash}::bytea, (select id from u), (select org_id from u),
          ${s.loginDigest ? Buffer.from(s.loginDigest) : null}::bytea, agg.created_at, agg.updated_at, ${s.expiresAt}::timestamptz, agg.sequence,
          ${JSON.stringify(s.userAgent)}::jsonb, ${JSON.stringify(s.metadata)}::jsonb, ${creator}::text
        from agg`,
    },
  ];
  if (c) {
    steps.push({
      name: 'challenge',
      body: sql`insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, expires_at)
        select ${newId()}::text, 'authentication', ${c.challenge}::text, (select id from u), null, ${s.id}::text, ${c.rpId}::text, ${c.userVerification}::text, null, ${c.expiresAt}::timestamptz`,
    });
  }
  type Row = AppendedRow & { user_id: string | null; org_id: string | null; credential_id: Uint8Array | null; transports: string[] | null };
  const rows = await runSteps<Row>(
    db,
    steps,
    sql`agg.sequence, agg.created_at, agg.updated_at, agg.resource_owner, u.id as user_id, u.org_id, creds.credential_id, creds.transports
      from agg left join u on true left join creds on true order by creds.created_at`,
  );
  const first = rows[0]!;
  return {
    details: appendResultOf(first),
    userId: first.user_id ?? undefined,
    orgId: first.org_id ?? undefined,
    credentials: rows.filter((r) => r.credential_id !== null).map((r) => ({ id: r.credential_id!, transports: r.transports ?? [] })),
  };
}

/** A login's session with its open challenge, read in one query. */
export interface SessionContext {
  id: string;
  token_hash: Uint8Array;
  user_id: string | null;
  org_id: string | null;
  login_digest: Uint8Array | null;
  webauthn_checked_at: Date | null;
  expires_at: Date;
  /** Key → base64 of the value. */
  metadata: Record<string, string>;
  owner: string;
  challenge_id: string | null;
  challenge: string | null;
  rp_id: string | null;
  user_verification: UserVerification | null;
  challenge_expires_at: Date | null;
}

/** A READY passkey of an active user, with what a login needs of that user. */
export interface LoginPasskey {
  id: string;
  user_id: string;
  org_id: string;
  public_key: Uint8Array | null;
  sign_count: number;
  rp_id: string;
  webauthn_user_handle: Uint8Array;
  /** The login policy of the passkey's organization (or the instance default) requires SSO. */
  sso_required: boolean;
}

function sessionQuery(db: Kysely<Database>, sessionId: string) {
  return db
    .selectFrom('sessions as s')
    .innerJoin('aggregates as a', (j) => j.on('a.aggregate_type', '=', 'session').onRef('a.aggregate_id', '=', 's.id'))
    .leftJoin('challenges as c', (j) => j.onRef('c.session_id', '=', 's.id').on('c.kind', '=', 'authentication'))
    .select([
      's.id',
      's.token_hash',
      's.user_id',
      's.org_id',
      's.login_digest',
      's.webauthn_checked_at',
      's.expires_at',
      's.metadata',
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

function passkeyQuery(db: Kysely<Database>, credentialId: Buffer) {
  return db
    .selectFrom('passkeys as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .select(['p.id', 'p.user_id', 'p.org_id', 'p.public_key', 'p.sign_count', 'p.rp_id', 'u.webauthn_user_handle'])
    .select(sql<boolean>`coalesce((select lp.sso_required from login_policies lp where lp.org_id in (p.org_id, '') order by lp.org_id desc limit 1), false)`.as('sso_required'))
    .where('p.credential_id', '=', credentialId)
    .where('p.state', '=', 'ready')
    .where('u.state', '=', 'active');
}

/** The session with its open challenge (the newest), or undefined. */
export async function findSessionContext(db: Kysely<Database>, sessionId: string): Promise<SessionContext | undefined> {
  return sessionQuery(db, sessionId).executeTakeFirst();
}

/**
 * SetSession's two reads in one round trip (each query costs more client CPU than its SQL): the
 * session with its open challenge, and the passkey the assertion names. Both are joined laterally to a
 * one-row table, so either may be missing; the passkey's columns come back prefixed `p_`.
 */
export async function findSessionAndPasskey(db: Kysely<Database>, sessionId: string, credentialId: Buffer): Promise<[SessionContext | undefined, LoginPasskey | undefined]> {
  type Row = Partial<SessionContext> & {
    p_id: string | null;
    p_user_id: string;
    p_org_id: string;
    p_public_key: Uint8Array | null;
    p_sign_count: number;
    p_rp_id: string;
    p_webauthn_user_handle: Uint8Array;
    p_sso_required: boolean;
  };
  const { rows } = await sql<Row>`
    select s.*, p.id as p_id, p.user_id as p_user_id, p.org_id as p_org_id, p.public_key as p_public_key, p.sign_count as p_sign_count,
      p.rp_id as p_rp_id, p.webauthn_user_handle as p_webauthn_user_handle, p.sso_required as p_sso_required
    from (select 1) one
    left join lateral (${sessionQuery(db, sessionId)}) s on true
    left join lateral (${passkeyQuery(db, credentialId)}) p on true`.execute(db);
  const { p_id, p_user_id, p_org_id, p_public_key, p_sign_count, p_rp_id, p_webauthn_user_handle, p_sso_required, ...session } = rows[0]!;
  const passkey =
    p_id === null
      ? undefined
      : {
          id: p_id,
          user_id: p_user_id,
          org_id: p_org_id,
          public_key: p_public_key,
          sign_count: p_sign_count,
          rp_id: p_rp_id,
          webauthn_user_handle: p_webauthn_user_handle,
          sso_required: p_sso_required,
        };
  return [session.id == null ? undefined : (session as SessionContext), passkey];
}

/** The organization of the active user a login name or id names, or undefined. */
export async function findOrgOfLogin(db: Kysely<Database>, lookup: { loginName: string } | { userId: string }): Promise<string | undefined> {
  let q = db.selectFrom('users').select('org_id').where('state', '=', 'active');
  q = 'loginName' in lookup ? q.where('username_lower', '=', lookup.loginName.toLowerCase()) : q.where('id', '=', lookup.userId);
  return (await q.executeTakeFirst())?.org_id;
}

/** A user's READY credentials for an RP ID (the allow list), oldest first; no rows for an unknown user. */
export async function findAllowList(
  db: Kysely<Database>,
  rpId: string,
  lookup: { loginName: string } | { userId: string },
): Promise<{ userId: string | undefined; orgId: string | undefined; credentials: { id: Uint8Array; transports: string[] }[] }> {
  let q = db
    .selectFrom('users as u')
    .leftJoin('passkeys as p', (j) => j.onRef('p.user_id', '=', 'u.id').on('p.state', '=', 'ready').on('p.rp_id', '=', rpId))
    .select(['u.id', 'u.org_id', 'p.credential_id', 'p.transports'])
    .where('u.state', '=', 'active')
    .where('u.type', '=', 'human');
  q = 'loginName' in lookup ? q.where('u.username_lower', '=', lookup.loginName.toLowerCase()) : q.where('u.id', '=', lookup.userId);
  const rows = await q.orderBy('p.created_at').execute();
  const user = rows[0];
  return {
    userId: user?.id,
    orgId: user?.org_id,
    credentials: rows.filter((r) => r.credential_id).map((r) => ({ id: r.credential_id!, transports: r.transports ?? [] })),
  };
}

/** What a verified assertion changes. */
export interface CompletedLogin {
  session: AggregateRef;
  challengeId: string;
  /** The new session token's hash: the token handed out before stops working. */
  tokenHash: Buffer;
  passkey: { id: string; userId: string; orgId: string };
  at: Date;
  signCount: number;
  userVerified: boolean;
  backedUp: boolean;
  /** Refuse a counter that did not increase (checked again against the row as it is now). */
  rejectCounterRegression: boolean;
  /** SetSession's lifetime and metadata, changed by the same statement. */
  context?: SessionContextChange | undefined;
}

/** A change of a session's lifetime or metadata. */
export interface SessionContextChange {
  expiresAt?: Date | undefined;
  /** Keys to set (base64 values) and keys to delete. */
  metadata?: { set: Record<string, string>; delete: string[] } | undefined;
}

/** The SQL assignments of a context change (none when nothing changes), for a session row aliased `r`. */
export function contextAssignments(c: SessionContextChange | undefined) {
  const parts = [];
  if (c?.expiresAt) parts.push(sql`expires_at = ${c.expiresAt}::timestamptz`);
  if (c?.metadata) parts.push(sql`metadata = (r.metadata || ${JSON.stringify(c.metadata.set)}::jsonb) - ${c.metadata.delete}::text[]`);
  return parts;
}

export interface LoginRefusals {
  /** The challenge was consumed meanwhile: a replay. */
  consumed: () => Error;
  /** The session ended or expired meanwhile. */
  ended: () => Error;
  /** The passkey went away, or its counter did not increase (two logins raced with one credential). */
  notAccepted: () => Error;
}

/**
 * A verified login in ONE statement, atomic on its own (no BEGIN or COMMIT): consume the challenge (a
 * second use finds nothing), record the factor on the session, update the passkey; each step
 * conditioned on the one before. The CTEs of one statement run in no documented order, but each needs
 * rows of the one before, so the executor runs them as a chain: challenge row, session aggregate,
 * session row, user aggregate, then the passkey and users rows.
 */
export async function completeLogin(
  db: Kysely<Database>,
  l: CompletedLogin,
  sessionEvents: readonly NewEvent[],
  userEvents: readonly NewEvent[],
  refusals: LoginRefusals,
): Promise<AppendResult> {
  const counterGuard = l.rejectCounterRegression ? sql<boolean>`(sign_count < ${l.signCount} or (${l.signCount} = 0 and sign_count = 0))` : sql<boolean>`true`;
  const userId = l.passkey.userId;
  const steps: Step[] = [
    { name: 'consumed', body: sql`delete from challenges where id = ${l.challengeId}::text returning id`, refusal: refusals.consumed },
    ...appendSteps('sess', l.session, sessionEvents, userId, {
      when: sql<boolean>`exists (select 1 from consumed)`,
      row: {
        name: 'live',
        refusal: refusals.ended,
        set: sql`token_hash = ${l.tokenHash}::bytea, user_id = ${userId}::text, org_id = ${l.passkey.orgId}::text,
          user_checked_at = ${l.at}::timestamptz, webauthn_checked_at = ${l.at}::timestamptz, webauthn_user_verified = ${l.userVerified}::boolean,
          passkey_id = ${l.passkey.id}::text${sql.join([sql``, ...contextAssignments(l.context)], sql`, `)}`,
        where: sql<boolean>`r.expires_at > ${l.at}::timestamptz`,
      },
    }),
    ...appendSteps('usr', { type: 'user', id: userId, owner: l.passkey.orgId }, userEvents, userId, { when: sql<boolean>`exists (select 1 from live)` }),
    {
      name: 'accepted',
      refusal: refusals.notAccepted,
      body: sql`update passkeys set sign_count = greatest(sign_count, ${l.signCount}::bigint), backed_up = ${l.backedUp}::boolean,
          last_used_at = ${l.at}::timestamptz, updated_at = ${l.at}::timestamptz
        where id = ${l.passkey.id}::text and state = 'ready' and ${counterGuard} and exists (select 1 from usr)
        returning id`,
    },
  ];
  const rows = await runSteps<AppendedRow>(db, steps, sql`sess.sequence, sess.created_at, sess.updated_at, sess.resource_owner from (select 1) one left join sess on true`);
  return appendResultOf(rows[0]!);
}
