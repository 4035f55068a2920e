import { sql, type Kysely } from 'kysely';

/**
 * A login session's open WebAuthn challenge lives in the session's own row instead of a row of
 * `challenges`: opening it is part of the session's insert, and using it is part of the update that
 * records the login (the UPDATE re-checks `challenge_id` against the row as the last writer left it,
 * so a challenge is used once, across instances). A login writes two rows and four index entries
 * less. `challenges` keeps the registration ceremonies. Challenges open at the upgrade move over.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('sessions')
    .addColumn('challenge_id', 'text')
    .addColumn('challenge', 'text')
    .addColumn('challenge_rp_id', 'text')
    .addColumn('challenge_user_verification', 'text')
    .addColumn('challenge_expires_at', 'timestamptz')
    .execute();
  await sql`update sessions s set challenge_id = c.id, challenge = c.challenge, challenge_rp_id = c.rp_id,
      challenge_user_verification = c.user_verification, challenge_expires_at = c.expires_at
    from (select distinct on (session_id) * from challenges where kind = 'authentication' order by session_id, created_at desc) c
    where c.session_id = s.id`.execute(db);
  await sql`delete from challenges where kind = 'authentication'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, expires_at)
    select challenge_id, 'authentication', challenge, user_id, null, id, challenge_rp_id, challenge_user_verification, null, challenge_expires_at
    from sessions where challenge_id is not null`.execute(db);
  for (const column of ['challenge_id', 'challenge', 'challenge_rp_id', 'challenge_user_verification', 'challenge_expires_at']) {
    await db.schema.alterTable('sessions').dropColumn(column).execute();
  }
}
