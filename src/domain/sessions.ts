import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Principal } from '../auth/tokens.js';
import { newId } from '../ids.js';
import { appendCtes, appendEvents, appendResultOf, latestPosition, type AggregateRef, type AppendedRow } from '../store/events.js';
import type { ChallengesTable, Database, SessionsTable } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { denied, notFound } from './errors.js';
import type { ChangeDetails, ListResult, Page } from './types.js';

/** The aggregate type of login sessions. */
export const SESSION = 'session';

export type SessionRow = Selectable<SessionsTable>;

/** A session with what its user factor shows (set once a login succeeded). */
export interface SessionView extends SessionRow {
  username: string | null;
  display_name: string | null;
}

/** sha256 of a session token: only the hash is stored, so a database read does not yield tokens. */
export function hashSessionToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Compares a presented session token with a stored hash in constant time. */
export function sessionTokenMatches(stored: Uint8Array, presented: string): boolean {
  const h = hashSessionToken(presented);
  return stored.length === h.length && timingSafeEqual(Buffer.from(stored), h);
}

/** The aggregate a session's events go to. */
export function sessionAggregate(id: string, owner: string): AggregateRef {
  return { type: SESSION, id, owner };
}

/** A challenge to open together with a session. */
export interface NewChallenge {
  challenge: string;
  rpId: string;
  userVerification: ChallengesTable['user_verification'];
  expiresAt: Date;
}

export interface OpenSessionInput {
  /** The login name or user id asked for (checks.user); undefined for a usernameless login. */
  lookup: { loginName: string } | { userId: string } | undefined;
  /** The RP ID whose READY passkeys of the user are returned (the allow list). */
  rpId: string;
  /** For checks.user: the keyed digest of the name asked for, known or not; undefined for usernameless. */
  loginDigest: Uint8Array | undefined;
  /** The organization owning the session aggregate. */
  owner: string;
  expiresAt: Date;
  challenge: NewChallenge | undefined;
  /** Recorded in the event (with the user's id when found); never the login name (it may be unknown, or personal data). */
  payload: Record<string, unknown>;
}

export interface OpenedSession {
  id: string;
  token: string;
  details: ChangeDetails;
  /** The active user the lookup found, if any. */
  userId: string | undefined;
  orgId: string | undefined;
  /** That user's READY passkeys for the RP ID, oldest first. */
  credentials: { id: Uint8Array; transports: string[] }[];
}

/**
 * Opens a session and, when asked, its WebAuthn challenge, with `session.added`, for the user a login
 * name or id names: ONE statement (atomic on its own, one round trip) that looks the user up, stores
 * the session bound to whoever it found, and returns that user's passkeys for the allow list. The same
 * statement runs whether or not the login name exists. The session row takes the aggregate's sequence
 * and dates from the append's RETURNING.
 */
export async function openSession(db: Kysely<Database>, input: OpenSessionInput, creator: string): Promise<OpenedSession> {
  const id = newId();
  const token = randomBytes(32).toString('base64url');
  const tokenHash = hashSessionToken(token);
  const added = [{ type: 'session.added', payload: { ...input.payload, expires_at: input.expiresAt.toISOString() } }];
  const lookup = input.lookup;
  const found =
    lookup === undefined ? sql`false` : 'loginName' in lookup ? sql`username_lower = ${lookup.loginName.toLowerCase()}::text` : sql`id = ${lookup.userId}::text`;
  const c = input.challenge;
  const challenge = c
    ? sql`, challenge as (
        insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, expires_at)
        select ${newId()}::text, 'authentication', ${c.challenge}::text, (select id from u), null, ${id}::text, ${c.rpId}::text, ${c.userVerification}::text, null, ${c.expiresAt}::timestamptz
      )`
    : sql``;
  const { rows } = await sql<AppendedRow & { user_id: string | null; org_id: string | null; credential_id: Uint8Array | null; transports: string[] | null }>`
    with u as (
      select id, org_id from users where state = 'active' and ${found}
    ), creds as (
      select p.credential_id, p.transports, p.created_at from passkeys p join u on p.user_id = u.id where p.state = 'ready' and p.rp_id = ${input.rpId}::text
    ), ${appendCtes('agg', sessionAggregate(id, input.owner), added, creator, undefined, sql`jsonb_build_object('user_id', (select id from u))`)}, session as (
      insert into sessions (id, token_hash, user_id, org_id, login_digest, created_at, updated_at, expires_at, sequence)
      select ${id}::text, ${tokenHash}::bytea, (select id from u), (select org_id from u),
        ${input.loginDigest ? Buffer.from(input.loginDigest) : null}::bytea, agg.created_at, agg.updated_at, ${input.expiresAt}::timestamptz, agg.sequence
      from agg
    )${challenge}
    select agg.sequence, agg.created_at, agg.updated_at, agg.resource_owner, u.id as user_id, u.org_id, creds.credential_id, creds.transports
    from agg left join u on true left join creds on true
    order by creds.created_at`.execute(db);
  const first = rows[0]!;
  return {
    id,
    token,
    details: appendResultOf(first),
    userId: first.user_id ?? undefined,
    orgId: first.org_id ?? undefined,
    credentials: rows.filter((r) => r.credential_id !== null).map((r) => ({ id: r.credential_id!, transports: r.transports ?? [] })),
  };
}

/** Stores an authentication challenge for a session. */
export async function insertChallenge(trx: Transaction<Database>, sessionId: string, userId: string | undefined | null, c: NewChallenge): Promise<void> {
  await trx
    .insertInto('challenges')
    .values({
      id: newId(),
      kind: 'authentication',
      challenge: c.challenge,
      user_id: userId ?? null,
      passkey_id: null,
      session_id: sessionId,
      rp_id: c.rpId,
      user_verification: c.userVerification,
      registration_code_id: null,
      expires_at: c.expiresAt,
    })
    .execute();
}

