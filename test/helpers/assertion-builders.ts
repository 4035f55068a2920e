/**
 * Builders for the assertion verifier tests: constants, a minimal CBOR encoder, credentials of every
 * key type, assertion JSON, re-signing, and the oracle comparison (settle).
 */
import { constants, createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { verifyRegistrationResponse, type AuthenticationResponseJSON } from '@simplewebauthn/server';
import { isoBase64URL } from '@simplewebauthn/server/helpers';
import { detachedKey } from '../../src/auth/key-pairs.js';
import { expect } from 'vitest';
import { PasskeydError } from '../../src/errors.js';
import { verifyAssertionFast, verifyAssertionWith } from '../../src/webauthn/assertion-verifier.js';
import { fastPathSupports } from '../../src/webauthn/credential-keys.js';
import { parseAssertion, verifyAssertion, type AssertionExpectation, type ParsedAssertion, type VerifiedAssertion } from '../../src/webauthn/authentication-response.js';
import { createSoftAuthenticator, type SoftAlg } from './authenticator.js';

export const RP_ID = 'login.example.com';
export const ORIGIN = 'https://login.example.com';
export const ORIGINS = [ORIGIN, 'https://app.example.com'];

export const UP = 0x01;
export const UV = 0x04;
export const BE = 0x08;
export const BS = 0x10;
export const AT = 0x40;
export const ED = 0x80;

// ---------------------------------------------------------------------------------------------
// Small helpers

export const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
export const sha256 = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest();

export type Rnd = () => number;
export const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);
export const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;

/** Minimal CBOR encoder for COSE keys and extension maps; `Raw` is copied as is. */
class Raw {
  constructor(readonly bytes: Buffer) {}
}
export type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor> | Raw;
function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}
export function cbor(v: Cbor): Buffer {
  if (v instanceof Raw) return v.bytes;
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, s.length), s]);
  }
  if (v instanceof Uint8Array) return Buffer.concat([head(2, v.length), v]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  const parts = [head(5, v.size)];
  for (const [k, x] of v) parts.push(cbor(k), cbor(x));
  return Buffer.concat(parts);
}
export const cose = (entries: [number, Cbor][]): Buffer => cbor(new Map(entries));

/** The key's public JWK members, exported from a detached copy (keys here come straight from generateKeyPairSync: see detachedKeyPair). */
export function jwkOf(key: KeyObject): { x?: Buffer; y?: Buffer; n?: Buffer; e?: Buffer } {
  const j = detachedKey(key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' });
  const f = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, 'base64url'));
  return { x: f(j.x), y: f(j.y), n: f(j.n), e: f(j.e) };
}

// ---------------------------------------------------------------------------------------------
// Credentials: a COSE public key, an id, and a way to sign authenticatorData || sha256(clientDataJSON)

export interface Cred {
  name: string;
  id: string;
  cose: Uint8Array;
  sign: (data: Buffer) => Buffer;
  /** Curve order for ECDSA keys where a high-S twin signature is computed. */
  order?: bigint;
  /** ECDSA r/s size. */
  ecSize?: number;
}

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** A credential from the soft authenticator, its COSE key taken from SimpleWebAuthn's registration result. */
export async function softCredential(alg: SoftAlg): Promise<Cred & { auth: ReturnType<typeof createSoftAuthenticator> }> {
  const auth = createSoftAuthenticator({ alg });
  const challenge = b64(randomBytes(32));
  const response = await auth.register(
    {
      rp: { id: RP_ID, name: 'passkeyd test' },
      user: { id: b64(randomBytes(16)), name: 'alice', displayName: 'Alice' },
      challenge,
      pubKeyCredParams: [-7, -8, -257].map((a) => ({ type: 'public-key' as const, alg: a })),
    },
    { origin: ORIGIN },
  );
  const result = await verifyRegistrationResponse({ response, expectedChallenge: challenge, expectedOrigin: ORIGIN, expectedRPID: RP_ID, requireUserVerification: false });
  if (!result.verified || !result.registrationInfo) throw new Error('registration did not verify');
  const soft = auth.credentials[0]!;
  return {
    name: alg,
    id: soft.id,
    cose: result.registrationInfo.credential.publicKey,
    sign: (data) => sign(alg === 'EdDSA' ? null : 'sha256', data, soft.privateKey),
    ...(alg === 'ES256' ? { order: P256_N, ecSize: 32 } : {}),
    auth,
  };
}

/** A credential for algorithms the soft authenticator does not have, with a hand-built COSE key. */
export function handCredential(name: string, privateKey: KeyObject, coseKey: Buffer, signer: (data: Buffer, key: KeyObject) => Buffer, ecSize?: number): Cred {
  return { name, id: b64(randomBytes(16)), cose: coseKey, sign: (d) => signer(d, privateKey), ...(ecSize ? { ecSize } : {}) };
}

export function ecCredential(name: string, curve: 'P-256' | 'P-384' | 'P-521', crv: number, alg: number, hash: string): Cred {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const j = jwkOf(publicKey);
  const size = curve === 'P-256' ? 32 : curve === 'P-384' ? 48 : 66;
  return handCredential(
    name,
    privateKey,
    cose([
      [1, 2],
      [3, alg],
      [-1, crv],
      [-2, j.x!],
      [-3, j.y!],
    ]),
    (d, k) => sign(hash, d, k),
    size,
  );
}

