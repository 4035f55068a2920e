import type { Insertable, Kysely, Selectable, Transaction } from 'kysely';
import type { Database, RegistrationCodesTable } from './schema.js';

/** A registration code as stored: only its SHA-256 hash, never the code. */
export type RegistrationCode = Selectable<RegistrationCodesTable>;

/** Stores a new registration code (its hash). */
export async function insertRegistrationCode(trx: Transaction<Database>, row: Insertable<RegistrationCodesTable>): Promise<void> {
  await trx.insertInto('registration_codes').values(row).execute();
}

/** One code by id, or undefined. */
export async function findRegistrationCode(db: Kysely<Database>, id: string): Promise<RegistrationCode | undefined> {
  return db.selectFrom('registration_codes').selectAll().where('id', '=', id).executeTakeFirst();
}
