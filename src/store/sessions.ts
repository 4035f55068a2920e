import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { newId } from '../ids.js';
import { appendResultOf, appendSteps, type AggregateRef, type AppendedRow, type AppendResult, type NewEvent } from './events.js';
import { listPage, type ListResult, type Page } from './lists.js';
import { contextAssignments, METADATA_FULL, type SessionContextChange } from './login-complete.js';
import type { NewChallenge } from './login.js';
import { DEFAULT_ORG_ID } from './orgs.js';
import { runSteps } from './statement.js';
import type { Database, SessionsTable } from './schema.js';

export type SessionRow = Selectable<SessionsTable>;

/** A session with what its user factor shows (set once a login succeeded). */
export interface SessionView extends SessionRow {
  username: string | null;
  display_name: string | null;
}

/**
 * Replaces a session's open authentication challenge with a new one (in the caller's transaction,
 * after its append has locked the session's row, which is its aggregate's).
 */
export async function replaceChallenge(trx: Transaction<Database>, sessionId: string, c: NewChallenge): Promise<void> {
  await trx
    .updateTable('sessions')
    .set({
      challenge_id: newId(),
      challenge: c.challenge,
      challenge_rp_id: c.rpId,
      challenge_user_verification: c.userVerification,
      challenge_expires_at: c.expiresAt,
    })
    .where('id', '=', sessionId)
    .execute();
}

/**
 * True when a session exists, has not expired and its user is active: two primary-key lookups in one
 * query (access tokens carry `sid`; a deactivated user's tokens stop at once).
 */
export async function isSessionLive(db: Kysely<Database>, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('sessions as s')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .select('s.id')
    .where('s.id', '=', id)
    .where('s.expires_at', '>', sql<Date>`now()`)
    .where('u.state', '=', 'active')
    .executeTakeFirst();
  return row !== undefined;
}

/** A live session with its user's names, or undefined. */
export async function findSessionView(db: Kysely<Database>, id: string): Promise<SessionView | undefined> {
  return db
    .selectFrom('sessions as s')
    .leftJoin('users as u', 'u.id', 's.user_id')
    .selectAll('s')
    .select(['u.username', 'u.display_name'])
    .where('s.expires_at', '>', sql<Date>`now()`)
    .where('s.id', '=', id)
    .executeTakeFirst();
}

export interface SessionFilter {
  ids?: string[] | undefined;
  userId?: string | undefined;
  orgId?: string | undefined;
  created?: { op: '=' | '>' | '>=' | '<' | '<='; at: Date } | undefined;
  creator?: string | undefined;
  fingerprintId?: string | undefined;
}

/** Live sessions matching every filter, by creation date, one page, with the total. */
export async function listSessions(db: Kysely<Database>, filters: readonly SessionFilter[], page: Page): Promise<ListResult<SessionView>> {
  return db.transaction().execute(async (trx) => {
    let q = trx.selectFrom('sessions as s').leftJoin('users as u', 'u.id', 's.user_id').where('s.expires_at', '>', sql<Date>`now()`);
    for (const f of filters) {
      if (f.ids !== undefined) q = f.ids.length ? q.where('s.id', 'in', f.ids) : q.where((eb) => eb.lit(false));
      if (f.userId !== undefined) q = q.where('s.user_id', '=', f.userId);
      if (f.orgId !== undefined) q = q.where('s.org_id', '=', f.orgId);
      if (f.created !== undefined) q = q.where('s.created_at', f.created.op, f.created.at);
      if (f.creator !== undefined) q = q.where('s.creator', '=', f.creator);
      if (f.fingerprintId !== undefined) q = q.where(sql<string>`s.user_agent->>'fingerprintId'`, '=', f.fingerprintId);
    }
    return listPage(trx, q, (s) => s.selectAll('s').select(['u.username', 'u.display_name']), { column: 's.created_at', tiebreak: 's.id' }, page);
  });
}

/**
 * Changes a live session's lifetime or metadata with its events, in ONE statement; refused with `ended`
 * when the session is gone or expired, with `metadataFull` when it would hold too many keys.
 */
export async function changeSessionContext(
  db: Kysely<Database>,
  agg: AggregateRef,
  change: SessionContextChange,
  events: readonly NewEvent[],
  creator: string,
  refusals: { ended: () => Error; metadataFull: () => Error },
): Promise<AppendResult> {
  const steps = appendSteps('sess', agg, events, creator, {
    row: { name: 'live', refusal: refusals.ended, set: sql.join(contextAssignments(change), sql`, `), where: sql<boolean>`r.expires_at > now()` },
  });
  const rows = await runSteps<AppendedRow>(db, steps, sql`sess.sequence, sess.created_at, sess.updated_at, sess.resource_owner from (select 1) one left join sess on true`, {
    [METADATA_FULL]: refusals.metadataFull,
  });
  return appendResultOf(rows[0]!);
}

/**
 * The sessions of a user but one, with their owners, locked in id order (each a session's own lock:
 * its row is its aggregate's), so the caller can append to each and delete it.
 */
export async function otherSessions(trx: Transaction<Database>, userId: string, keep: string | undefined): Promise<{ id: string; owner: string }[]> {
  let q = trx
    .selectFrom('sessions as s')
    .select(['s.id', DEFAULT_ORG_ID.as('owner')])
    .where('s.user_id', '=', userId);
  if (keep !== undefined) q = q.where('s.id', '<>', keep);
  return q.orderBy('s.id').forUpdate().execute();
}

/** Locks a session's row (its aggregate's lock) for the transaction; its owner, or undefined when there is no such session. */
export async function lockSession(trx: Transaction<Database>, id: string): Promise<string | undefined> {
  const row = await trx.selectFrom('sessions').select(DEFAULT_ORG_ID.as('owner')).where('id', '=', id).forUpdate().executeTakeFirst();
  return row?.owner;
}

/** Deletes a session's row; false when there was none. */
export async function deleteSessionRow(trx: Transaction<Database>, id: string): Promise<boolean> {
  const gone = await trx.deleteFrom('sessions').where('id', '=', id).returning('id').executeTakeFirst();
  return gone !== undefined;
}

/**
 * Deletes expired sessions (with their challenges). Expiry is not a change (no event); the rows only
 * stop mattering, and every read already ignores them. An expired challenge of a live session stays
 * until the session's next challenge or login replaces it: it is refused by its expiry.
 */
export async function deleteExpiredSessions(db: Kysely<Database>): Promise<void> {
  await db.deleteFrom('sessions').where('expires_at', '<', sql<Date>`now()`).execute();
}