export function rsaCredential(name: string, alg: number, hash: string, pss?: number, bits = 2048): Cred {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const j = jwkOf(publicKey);
  return handCredential(
    name,
    privateKey,
    cose([
      [1, 3],
      [3, alg],
      [-1, j.n!],
      [-2, j.e!],
    ]),
    (d, k) => (pss === undefined ? sign(hash, d, k) : sign(hash, d, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss })),
  );
}

// ---------------------------------------------------------------------------------------------
// Building assertions

export function clientDataText(challenge: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ type: 'webauthn.get', challenge, origin: ORIGIN, crossOrigin: false, ...extra });
}

export function authDataOf(o: { rpIdHash?: Buffer; flags?: number; counter?: number; tail?: Buffer } = {}): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE((o.counter ?? 1) >>> 0);
  return Buffer.concat([o.rpIdHash ?? sha256(RP_ID), Buffer.from([o.flags ?? UP | UV | BE | BS]), counter, o.tail ?? Buffer.alloc(0)]);
}

export type Json = Record<string, unknown> & { response: Record<string, unknown> };

/** An assertion JSON from raw parts; the signature is made over the parts unless given. */
export function assertionOf(cred: Cred, authData: Buffer, clientData: Buffer, signature?: Buffer): Json {
  const sig = signature ?? cred.sign(Buffer.concat([authData, sha256(clientData)]));
  return {
    id: cred.id,
    rawId: cred.id,
    type: 'public-key',
    response: { clientDataJSON: b64(clientData), authenticatorData: b64(authData), signature: b64(sig), userHandle: b64(Buffer.from('user-1')) },
    clientExtensionResults: {},
  };
}

/** Re-signs an assertion whose base64url members were changed, over the bytes SimpleWebAuthn decodes them to. */
export function resign(cred: Cred, json: Json): Json {
  const r = json.response;
  const ad = Buffer.from(isoBase64URL.toBuffer(String(r.authenticatorData)));
  const cd = Buffer.from(isoBase64URL.toBuffer(String(r.clientDataJSON)));
  return { ...json, response: { ...r, signature: b64(cred.sign(Buffer.concat([ad, sha256(cd)]))) } };
}

export function clone(json: Json): Json {
  return { ...json, response: { ...json.response } };
}

// ---------------------------------------------------------------------------------------------
// The differential check

export type Outcome = 'refused' | { signCount: number; userVerified: boolean; backedUp: boolean };

export async function settle(run: () => VerifiedAssertion | Promise<VerifiedAssertion>): Promise<Outcome> {
  try {
    const v = await run();
    return { signCount: v.signCount, userVerified: v.userVerified, backedUp: v.backedUp };
  } catch (err) {
    if (err instanceof PasskeydError && err.kind === 'unauthenticated' && err.message.startsWith('assertion refused: ')) return 'refused';
    throw err;
  }
}

export class Differential {
  accepted = 0;
  refused = 0;
  /** Cases parseAssertion already rejects (compared anyway, on the JSON as is). */
  unparsed = 0;
  mismatches: string[] = [];

  async check(label: string, json: unknown, expected: AssertionExpectation): Promise<Outcome> {
    let parsed: ParsedAssertion;
    try {
      parsed = parseAssertion(json);
    } catch (err) {
      if (!(err instanceof PasskeydError && err.kind === 'invalid_argument')) throw err;
      this.unparsed++;
      parsed = { json: json as AuthenticationResponseJSON, credentialId: Buffer.alloc(0), userHandle: undefined, challenge: '' };
    }
    const oracle = await settle(() => verifyAssertion(parsed, expected));
    const withOutcome = await settle(() => verifyAssertionWith(parsed, expected));
    const fast = fastPathSupports(expected.publicKey) ? await settle(() => verifyAssertionFast(parsed, expected)) : undefined;
    if (oracle === 'refused') this.refused++;
    else this.accepted++;
    const same = (o: Outcome) => JSON.stringify(o) === JSON.stringify(oracle);
    if (!same(withOutcome) || (fast !== undefined && !same(fast))) {
      this.mismatches.push(
        `${label}: simplewebauthn=${JSON.stringify(oracle)} with=${JSON.stringify(withOutcome)} fast=${JSON.stringify(fast)} json=${JSON.stringify(json).slice(0, 600)}`,
      );
    }
    return oracle;
  }

  expectClean(): void {
    expect(this.mismatches).toEqual([]);
  }
}

export function expectation(cred: Cred, challenge: string, o: Partial<AssertionExpectation> = {}): AssertionExpectation {
  return { challenge, origins: ORIGINS, rpId: RP_ID, requireUserVerification: true, publicKey: cred.cose, ...o };
}

/** IEEE P1363 r || s from a DER ECDSA signature made by node:crypto (plain DER, short or 0x81 length). */
export function derToRaw(der: Buffer, size: number): Buffer {
  const at = der[1] === 0x81 ? 3 : 2;
  const rLength = der[at + 1]!;
  const r = der.subarray(at + 2, at + 2 + rLength);
  const s = der.subarray(at + 2 + rLength + 2);
  const out = Buffer.alloc(2 * size);
  const place = (v: Buffer, offset: number) => {
    const m = v[0] === 0 ? v.subarray(1) : v;
    m.copy(out, offset + size - m.length);
  };
  place(r, 0);
  place(s, size);
  return out;
}
