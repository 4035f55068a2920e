import { sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { migrations } from '../src/store/migrations/index.js';
import { BACKEND, openTestStore } from './helpers/server.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

describe(`migration 012: no index on the event type (${BACKEND})`, () => {
  it('drops events_type_idx, keeps the keys a login needs, and puts the index back going down', async () => {
    const { store, schema, cleanup } = await openTestStore();
    cleanups.push(async () => {
      await store.close();
      await cleanup();
    });
    const db = store.db;
    const indexes = async () =>
      (await sql<{ indexname: string }>`select indexname from pg_indexes where tablename = 'events' and schemaname = current_schema() order by indexname`.execute(db)).rows.map(
        (r) => r.indexname,
      );
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) });
    expect((await migrator.migrateTo('2026-12-01-011-session-challenge')).error).toBeUndefined();
    expect(await indexes()).toContain('events_type_idx');

    expect(await migrateToLatest(db, schema)).toContain('2026-12-01-012-drop-event-type-index');
    // What a login's events still need: the global position and the per-aggregate sequence (its uniqueness).
    expect(await indexes()).toEqual(['events_aggregate_sequence_key', 'events_pkey']);

    expect((await migrator.migrateTo('2026-12-01-011-session-challenge')).error).toBeUndefined();
    expect(await indexes()).toContain('events_type_idx');
    expect(await migrateToLatest(db, schema)).toContain('2026-12-01-012-drop-event-type-index');
    expect(await indexes()).not.toContain('events_type_idx');
  });
});
