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

/** Every stored key, newest first. */
export async function listSigningKeys(db: Kysely<Database>): Promise<SigningKeyRow[]> {
  return db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').orderBy('kid').execute();
}

/** True when at least one signing key exists. */
export async function hasSigningKey(db: Kysely<Database> | Transaction<Database>): Promise<boolean> {
  const row = await db.selectFrom('signing_keys').select('kid').limit(1).executeTakeFirst();
  return row !== undefined;
}
