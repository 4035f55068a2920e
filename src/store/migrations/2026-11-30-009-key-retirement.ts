import type { Kysely } from 'kysely';

/**
 * Signing key retirement: `retires_at` is the moment a key stops verifying (set when a rotation
 * supersedes it, or when it is retired by hand), `retired_at` when its retirement was recorded; a
 * retired key's private half is dropped, since nothing may sign with it again.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('signing_keys').addColumn('retires_at', 'timestamptz').addColumn('retired_at', 'timestamptz').execute();
  await db.schema
    .alterTable('signing_keys')
    .alterColumn('private_jwk', (c) => c.dropNotNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('signing_keys').dropColumn('retires_at').dropColumn('retired_at').execute();
}
