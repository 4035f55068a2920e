import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { openMigrationStore } from './helpers/migrations.js';
import { BACKEND } from './helpers/server.js';

describe(`migration 011: a login's challenge in its session's row (${BACKEND})`, () => {
  it('moves the newest open login challenge of each session into its row, and leaves registration challenges alone', async () => {
    const { db, schema, migrator: before } = await openMigrationStore();
    const { error } = await before.migrateTo('2026-12-01-010-ready-passkeys');
    expect(error).toBeUndefined();

    // Two sessions, one with two login challenges and one with none, and a registration ceremony. (The
    // old scheme deleted a session's challenge before adding the next, so two should not exist; if they
    // do, the newest is the open one.)
    const soon = new Date(Date.now() + 60_000);
    for (const id of ['s1', 's2']) {
      await sql`insert into sessions (id, token_hash, created_at, updated_at, expires_at, sequence) values (${id}, '\\x00'::bytea, now(), now(), ${soon}, 1)`.execute(db);
    }
    const challenge = (id: string, kind: string, session: string | null, value: string, created: string) =>
      sql`insert into challenges (id, kind, challenge, session_id, rp_id, user_verification, created_at, expires_at)
        values (${id}, ${kind}, ${value}, ${session}, 'localhost', 'required', ${created}::timestamptz, ${soon})`.execute(db);
    await challenge('c-old', 'authentication', 's1', 'older', '2026-01-01T00:00:00Z');
    await challenge('c-new', 'authentication', 's1', 'newer', '2026-01-02T00:00:00Z');
    await challenge('c-reg', 'registration', null, 'registering', '2026-01-02T00:00:00Z');

    expect(await migrateToLatest(db, schema)).toContain('2026-12-01-011-session-challenge');
    const rows = await db
      .selectFrom('sessions')
      .select(['id', 'challenge_id', 'challenge', 'challenge_rp_id', 'challenge_user_verification', 'challenge_expires_at'])
      .orderBy('id')
      .execute();
    expect(rows).toEqual([
      { id: 's1', challenge_id: 'c-new', challenge: 'newer', challenge_rp_id: 'localhost', challenge_user_verification: 'required', challenge_expires_at: soon },
      { id: 's2', challenge_id: null, challenge: null, challenge_rp_id: null, challenge_user_verification: null, challenge_expires_at: null },
    ]);
    expect((await db.selectFrom('challenges').select(['id', 'kind']).execute()).map((r) => r.id)).toEqual(['c-reg']);
  });
});
