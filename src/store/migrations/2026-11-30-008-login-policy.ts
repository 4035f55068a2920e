import { sql, type Kysely } from 'kysely';

/**
 * Login policies and self-service sign-ups. Login policies: one row per organization that has its own, and the instance default under org_id ''
 * (the same convention as administrators' instance grants). No row at all means the built-in defaults.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('login_policies')
    .addColumn('org_id', 'text', (c) => c.primaryKey())
    .addColumn('sso_required', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('max_passkeys_per_user', 'integer', (c) => c.notNull().defaultTo(10))
    .addColumn('allowed_aaguids', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    .addColumn('denied_aaguids', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`))
    // '' = the server's configured default.
    .addColumn('attestation', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('require_trusted_attestation', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('user_verification', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('allow_self_registration', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('sequence', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .execute();

  // A self-service sign-up between StartSignUp and FinishSignUp: no user exists yet, so the ceremony's
  // challenge and the user handle it offered live here, and FinishSignUp consumes the row.
  await db.schema
    .createTable('signups')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('webauthn_user_handle', 'bytea', (c) => c.notNull())
    .addColumn('challenge', 'text', (c) => c.notNull())
    .addColumn('rp_id', 'text', (c) => c.notNull())
    .addColumn('user_verification', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('signups_expires_idx').on('signups').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('signups').execute();
  await db.schema.dropTable('login_policies').execute();
}
