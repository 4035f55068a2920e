import { createHash, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { managesSessionsOf, type Principal } from '../auth/callers.js';
import { denied, notFound } from '../errors.js';
import { appendEvents, type AggregateRef } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import type { Database } from '../store/schema.js';
import * as store from '../store/sessions.js';
import { inTransaction } from '../store/transaction.js';
import { event, type EventOf } from './events.js';
import type { ChangeDetails } from './types.js';

export type { SessionFilter, SessionView } from '../store/sessions.js';

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
  return { type: 'session', id, owner };
}

/** A live session with its user's names, or NOT_FOUND. */
export async function getSessionView(db: Kysely<Database>, id: string): Promise<store.SessionView> {
  const row = await store.findSessionView(db, id);
  if (!row) throw notFound(`session ${id}`);
  return row;
}

/**
 * Who may read or end a session: the holder of its session token, its own user (Bearer), a
 * session_manager or org admin of its organization, or an instance admin (or instance-wide
 * session_manager).
 */
export function authorizeSessionAccess(session: store.SessionRow, principal: Principal | undefined, sessionToken: string | undefined): void {
  if (sessionToken !== undefined && sessionTokenMatches(session.token_hash, sessionToken)) return;
  if (principal) {
    if (session.user_id !== null && principal.subject === session.user_id) return;
    if (managesSessionsOf(principal, session.org_id)) return;
  }
  throw denied('this session belongs to someone else');
}

/** Live sessions matching every filter, by creation date, with the total. */
export function listSessions(db: Kysely<Database>, filters: store.SessionFilter[], page: Page): Promise<ListResult<store.SessionView>> {
  return store.listSessions(db, filters, page);
}

/**
 * Ends a session (logout): `session.terminated`, and its row goes (its open challenge with it). Access tokens
 * carrying its id are refused by this service from then on.
 */
export async function terminateSession(db: Kysely<Database>, id: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    // The session's row first: its aggregate's lock, the one a login takes first.
    const owner = await store.lockSession(trx, id);
    if (owner === undefined) throw notFound(`session ${id}`);
    const details = await appendEvents(trx, sessionAggregate(id, owner), [event('session.terminated', {})], creator);
    if (!(await store.deleteSessionRow(trx, id))) throw notFound(`session ${id}`);
    return details;
  });
}

/**
 * Sign out everywhere: ends every live session of a user but `keep` (`session.terminated.others` on
 * each), in one transaction. Access tokens carrying their ids are refused from then on, on every
 * instance (the session is looked up on every call).
 */
export async function terminateOtherSessions(db: Kysely<Database>, userId: string, keep: string | undefined, creator: string): Promise<{ ids: string[]; at: Date }> {
  return inTransaction(db, async (trx) => {
    const sessions = await store.otherSessions(trx, userId, keep);
    const ended = event('session.terminated.others', { user_id: userId, kept_session_id: keep ?? null });
    for (const s of sessions) {
      await appendEvents(trx, sessionAggregate(s.id, s.owner), [ended], creator);
      await store.deleteSessionRow(trx, s.id);
    }
    return { ids: sessions.map((s) => s.id), at: new Date() };
  });
}

/**
 * Records a refused login step (`session.webauthn.failed` with its reason) in its own small
 * transaction, plus any event for the user aggregate (after the session's: one lock order).
 */
export async function recordLoginFailure(
  db: Kysely<Database>,
  session: { id: string; owner: string },
  failed: EventOf<'session'>,
  creator: string,
  userEvent?: { userId: string; orgId: string; event: EventOf<'user'> },
): Promise<void> {
  await inTransaction(db, async (trx) => {
    await appendEvents(trx, sessionAggregate(session.id, session.owner), [failed], creator);
    if (userEvent) await appendEvents(trx, { type: 'user', id: userEvent.userId, owner: userEvent.orgId }, [userEvent.event], creator);
  });
}

/** Deletes expired sessions and expired login challenges (no event: expiry is not a change). */
export function sweepExpiredSessions(db: Kysely<Database>): Promise<void> {
  return store.deleteExpiredSessions(db);
}
