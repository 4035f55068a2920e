import { sql, type Kysely } from 'kysely';

/**
 * A user's READY passkeys, counted on the user's row: the statement that makes a passkey READY raises
 * it only while it is below the login policy's limit. An UPDATE re-checks its condition against the
 * row as the last writer left it, so two registrations verified at once cannot both pass a limit of
 * one, which a count read from the statement's snapshot could not promise.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('ready_passkeys', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update users u set ready_passkeys = (select count(*) from passkeys p where p.user_id = u.id and p.state = 'ready')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('ready_passkeys').execute();
}
