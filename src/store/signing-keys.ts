import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Database, SigningKeysTable } from './schema.js';

/** A signing key as stored: JWKs, the private one only ever read by the token service. */
export type SigningKeyRow = Selectable<SigningKeysTable>;

/** Stores a new signing key. */
export async function insertSigningKey(db: Kysely<Database> | Transaction<Database>, key: { kid: string; privateJwk: object; publicJwk: object }): Promise<void> {
  await db
    .insertInto('signing_keys')
    .values({ kid: key.kid, private_jwk: JSON.stringify(key.privateJwk), public_jwk: JSON.stringify(key.publicJwk), created_at: new Date() })
    .execute();
}

/** Every key not yet retired, newest first. */
export async function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().where('retired_at', 'is', null).orderBy('created_at', 'desc').orderBy('kid').execute();
}

/** True when at least one signing key exists that is not retired. */
export async function hasSigningKey(db: Kysely<Database> | Transaction<Database>): Promise<boolean> {
  const row = await db.selectFrom('signing_keys').select('kid').where('retired_at', 'is', null).limit(1).executeTakeFirst();
  return row !== undefined;
}

/**
 * Locks every key not yet retired for the rest of the transaction, so rotations and retirements take
 * turns (a second rotation then sees the first one's key); returns the key asked for, if any.
 */
export async function lockSigningKeys(trx: Transaction<Database>, kid: string): Promise<{ kid: string; retires_at: Date | null; retired_at: Date | null } | undefined> {
  await trx.selectFrom('signing_keys').select('kid').where('retired_at', 'is', null).forUpdate().execute();
  return trx.selectFrom('signing_keys').select(['kid', 'retires_at', 'retired_at']).where('kid', '=', kid).executeTakeFirst();
}

/** Gives every key still signing, except `newKid`, a deadline; returns the kids it gave one to. */
export async function scheduleRetirement(trx: Transaction<Database>, newKid: string, retiresAt: Date): Promise<string[]> {
  const rows = await trx
    .updateTable('signing_keys')
    .set({ retires_at: retiresAt })
    .where('kid', '<>', newKid)
    .where('retires_at', 'is', null)
    .where('retired_at', 'is', null)
    .returning('kid')
    .execute();
  return rows.map((r) => r.kid).sort();
}

/**
 * Records a key's retirement and drops its private half: `now` ends it at once (by hand), `due` only
 * when its deadline has passed. Returns its deadline, or undefined when it was retired already (by
 * another instance) or is not due.
 */
export async function markSigningKeyRetired(trx: Transaction<Database>, kid: string, at: Date, mode: 'now' | 'due'): Promise<Date | undefined> {
  let q = trx.updateTable('signing_keys').where('kid', '=', kid).where('retired_at', 'is', null);
  if (mode === 'due') q = q.where('retires_at', '<=', at);
  const row = await q
    .set(mode === 'now' ? { retired_at: at, private_jwk: null, retires_at: at } : { retired_at: at, private_jwk: null })
    .returning('retires_at')
    .executeTakeFirst();
  return row ? (row.retires_at ?? at) : undefined;
}
