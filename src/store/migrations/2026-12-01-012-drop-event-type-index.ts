import { sql, type Kysely } from 'kysely';

/**
 * `events_type_idx` (event_type, position) goes: no query of passkeyd reads events by type, and every
 * event paid an index entry for it (three per login). The audit trail is still read by aggregate
 * (the unique key) or by position; an operator who queries it by type at scale can add the index.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists events_type_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('events_type_idx').ifNotExists().on('events').columns(['event_type', 'position']).execute();
}
