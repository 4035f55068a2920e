import { sql, type Kysely } from 'kysely';

/**
 * Machine users and their credentials: the user's type and machine fields, a client secret (a slow
 * hash), keys for the JWT profile (public keys only), personal access tokens (hashes only), the roles
 * granted through the API, and the jti values of JWT-profile assertions already used (replay guard).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('users')
    .addColumn('type', 'text', (c) => c.notNull().defaultTo('human'))
    .addColumn('machine_name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('machine_description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('secret_hash', 'text')
    .addColumn('secret_id', 'text')
    .execute();
  // No index on `type`: ListUsers filters by it within an organization (users_org_idx), and every index
  // on users costs each login's row update (a login bumps the user's sequence) when it is not HOT.

  await db.schema
    .createTable('machine_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('algorithm', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('machine_keys_user_idx').on('machine_keys').columns(['user_id', 'created_at']).execute();

  await db.schema
    .createTable('personal_access_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'bytea', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('personal_access_tokens_user_idx').on('personal_access_tokens').columns(['user_id', 'created_at']).execute();

  // org_id '' = the grant is on the instance.
  await db.schema
    .createTable('administrators')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('org_id', 'text', (c) => c.notNull())
    .addColumn('roles', sql`text[]`, (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('administrators_pkey', ['user_id', 'org_id'])
    .execute();

  await db.schema
    .createTable('used_assertions')
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('jti', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('used_assertions_pkey', ['user_id', 'jti'])
    .execute();
  await db.schema.createIndex('used_assertions_expires_idx').on('used_assertions').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of ['used_assertions', 'administrators', 'personal_access_tokens', 'machine_keys']) await db.schema.dropTable(t).execute();
  for (const c of ['secret_id', 'secret_hash', 'machine_description', 'machine_name', 'type']) await db.schema.alterTable('users').dropColumn(c).execute();
}
