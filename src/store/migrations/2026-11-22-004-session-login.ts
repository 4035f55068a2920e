import type { Kysely } from 'kysely';

/**
 * Login sessions: `login_digest`, a keyed hash of the login name (or user id) a session was opened for,
 * set only for sessions opened with checks.user. It binds such a session to that name even when the
 * name is unknown (so no other user's discoverable credential can complete it), and lets a later
 * challenge for the session offer the same pseudo credentials as the first. Plus an index for
 * sweeping expired sessions.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('login_digest', 'bytea').execute();
  await db.schema.createIndex('sessions_expires_idx').on('sessions').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sessions_expires_idx').execute();
  await db.schema.alterTable('sessions').dropColumn('login_digest').execute();
}
