import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/schema.js';
import { insertSigningKey, listSigningKeys } from '../store/signing-keys.js';
import { detachedKeyPair } from './key-pairs.js';

/** A signing key, parsed once into KeyObjects. */
export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: Record<string, unknown>;
  createdAt: Date;
  /** When it stops verifying (a rotation superseded it, or it was retired); null while it signs. */
  retiresAt: Date | null;
}

/** Creates a new ES256 key and stores it; it becomes the key new tokens are signed with. */
export async function addSigningKey(db: Kysely<Database> | Transaction<Database>): Promise<string> {
  // Exported as JWKs below: see detachedKeyPair.
  const { privateKey, publicKey } = detachedKeyPair(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const kid = randomBytes(12).toString('base64url');
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  await insertSigningKey(db, { kid, privateJwk: privateKey.export({ format: 'jwk' }), publicJwk });
  return kid;
}

/**
 * Every stored key not yet retired, newest first. A key already parsed (in `known`) is reused with its
 * deadline updated, so polling costs no key import.
 */
export async function loadSigningKeys(db: Kysely<Database>, known: ReadonlyMap<string, SigningKey> = new Map()): Promise<SigningKey[]> {
  const rows = await listSigningKeys(db);
  return rows.flatMap((r) => {
    const had = known.get(r.kid);
    if (had) return [{ ...had, retiresAt: r.retires_at }];
    if (!r.private_jwk) return [];
    return [
      {
        kid: r.kid,
        privateKey: createPrivateKey({ key: r.private_jwk as JsonWebKey, format: 'jwk' }),
        publicKey: createPublicKey({ key: r.public_jwk as JsonWebKey, format: 'jwk' }),
        publicJwk: r.public_jwk,
        createdAt: r.created_at,
        retiresAt: r.retires_at,
      },
    ];
  });
}