/** True when a session exists and has not expired: one primary-key lookup (access tokens carry `sid`). */
export async function isSessionLive(db: Kysely<Database>, id: string): Promise<boolean> {
  const row = await db.selectFrom('sessions').select('id').where('id', '=', id).where('expires_at', '>', sql<Date>`now()`).executeTakeFirst();
  return row !== undefined;
}

function viewQuery(db: Kysely<Database>) {
  return db
    .selectFrom('sessions as s')
    .leftJoin('users as u', 'u.id', 's.user_id')
    .selectAll('s')
    .select(['u.username', 'u.display_name'])
    .where('s.expires_at', '>', sql<Date>`now()`);
}

/** A live session with its user's names, or NOT_FOUND. */
export async function getSessionView(db: Kysely<Database>, id: string): Promise<SessionView> {
  const row = await viewQuery(db).where('s.id', '=', id).executeTakeFirst();
  if (!row) throw notFound(`session ${id}`);
  return row;
}

/**
 * Who may read or end a session: the holder of its session token, its own user (Bearer), an org
 * admin of its organization, or an instance admin.
 */
export function authorizeSessionAccess(session: SessionRow, principal: Principal | undefined, sessionToken: string | undefined): void {
  if (sessionToken !== undefined && sessionTokenMatches(session.token_hash, sessionToken)) return;
  if (principal) {
    if (principal.roles.has('instance_admin')) return;
    if (session.user_id !== null && principal.subject === session.user_id) return;
    if (principal.roles.has('org_admin') && session.org_id !== null && session.org_id === principal.orgId) return;
  }
  throw denied('this session belongs to someone else');
}

export interface SessionFilter {
  ids?: string[] | undefined;
  userId?: string | undefined;
  orgId?: string | undefined;
}

/** Live sessions matching every filter, by creation date, with the total. */
export async function listSessions(db: Kysely<Database>, filters: SessionFilter[], page: Page): Promise<ListResult<SessionView>> {
  return db.transaction().execute(async (trx) => {
    let q = trx.selectFrom('sessions as s').where('s.expires_at', '>', sql<Date>`now()`);
    for (const f of filters) {
      if (f.ids !== undefined) q = f.ids.length ? q.where('s.id', 'in', f.ids) : q.where((eb) => eb.lit(false));
      if (f.userId !== undefined) q = q.where('s.user_id', '=', f.userId);
      if (f.orgId !== undefined) q = q.where('s.org_id', '=', f.orgId);
    }
    const dir = page.asc ? 'asc' : 'desc';
    const [items, total, position] = await Promise.all([
      q.leftJoin('users as u', 'u.id', 's.user_id').selectAll('s').select(['u.username', 'u.display_name']).orderBy('s.created_at', dir).orderBy('s.id', dir).offset(page.offset).limit(page.limit).execute(),
      q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      latestPosition(trx),
    ]);
    return { items, total: Number(total.n), processedPosition: position, timestamp: new Date() };
  });
}

/** The session's aggregate owner (fixed when the session was opened). */
async function ownerOf(trx: Transaction<Database>, id: string): Promise<string> {
  const row = await trx.selectFrom('aggregates').select('resource_owner').where('aggregate_type', '=', SESSION).where('aggregate_id', '=', id).executeTakeFirstOrThrow();
  return row.resource_owner;
}

/**
 * Ends a session (logout): `session.terminated`, the row and its open challenges go. Access tokens
 * carrying its id are refused by this service from then on.
 */
export async function terminateSession(db: Kysely<Database>, id: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    // Challenge rows first, then the session's aggregate: the order a login's transaction takes them in.
    await trx.deleteFrom('challenges').where('session_id', '=', id).execute();
    const owner = await ownerOf(trx, id);
    const details = await appendEvents(trx, sessionAggregate(id, owner), [{ type: 'session.terminated', payload: {} }], creator);
    const gone = await trx.deleteFrom('sessions').where('id', '=', id).returning('id').executeTakeFirst();
    if (!gone) throw notFound(`session ${id}`);
    return details;
  });
}

/**
 * Records a refused login step (`session.webauthn.failed` with its reason) in its own small
 * transaction, plus any events for the user aggregate (after the session's: one lock order).
 */
export async function recordLoginFailure(
  db: Kysely<Database>,
  session: { id: string; owner: string },
  payload: Record<string, unknown>,
  creator: string,
  userEvent?: { userId: string; orgId: string; type: string; payload: Record<string, unknown> },
): Promise<void> {
  await inTransaction(db, async (trx) => {
    const d = await appendEvents(trx, sessionAggregate(session.id, session.owner), [{ type: 'session.webauthn.failed', payload }], creator);
    await trx.updateTable('sessions').set({ sequence: d.sequence, updated_at: d.changeDate }).where('id', '=', session.id).execute();
    if (userEvent) {
      const u = await appendEvents(trx, { type: 'user', id: userEvent.userId, owner: userEvent.orgId }, [{ type: userEvent.type, payload: userEvent.payload }], creator);
      await trx.updateTable('users').set({ sequence: u.sequence, updated_at: u.changeDate }).where('id', '=', userEvent.userId).execute();
    }
  });
}

/**
 * Deletes expired sessions and expired login challenges. Expiry is not a change (no event); the rows
 * only stop mattering, and every read already ignores them.
 */
export async function sweepExpiredSessions(db: Kysely<Database>): Promise<void> {
  await db.deleteFrom('challenges').where('kind', '=', 'authentication').where('expires_at', '<', sql<Date>`now()`).execute();
  await db.deleteFrom('sessions').where('expires_at', '<', sql<Date>`now()`).execute();
}
