import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { PasskeydError } from '../src/errors.js';
import { appendEvents } from '../src/store/events.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { openMigrationStore } from './helpers/migrations.js';
import { BACKEND } from './helpers/server.js';

describe(`migration 013: a session's row is its aggregate row (${BACKEND})`, () => {
  it("removes the sessions' rows from aggregates; appends go on from the session row's sequence; going down rebuilds them from the events", async () => {
    const { db, schema, migrator } = await openMigrationStore();
    expect((await migrator.migrateTo('2026-12-01-012-drop-event-type-index')).error).toBeUndefined();

    // A session as the code before wrote it: two events, its aggregate row and its own row at sequence 2;
    // and a user's aggregate row, which stays.
    const soon = new Date(Date.now() + 60_000);
    await sql`insert into sessions (id, token_hash, created_at, updated_at, expires_at, sequence) values ('s1', '\\x00'::bytea, now(), now(), ${soon}, 2)`.execute(db);
    await sql`insert into aggregates (aggregate_type, aggregate_id, sequence, resource_owner) values ('session', 's1', 2, 'org1'), ('user', 'u1', 1, 'org1')`.execute(db);
    await sql`insert into events (aggregate_type, aggregate_id, sequence, event_type, payload, resource_owner, creator)
      values ('session', 's1', 1, 'session.added', '{}', 'org1', 'c'), ('session', 's1', 2, 'session.webauthn.challenged', '{}', 'org1', 'c')`.execute(db);
    const aggregates = async () =>
      (await sql<{ t: string; id: string; seq: string }>`select aggregate_type t, aggregate_id id, sequence::text seq from aggregates order by 1, 2`.execute(db)).rows.filter(
        (r) => r.id === 's1' || r.id === 'u1',
      );

    expect(await migrateToLatest(db, schema)).toContain('2026-12-01-013-sessions-own-aggregate');
    expect(await aggregates()).toEqual([{ t: 'user', id: 'u1', seq: '1' }]);

    // The next append to the session takes its sequence from the session's row.
    const details = await db.transaction().execute((trx) => appendEvents(trx, { type: 'session', id: 's1', owner: 'org1' }, [{ type: 'session.terminated', payload: {} }], 'c'));
    expect(details).toMatchObject({ sequence: 3, resourceOwner: 'org1' });
    const events = await db.selectFrom('events').select(['sequence', 'event_type']).where('aggregate_id', '=', 's1').orderBy('sequence').execute();
    expect(events.map((e) => [Number(e.sequence), e.event_type])).toEqual([
      [1, 'session.added'],
      [2, 'session.webauthn.challenged'],
      [3, 'session.terminated'],
    ]);
    expect(Number((await db.selectFrom('sessions').select('sequence').where('id', '=', 's1').executeTakeFirstOrThrow()).sequence)).toBe(3);

    // A session with no row (ended, or never there) is not found, and nothing is appended for it.
    const missing = db.transaction().execute((trx) => appendEvents(trx, { type: 'session', id: 'gone', owner: 'org1' }, [{ type: 'session.terminated', payload: {} }], 'c'));
    await expect(missing).rejects.toSatisfy((e: unknown) => e instanceof PasskeydError && e.kind === 'not_found');
    expect(await db.selectFrom('events').select('sequence').where('aggregate_id', '=', 'gone').execute()).toEqual([]);

    // Down: each session's aggregate row again, at its last event's sequence.
    expect((await migrator.migrateTo('2026-12-01-012-drop-event-type-index')).error).toBeUndefined();
    expect(await aggregates()).toEqual([
      { t: 'session', id: 's1', seq: '3' },
      { t: 'user', id: 'u1', seq: '1' },
    ]);
    expect(await migrateToLatest(db, schema)).toContain('2026-12-01-013-sessions-own-aggregate');
  });
});
