/**
 * Software WebAuthn authenticator for tests.
 *
 * Produces real, verifiable registration and authentication responses (the JSON shapes that
 * `@simplewebauthn/browser` sends to a server) using only `node:crypto` and a tiny CBOR encoder.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { detachedKeyPair } from '../../src/auth/key-pairs.js';

/** Credential key algorithm supported by the soft authenticator. */
export type SoftAlg = 'ES256' | 'EdDSA' | 'RS256';

/** Construction options for {@link createSoftAuthenticator}. */
export interface SoftAuthenticatorOptions {
  /** Credential key algorithm. Default `'ES256'`. */
  alg?: SoftAlg;
  /** `'packed'` = self attestation (no x5c, signed with the credential key). Default `'none'`. */
  attestation?: 'none' | 'packed';
  /** AAGUID as a UUID string. Default all zeros. */
  aaguid?: string;
  /** `'increment'`: 0 at registration, +1 per assertion. `'zero'`: always 0 (synced passkeys). Default `'increment'`. */
  counter?: 'increment' | 'zero';
  /** BE flag. Default `true`. */
  backupEligible?: boolean;
  /** BS flag. Default `true`. */
  backedUp?: boolean;
  /** Transports reported at registration. Default `['internal', 'hybrid']`. */
  transports?: string[];
  /**
   * With `attestation: 'packed'`: full attestation, signed (ES256) by this key with this certificate
   * chain (x5c, DER, attestation certificate first) instead of self attestation.
   */
  attestationCertificate?: { privateKey: KeyObject; chain: Uint8Array[] };
}

/** A credential held by the soft authenticator. */
interface SoftCredential {
  /** Credential ID, base64url. */
  id: string;
  rpId: string;
  /** User handle (base64url), taken from `options.user.id` at registration. */
  userHandle: string;
  privateKey: KeyObject;
  alg: SoftAlg;
  /** Last sign counter value emitted. */
  counter: number;
}

/** Per-ceremony knobs, mostly used to simulate clients/authenticators misbehaving. */
export interface CeremonyOverrides {
  /** Origin written into clientDataJSON. */
  origin: string;
  /** RP ID hashed into authenticatorData. Default: `rp.id` (registration) / `rpId` (authentication). */
  rpId?: string;
  /** UV flag. Default `true`. */
  userVerified?: boolean;
  /** UP flag. Default `true`. */
  userPresent?: boolean;
  /** clientData type. Default `webauthn.create` / `webauthn.get`. */
  type?: string;
  /** Challenge (base64url) written into clientDataJSON instead of the options' challenge. */
  challenge?: string;
  /** Force the sign counter value in this assertion. */
  counter?: number;
  /** Authentication: use this credential (must exist in this authenticator). */
  credentialId?: string;
  /** clientData crossOrigin. Default `false`. */
  crossOrigin?: boolean;
}

/** A software authenticator answering `navigator.credentials.create()` / `.get()` option JSON. */
export interface SoftAuthenticator {
  readonly credentials: SoftCredential[];
  /**
   * Answers navigator.credentials.create(): returns a RegistrationResponseJSON and stores the new
   * credential. Throws if one of our credentials is in `excludeCredentials` or if our algorithm
   * is not offered in `pubKeyCredParams`.
   */
  register(options: PublicKeyCredentialCreationOptionsJSON, o: CeremonyOverrides): Promise<RegistrationResponseJSON>;
  /**
   * Answers navigator.credentials.get(). Uses `o.credentialId`, else the first stored credential
   * listed in `allowCredentials`, else (empty list = discoverable) the first credential for the
   * RP ID. `response.userHandle` is always set.
   */
  authenticate(options: PublicKeyCredentialRequestOptionsJSON, o: CeremonyOverrides): Promise<AuthenticationResponseJSON>;
}

/** Base64url-encode (no padding). */
export function b64url(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('base64url');
}

/** Decode base64url (padding tolerated). */
export function fromB64url(s: string): Buffer {
  return Buffer.from(s, 'base64url');
}

// ---------------------------------------------------------------------------------------------
// Minimal CBOR encoder: unsigned/negative ints, byte strings, text strings, arrays, maps.

