import type { Kysely, Transaction } from 'kysely';
import type { Database } from './schema.js';

/** Stores a server secret unless one of that name exists (first start, any number of instances). */
export async function insertSecretIfMissing(trx: Transaction<Database>, name: string, value: Buffer): Promise<void> {
  await trx
    .insertInto('secrets')
    .values({ name, value, created_at: new Date() })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
}

/** A server secret's bytes; throws when it is missing (bootstrap creates every one). */
export async function readSecret(db: Kysely<Database>, name: string): Promise<Buffer> {
  const row = await db.selectFrom('secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
  return Buffer.from(row.value);
}
