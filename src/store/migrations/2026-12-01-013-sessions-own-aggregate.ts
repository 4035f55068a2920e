import { sql, type Kysely } from 'kysely';

/**
 * A session's own row is its aggregate row from now on (its sequence and its lock; src/store/events.ts):
 * the sessions' rows in `aggregates` go. Their sequences are the same as the session rows' (every append
 * kept the two in step), and the rows of ended sessions were only left behind.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`delete from aggregates where aggregate_type = 'session'`.execute(db);
}

/** Back to a row per session in `aggregates`, rebuilt from the sessions' events. */
export async function down(db: Kysely<any>): Promise<void> {
  await sql`insert into aggregates (aggregate_type, aggregate_id, sequence, resource_owner, created_at, updated_at)
    select 'session', aggregate_id, max(sequence), min(resource_owner), min(created_at), max(created_at)
    from events where aggregate_type = 'session' group by aggregate_id
    on conflict (aggregate_type, aggregate_id) do nothing`.execute(db);
}
