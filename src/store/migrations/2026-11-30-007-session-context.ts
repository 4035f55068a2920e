import { sql, type Kysely } from 'kysely';

/**
 * A session's context, as in ZITADEL: the user agent it was opened from (fingerprint id, ip,
 * description, headers without secrets), its metadata (key → base64 of the bytes) and who opened it
 * (the creator: a token's subject, or "anonymous"). No new index: ListSessions filters these within a
 * user's or an organization's sessions, and every index on sessions costs each login's row update.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('sessions')
    .addColumn('user_agent', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('creator', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('user_agent').dropColumn('metadata').dropColumn('creator').execute();
}
