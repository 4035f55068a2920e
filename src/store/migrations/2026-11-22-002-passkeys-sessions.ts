import { sql, type Kysely } from 'kysely';

/** Passkeys, pending ceremonies (challenges), registration codes and login sessions. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('passkeys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    // not_ready until verified, then ready; removed passkeys are deleted (their events stay).
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('credential_id', 'bytea', (c) => c.unique())
    .addColumn('public_key', 'bytea')
    .addColumn('algorithm', 'integer')
    .addColumn('sign_count', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('aaguid', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('authenticator_name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('backup_eligible', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('backed_up', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('device_type', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('transports', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('rp_id', 'text', (c) => c.notNull())
    .addColumn('attestation_format', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('authenticator_attachment', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('registration_code_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_used_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('passkeys_user_idx').on('passkeys').columns(['user_id', 'state', 'created_at']).execute();

  // One row per open ceremony. Consuming it is a DELETE ... RETURNING, so a challenge succeeds once.
  await db.schema
    .createTable('challenges')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull()) // 'registration' | 'authentication'
    .addColumn('challenge', 'text', (c) => c.notNull()) // base64url, as sent to the browser
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('passkey_id', 'text')
    .addColumn('session_id', 'text')
    .addColumn('rp_id', 'text', (c) => c.notNull())
    .addColumn('user_verification', 'text', (c) => c.notNull())
    .addColumn('registration_code_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('challenges_passkey_idx').on('challenges').column('passkey_id').execute();
  await db.schema.createIndex('challenges_session_idx').on('challenges').column('session_id').execute();
  await db.schema.createIndex('challenges_expires_idx').on('challenges').column('expires_at').execute();

  await db.schema
    .createTable('registration_codes')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('code_hash', 'bytea', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .execute();

  await db.schema
    .createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'bytea', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('org_id', 'text')
    .addColumn('user_checked_at', 'timestamptz')
    .addColumn('webauthn_checked_at', 'timestamptz')
    .addColumn('webauthn_user_verified', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('passkey_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('sequence', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('sessions_user_idx').on('sessions').columns(['user_id', 'created_at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['sessions', 'registration_codes', 'challenges', 'passkeys']) await db.schema.dropTable(t).execute();
}
