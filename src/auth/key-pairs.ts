import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';

/**
 * A freshly generated key pair made safe to export as a JWK: both keys parsed again from their DER.
 *
 * On Node 20, a key that comes from a key-generation job (`generateKeyPairSync` included) shares its
 * lock with that job, and exporting the key as a JWK holds the lock while it allocates the JWK's
 * strings. When that allocation starts a garbage collection that frees the job, the job's destructor
 * takes the same lock, and the thread waits for itself for ever. Seen here: a bench load generator
 * stopped with `KeyObjectHandle::ExportJWK` above `~KeyGenJob` in its stack, and a loop that generates
 * P-256 keys and exports each as a JWK, under a small young generation, stopped within its first 5,000
 * keys in nine runs of ten, while the same loop with the keys parsed again first ran 30,000 without a
 * stop (test/key-pairs.test.ts). A key parsed from DER has a lock of its own, and exporting DER does
 * not hold the job's lock.
 */
export function detachedKeyPair(pair: { privateKey: KeyObject; publicKey: KeyObject }): { privateKey: KeyObject; publicKey: KeyObject } {
  return { privateKey: detachedKey(pair.privateKey), publicKey: detachedKey(pair.publicKey) };
}

/** One key (public or private) parsed again from its DER, for the same reason as {@link detachedKeyPair}. */
export function detachedKey(key: KeyObject): KeyObject {
  return key.type === 'private'
    ? createPrivateKey({ key: key.export({ type: 'pkcs8', format: 'der' }), format: 'der', type: 'pkcs8' })
    : createPublicKey({ key: key.export({ type: 'spki', format: 'der' }), format: 'der', type: 'spki' });
}
