import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { openMigrationStore } from './helpers/migrations.js';
import { BACKEND } from './helpers/server.js';

describe(`migration 012: no index on the event type (${BACKEND})`, () => {
  it('drops events_type_idx, keeps the keys a login needs, and puts the index back going down', async () => {
    const { db, schema, migrator } = await openMigrationStore();
    const indexes = async () =>
      (await sql<{ indexname: string }>`select indexname from pg_indexes where tablename = 'events' and schemaname = current_schema() order by indexname`.execute(db)).rows.map(
        (r) => r.indexname,
      );
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