type CborValue = number | string | Uint8Array | CborValue[] | Map<number | string, CborValue>;

function cborHead(major: number, n: number): Buffer {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = m | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  if (n < 0x100000000) {
    const b = Buffer.alloc(5);
    b[0] = m | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = m | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

/** Encode a value as CBOR (definite lengths, map keys in insertion order). */
function cbor(v: CborValue): Buffer {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new Error(`CBOR: unsupported number ${v}`);
    return v >= 0 ? cborHead(0, v) : cborHead(1, -1 - v);
  }
  if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    return Buffer.concat([cborHead(3, s.length), s]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([cborHead(2, v.length), v]);
  if (Array.isArray(v)) return Buffer.concat([cborHead(4, v.length), ...v.map(cbor)]);
  const parts = [cborHead(5, v.size)];
  for (const [k, val] of v) parts.push(cbor(k), cbor(val));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------

const COSE_ALG: Record<SoftAlg, number> = { ES256: -7, EdDSA: -8, RS256: -257 };

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;

function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}

/** A new key pair, parsed again from DER before its public key is exported as a JWK (see detachedKeyPair). */
function generateKey(alg: SoftAlg): { privateKey: KeyObject; publicKey: KeyObject } {
  if (alg === 'ES256') return detachedKeyPair(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  if (alg === 'EdDSA') return detachedKeyPair(generateKeyPairSync('ed25519'));
  return detachedKeyPair(generateKeyPairSync('rsa', { modulusLength: 2048 }));
}

function coseKey(alg: SoftAlg, publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  const f = (s: string | undefined): Buffer => fromB64url(s ?? '');
  const entries: [number, CborValue][] =
    alg === 'ES256'
      ? [
          [1, 2],
          [3, -7],
          [-1, 1],
          [-2, f(jwk.x)],
          [-3, f(jwk.y)],
        ]
      : alg === 'EdDSA'
        ? [
            [1, 1],
            [3, -8],
            [-1, 6],
            [-2, f(jwk.x)],
          ]
        : [
            [1, 3],
            [3, -257],
            [-1, f(jwk.n)],
            [-2, f(jwk.e)],
          ];
  return cbor(new Map(entries));
}

/** ES256 yields DER ECDSA, RS256 PKCS#1 v1.5, EdDSA pure Ed25519. */
function signWith(alg: SoftAlg, key: KeyObject, data: Uint8Array): Buffer {
  return sign(alg === 'EdDSA' ? null : 'sha256', data, key);
}

function clientData(type: string, challenge: string, o: CeremonyOverrides): Buffer {
  return Buffer.from(JSON.stringify({ type, challenge, origin: o.origin, crossOrigin: o.crossOrigin ?? false }), 'utf8');
}

/** Create a software authenticator. Each call has its own, initially empty, credential store. */
export function createSoftAuthenticator(opts: SoftAuthenticatorOptions = {}): SoftAuthenticator {
  const alg = opts.alg ?? 'ES256';
  const attestation = opts.attestation ?? 'none';
  const counterMode = opts.counter ?? 'increment';
  const aaguid = Buffer.from((opts.aaguid ?? '00000000-0000-0000-0000-000000000000').replace(/-/g, ''), 'hex');
  if (aaguid.length !== 16) throw new Error('aaguid must be a UUID');
  const transports = opts.transports ?? ['internal', 'hybrid'];
  const credentials: SoftCredential[] = [];

  function authData(rpId: string, o: CeremonyOverrides, signCount: number, attested?: Buffer): Buffer {
    let flags = 0;
    if (o.userPresent ?? true) flags |= FLAG_UP;
    if (o.userVerified ?? true) flags |= FLAG_UV;
    if (opts.backupEligible ?? true) flags |= FLAG_BE;
    if (opts.backedUp ?? true) flags |= FLAG_BS;
    if (attested) flags |= FLAG_AT;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(signCount >>> 0);
    return Buffer.concat([sha256(rpId), Buffer.from([flags]), counter, ...(attested ? [attested] : [])]);
  }

  return {
    credentials,

    async register(options, o) {
      if (!options.pubKeyCredParams.some((p) => p.alg === COSE_ALG[alg])) {
        throw new Error(`soft authenticator: ${alg} not offered in pubKeyCredParams`);
      }
      const rpId = options.rp.id;
      if (!rpId) throw new Error('soft authenticator: options.rp.id is required');
      const excluded = new Set((options.excludeCredentials ?? []).map((c) => c.id));
      if (credentials.some((c) => c.rpId === rpId && excluded.has(c.id))) {
        throw new Error('soft authenticator: InvalidStateError (credential excluded)');
      }

      const { privateKey, publicKey } = generateKey(alg);
      const credId = randomBytes(32);
      const idLen = Buffer.alloc(2);
      idLen.writeUInt16BE(credId.length);
      const attested = Buffer.concat([aaguid, idLen, credId, coseKey(alg, publicKey)]);
      const ad = authData(o.rpId ?? rpId, o, 0, attested);
      const cdj = clientData(o.type ?? 'webauthn.create', o.challenge ?? options.challenge, o);

      const attStmt = new Map<string, CborValue>();
      const full = opts.attestationCertificate;
      if (attestation === 'packed' && full) {
        attStmt.set('alg', COSE_ALG.ES256);
        attStmt.set('sig', signWith('ES256', full.privateKey, Buffer.concat([ad, sha256(cdj)])));
        attStmt.set(
          'x5c',
          full.chain.map((c) => Buffer.from(c)),
        );
      } else if (attestation === 'packed') {
        attStmt.set('alg', COSE_ALG[alg]);
        attStmt.set('sig', signWith(alg, privateKey, Buffer.concat([ad, sha256(cdj)])));
      }
      const attObj = cbor(
        new Map<string, CborValue>([
          ['fmt', attestation],
          ['attStmt', attStmt],
          ['authData', ad],
        ]),
      );

      const id = b64url(credId);
      credentials.push({ id, rpId, userHandle: options.user.id, privateKey, alg, counter: 0 });
      return {
        id,
        rawId: id,
        type: 'public-key',
        response: {
          clientDataJSON: b64url(cdj),
          attestationObject: b64url(attObj),
          authenticatorData: b64url(ad),
          transports: [...transports],
          publicKeyAlgorithm: COSE_ALG[alg],
          publicKey: b64url(publicKey.export({ type: 'spki', format: 'der' })),
        },
        clientExtensionResults: {},
        authenticatorAttachment: 'platform',
      };
    },

    async authenticate(options, o) {
      const lookupRpId = options.rpId ?? o.rpId;
      let cred: SoftCredential | undefined;
      if (o.credentialId !== undefined) {
        cred = credentials.find((c) => c.id === o.credentialId);
        if (!cred) throw new Error(`soft authenticator: unknown credential ${o.credentialId}`);
      } else if (options.allowCredentials?.length) {
        const allowed = new Set(options.allowCredentials.map((c) => c.id));
        cred = credentials.find((c) => allowed.has(c.id));
      } else {
        cred = credentials.find((c) => lookupRpId === undefined || c.rpId === lookupRpId);
      }
      if (!cred) throw new Error('soft authenticator: NotAllowedError (no matching credential)');

      let signCount: number;
      if (o.counter !== undefined) signCount = o.counter;
      else signCount = counterMode === 'increment' ? cred.counter + 1 : 0;
      cred.counter = signCount;

      const ad = authData(o.rpId ?? options.rpId ?? cred.rpId, o, signCount);
      const cdj = clientData(o.type ?? 'webauthn.get', o.challenge ?? options.challenge, o);
      const signature = signWith(cred.alg, cred.privateKey, Buffer.concat([ad, sha256(cdj)]));
      return {
        id: cred.id,
        rawId: cred.id,
        type: 'public-key',
        response: {
          clientDataJSON: b64url(cdj),
          authenticatorData: b64url(ad),
          signature: b64url(signature),
          userHandle: cred.userHandle,
        },
        clientExtensionResults: {},
        authenticatorAttachment: 'platform',
      };
    },
  };
}
