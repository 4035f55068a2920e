/**
 * Credential public keys for the assertion verifier: each COSE key is decoded once into a node:crypto
 * KeyObject with the hash, padding and signature encoding SimpleWebAuthn would use, and cached. Keys
 * that cannot be mapped with certainty are marked for SimpleWebAuthn (see assertion-verifier.ts).
 */
import { constants, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { cose, decodeCredentialPublicKey } from '@simplewebauthn/server/helpers';
import { LRUCache } from 'lru-cache';
import { base64url } from './base64url.js';
// ---------------------------------------------------------------------------------------------
// Public key cache

type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

/** A credential public key the fast path verifies with. */
export type FastKey =
  | { kind: 'ecdsa'; hash: HashName; componentLength: number; options: { key: KeyObject; dsaEncoding: 'ieee-p1363' } }
  | { kind: 'ed25519'; key: KeyObject }
  | { kind: 'rsa'; hash: HashName; options: { key: KeyObject; padding: number; saltLength?: number } };

export type KeyEntry = FastKey | { kind: 'fallback'; reason: string };

/** Thrown by verifyAssertionFast for a key it does not handle; use verifyAssertionWith for those. */
export class UnsupportedKeyError extends Error {
  constructor(reason: string) {
    super(`credential public key not supported by the fast verifier: ${reason}`);
    this.name = 'UnsupportedKeyError';
  }
}

const KEY_CACHE_SIZE = 4096;
const keyCache = new LRUCache<string, KeyEntry>({ max: KEY_CACHE_SIZE });
let keyParses = 0;
let keyHits = 0;

/** Empties the key cache and zeroes the statistics (tests; assertion-verifier's clearKeyCache calls it). */
export function clearParsedKeys(): void {
  keyCache.clear();
  keyParses = 0;
  keyHits = 0;
}

/** How often a public key was parsed (cache miss) or found already parsed (hit). */
export function keyCacheStats(): { parses: number; hits: number; size: number } {
  return { parses: keyParses, hits: keyHits, size: keyCache.size };
}

/** The cached KeyObject for a COSE public key, if it was parsed for the fast path (tests). */
export function cachedKeyObject(publicKey: Uint8Array): KeyObject | undefined {
  const entry = keyCache.peek(cacheKey(publicKey));
  if (!entry) return undefined;
  if (entry.kind === 'ed25519') return entry.key;
  if (entry.kind === 'fallback') return undefined;
  return entry.options.key;
}

/** Whether verifyAssertionFast can verify assertions for this COSE public key. */
export function fastPathSupports(publicKey: Uint8Array): boolean {
  return keyEntry(publicKey).kind !== 'fallback';
}

function cacheKey(publicKey: Uint8Array): string {
  return Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64');
}

export function keyEntry(publicKey: Uint8Array): KeyEntry {
  const k = cacheKey(publicKey);
  const hit = keyCache.get(k);
  if (hit) {
    keyHits++;
    return hit;
  }
  keyParses++;
  const entry = parseKey(publicKey);
  keyCache.set(k, entry);
  return entry;
}

/** SimpleWebAuthn's mapCoseAlgToWebCryptoHashAlgName, in node:crypto digest names. */
const HASH_OF_ALG = new Map<number, HashName>([
  [-65535, 'sha1'], // RS1
  [-7, 'sha256'], // ES256
  [-37, 'sha256'], // PS256
  [-257, 'sha256'], // RS256
  [-35, 'sha384'], // ES384
  [-38, 'sha384'], // PS384
  [-258, 'sha384'], // RS384
  [-36, 'sha512'], // ES512
  [-39, 'sha512'], // PS512
  [-259, 'sha512'], // RS512
  [-8, 'sha512'], // EdDSA
]);
/** RSASSA-PKCS1-v1_5 algorithms (RS*) and RSA-PSS algorithms (PS*) with the salt length SimpleWebAuthn sets. */
const RSA_PKCS1_ALGS = new Set([-257, -258, -259, -65535]);
const RSA_PSS_SALT = new Map<number, number>([
  [-37, 32],
  [-38, 48],
  [-39, 64],
]);
/** EC2 curves: COSE crv -> JWK crv and ECDSA r/s component length (SimpleWebAuthn's getSignatureComponentLength). */
const EC_CURVES = new Map<number, { crv: string; size: number }>([
  [1, { crv: 'P-256', size: 32 }],
  [2, { crv: 'P-384', size: 48 }],
  [3, { crv: 'P-521', size: 66 }],
]);

/**
 * COSE key -> KeyObject, for exactly the shapes where SimpleWebAuthn's verify() builds the same key
 * and verification parameters (same JWK through the same Node key import); anything else falls back.
 */
function parseKey(publicKey: Uint8Array): KeyEntry {
  let coseKey: unknown;
  try {
    coseKey = decodeCredentialPublicKey(new Uint8Array(publicKey));
  } catch (err) {
    return { kind: 'fallback', reason: `COSE key does not decode (${errorMessage(err)})` };
  }
  if (!(coseKey instanceof Map)) return { kind: 'fallback', reason: 'COSE key is not a map' };
  const alg: unknown = coseKey.get(cose.COSEKEYS.alg);
  if (typeof alg !== 'number') return { kind: 'fallback', reason: 'COSE key has no numeric alg' };
  const kty: unknown = coseKey.get(cose.COSEKEYS.kty);

  let jwk: JsonWebKey;
  let make: (key: KeyObject) => FastKey;
  if (kty === cose.COSEKTY.EC2) {
    const crv: unknown = coseKey.get(cose.COSEKEYS.crv);
    const curve = typeof crv === 'number' ? EC_CURVES.get(crv) : undefined;
    const hash = HASH_OF_ALG.get(alg);
    const x: unknown = coseKey.get(cose.COSEKEYS.x);
    const y: unknown = coseKey.get(cose.COSEKEYS.y);
    if (!curve || !hash) return { kind: 'fallback', reason: `EC2 key with crv ${String(crv)} and alg ${alg}` };
    if (!(x instanceof Uint8Array) || !(y instanceof Uint8Array) || x.length !== curve.size || y.length !== curve.size) {
      return { kind: 'fallback', reason: 'EC2 key coordinates are not byte strings of the curve size' };
    }
    jwk = { kty: 'EC', crv: curve.crv, x: base64url(x), y: base64url(y) };
    // The hash comes from alg, the r/s size from the curve, as in SimpleWebAuthn (verifyEC2, unwrapEC2Signature).
    make = (key) => ({ kind: 'ecdsa', hash, componentLength: curve.size, options: { key, dsaEncoding: 'ieee-p1363' } });
  } else if (kty === cose.COSEKTY.OKP) {
    const x: unknown = coseKey.get(cose.COSEKEYS.x);
    if (coseKey.get(cose.COSEKEYS.crv) !== cose.COSECRV.ED25519 || alg !== cose.COSEALG.EdDSA || !(x instanceof Uint8Array) || x.length !== 32) {
      return { kind: 'fallback', reason: 'OKP key that is not a plain Ed25519 EdDSA key' };
    }
    jwk = { kty: 'OKP', crv: 'Ed25519', x: base64url(x) };
    make = (key) => ({ kind: 'ed25519', key });
  } else if (kty === cose.COSEKTY.RSA) {
    const n: unknown = coseKey.get(cose.COSEKEYS.n);
    const e: unknown = coseKey.get(cose.COSEKEYS.e);
    const hash = HASH_OF_ALG.get(alg);
    const salt = RSA_PSS_SALT.get(alg);
    if (!hash || (!RSA_PKCS1_ALGS.has(alg) && salt === undefined)) return { kind: 'fallback', reason: `RSA key with alg ${alg}` };
    if (!(n instanceof Uint8Array) || !(e instanceof Uint8Array) || n.length === 0 || e.length === 0) {
      return { kind: 'fallback', reason: 'RSA key n/e are not byte strings' };
    }
    jwk = { kty: 'RSA', n: base64url(n), e: base64url(e) };
    make = (key) =>
      salt === undefined
        ? { kind: 'rsa', hash, options: { key, padding: constants.RSA_PKCS1_PADDING } }
        : { kind: 'rsa', hash, options: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: salt } };
  } else {
    return { kind: 'fallback', reason: `kty ${String(kty)}` };
  }

  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    return { kind: 'fallback', reason: `key import failed (${errorMessage(err)})` };
  }
  // Only keys whose parameters come back unchanged: no reduced coordinates, no stripped leading zeros.
  const back = key.export({ format: 'jwk' });
  for (const member of ['x', 'y', 'n', 'e'] as const) {
    if (jwk[member] !== undefined && back[member] !== jwk[member]) return { kind: 'fallback', reason: `key parameter ${member} is not canonical` };
  }
  return make(key);
}

// ---------------------------------------------------------------------------------------------
// Verification

/** The message of an error, whatever was thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
