/**
 * The fast assertion verifier (src/webauthn/assertion-verifier.ts) against SimpleWebAuthn.
 *
 * Every case runs through the SimpleWebAuthn-based `verifyAssertion` (the oracle), `verifyAssertionWith`
 * and, when the key is one it handles, `verifyAssertionFast`; the outcomes (refused, or accepted with
 * signCount / userVerified / backedUp) must be identical. Most cases are re-signed after being changed
 * with the credential's private key, so they reach the checks past the signature instead of all being
 * refused for a bad signature. No database is involved.
 */
import { constants, createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { verifyRegistrationResponse, type AuthenticationResponseJSON } from '@simplewebauthn/server';
import { isoBase64URL } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import { PasskeydError } from '../src/errors.js';
import { clearKeyCache, verifyAssertionFast, verifyAssertionWith } from '../src/webauthn/assertion-verifier.js';
import { UnsupportedKeyError, cachedKeyObject, fastPathSupports, keyCacheStats } from '../src/webauthn/credential-keys.js';
import { parseAssertion, verifyAssertion, type AssertionExpectation, type ParsedAssertion, type VerifiedAssertion } from '../src/webauthn/authentication-response.js';
import { createSoftAuthenticator, type SoftAlg } from './helpers/authenticator.js';
import { prng } from './helpers/prng.js';

const RP_ID = 'login.example.com';
const ORIGIN = 'https://login.example.com';
const ORIGINS = [ORIGIN, 'https://app.example.com'];

const UP = 0x01;
const UV = 0x04;
const BE = 0x08;
const BS = 0x10;
const AT = 0x40;
const ED = 0x80;

// ---------------------------------------------------------------------------------------------
// Small helpers

const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
const sha256 = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest();

type Rnd = () => number;
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;

/** Minimal CBOR encoder for COSE keys and extension maps; `Raw` is copied as is. */
class Raw {
  constructor(readonly bytes: Buffer) {}
}
type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor> | Raw;
function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}
function cbor(v: Cbor): Buffer {
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
const cose = (entries: [number, Cbor][]): Buffer => cbor(new Map(entries));

function jwkOf(key: KeyObject): { x?: Buffer; y?: Buffer; n?: Buffer; e?: Buffer } {
  const j = (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' });
  const f = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, 'base64url'));
  return { x: f(j.x), y: f(j.y), n: f(j.n), e: f(j.e) };
}

// ---------------------------------------------------------------------------------------------
// Credentials: a COSE public key, an id, and a way to sign authenticatorData || sha256(clientDataJSON)

interface Cred {
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
async function softCredential(alg: SoftAlg): Promise<Cred & { auth: ReturnType<typeof createSoftAuthenticator> }> {
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
function handCredential(name: string, privateKey: KeyObject, coseKey: Buffer, signer: (data: Buffer, key: KeyObject) => Buffer, ecSize?: number): Cred {
  return { name, id: b64(randomBytes(16)), cose: coseKey, sign: (d) => signer(d, privateKey), ...(ecSize ? { ecSize } : {}) };
}

function ecCredential(name: string, curve: 'P-256' | 'P-384' | 'P-521', crv: number, alg: number, hash: string): Cred {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const j = jwkOf(publicKey);
  const size = curve === 'P-256' ? 32 : curve === 'P-384' ? 48 : 66;
  return handCredential(name, privateKey, cose([[1, 2], [3, alg], [-1, crv], [-2, j.x!], [-3, j.y!]]), (d, k) => sign(hash, d, k), size);
}

function rsaCredential(name: string, alg: number, hash: string, pss?: number, bits = 2048): Cred {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const j = jwkOf(publicKey);
  return handCredential(name, privateKey, cose([[1, 3], [3, alg], [-1, j.n!], [-2, j.e!]]), (d, k) =>
    pss === undefined ? sign(hash, d, k) : sign(hash, d, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss }),
  );
}

// ---------------------------------------------------------------------------------------------
// Building assertions

function clientDataText(challenge: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ type: 'webauthn.get', challenge, origin: ORIGIN, crossOrigin: false, ...extra });
}

function authDataOf(o: { rpIdHash?: Buffer; flags?: number; counter?: number; tail?: Buffer } = {}): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE((o.counter ?? 1) >>> 0);
  return Buffer.concat([o.rpIdHash ?? sha256(RP_ID), Buffer.from([o.flags ?? UP | UV | BE | BS]), counter, o.tail ?? Buffer.alloc(0)]);
}

type Json = Record<string, unknown> & { response: Record<string, unknown> };

/** An assertion JSON from raw parts; the signature is made over the parts unless given. */
function assertionOf(cred: Cred, authData: Buffer, clientData: Buffer, signature?: Buffer): Json {
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
function resign(cred: Cred, json: Json): Json {
  const r = json.response;
  const ad = Buffer.from(isoBase64URL.toBuffer(String(r.authenticatorData)));
  const cd = Buffer.from(isoBase64URL.toBuffer(String(r.clientDataJSON)));
  return { ...json, response: { ...r, signature: b64(cred.sign(Buffer.concat([ad, sha256(cd)]))) } };
}

function clone(json: Json): Json {
  return { ...json, response: { ...json.response } };
}

// ---------------------------------------------------------------------------------------------
// The differential check

type Outcome = 'refused' | { signCount: number; userVerified: boolean; backedUp: boolean };

async function settle(run: () => VerifiedAssertion | Promise<VerifiedAssertion>): Promise<Outcome> {
  try {
    const v = await run();
    return { signCount: v.signCount, userVerified: v.userVerified, backedUp: v.backedUp };
  } catch (err) {
    if (err instanceof PasskeydError && err.kind === 'unauthenticated' && err.message.startsWith('assertion refused: ')) return 'refused';
    throw err;
  }
}

class Differential {
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
      parsed = { json: json as AuthenticationResponseJSON, credentialId: Buffer.alloc(0), userHandle: undefined };
    }
    const oracle = await settle(() => verifyAssertion(parsed, expected));
    const withOutcome = await settle(() => verifyAssertionWith(parsed, expected));
    const fast = fastPathSupports(expected.publicKey) ? await settle(() => verifyAssertionFast(parsed, expected)) : undefined;
    if (oracle === 'refused') this.refused++;
    else this.accepted++;
    const same = (o: Outcome) => JSON.stringify(o) === JSON.stringify(oracle);
    if (!same(withOutcome) || (fast !== undefined && !same(fast))) {
      this.mismatches.push(`${label}: simplewebauthn=${JSON.stringify(oracle)} with=${JSON.stringify(withOutcome)} fast=${JSON.stringify(fast)} json=${JSON.stringify(json).slice(0, 600)}`);
    }
    return oracle;
  }

  expectClean(): void {
    expect(this.mismatches).toEqual([]);
  }
}

function expectation(cred: Cred, challenge: string, o: Partial<AssertionExpectation> = {}): AssertionExpectation {
  return { challenge, origins: ORIGINS, rpId: RP_ID, requireUserVerification: true, publicKey: cred.cose, ...o };
}

// ---------------------------------------------------------------------------------------------
// Mutations

const B64_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ODD_CHARS = ['=', '==', '+', '/', ' ', '.', '\n', 'é', '\u2603', '%'];

function mutateBytes(rnd: Rnd, b: Buffer): Buffer {
  const out = Buffer.from(b);
  const at = int(rnd, Math.max(out.length, 1));
  switch (int(rnd, 8)) {
    case 0:
      if (out.length) out[at] = out[at]! ^ (1 << int(rnd, 8));
      return out;
    case 1:
      if (out.length) out[at] = int(rnd, 256);
      return out;
    case 2:
      return Buffer.concat([out.subarray(0, at), Buffer.from([int(rnd, 256)]), out.subarray(at)]);
    case 3:
      return Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
    case 4:
      return out.subarray(0, int(rnd, out.length + 1));
    case 5:
      return Buffer.concat([out, randomBytesFrom(rnd, 1 + int(rnd, 8))]);
    case 6: {
      const other = int(rnd, Math.max(out.length, 1));
      if (out.length) [out[at], out[other]] = [out[other]!, out[at]!];
      return out;
    }
    default:
      return Buffer.concat([out, out.subarray(at, at + 1 + int(rnd, 4))]);
  }
}

function randomBytesFrom(rnd: Rnd, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rnd, 256);
  return b;
}

function mutateString(rnd: Rnd, s: string): string {
  const at = int(rnd, s.length + 1);
  switch (int(rnd, 8)) {
    case 0:
      return s.slice(0, at) + pick(rnd, [...B64_CHARS]) + s.slice(at + 1);
    case 1:
      return s.slice(0, at) + '=' + s.slice(at);
    case 2:
      return s + pick(rnd, ['=', '==', '===']);
    case 3:
      return s.slice(0, at) + s.slice(at + 1);
    case 4:
      return s.slice(0, at) + pick(rnd, ODD_CHARS) + s.slice(at);
    case 5:
      return Buffer.from(s, 'base64url').toString('base64'); // standard alphabet, padded
    case 6: {
      const bytes = Buffer.from(s, 'base64url');
      const padded = bytes.toString('base64url');
      return padded + '='.repeat((4 - (padded.length % 4)) % 4); // correctly padded base64url
    }
    default:
      return s.slice(0, int(rnd, s.length + 1));
  }
}

const FIELDS = ['clientDataJSON', 'authenticatorData', 'signature'] as const;

/** One random mutation of a valid assertion; re-signed about half of the time when the signed parts changed. */
function randomMutation(rnd: Rnd, cred: Cred, base: Json): { label: string; json: Json } {
  const json = clone(base);
  const field = pick(rnd, FIELDS);
  const current = String(json.response[field]);
  let label: string;
  if (rnd() < 0.5) {
    json.response[field] = b64(mutateBytes(rnd, Buffer.from(current, 'base64url')));
    label = `bytes(${field})`;
  } else {
    json.response[field] = mutateString(rnd, current);
    label = `string(${field})`;
  }
  if (field !== 'signature' && rnd() < 0.6) return { label: `${label}+resigned`, json: resign(cred, json) };
  return { label, json };
}

// ---------------------------------------------------------------------------------------------
// Structured cases: client data, flags, extensions, attested data, RP IDs

function clientDataCases(challenge: string): [string, Buffer][] {
  const c = challenge;
  const base = `"type":"webauthn.get","challenge":"${c}","origin":"${ORIGIN}"`;
  const texts: [string, string][] = [
    ['minimal', `{${base}}`],
    ['crossOrigin true', `{${base},"crossOrigin":true}`],
    ['other allowed origin', `{"type":"webauthn.get","challenge":"${c}","origin":"${ORIGINS[1]}"}`],
    ['origin with slash', `{"type":"webauthn.get","challenge":"${c}","origin":"${ORIGIN}/"}`],
    ['origin upper case', `{"type":"webauthn.get","challenge":"${c}","origin":"${ORIGIN.toUpperCase()}"}`],
    ['origin as array', `{"type":"webauthn.get","challenge":"${c}","origin":["${ORIGIN}"]}`],
    ['origin missing', `{"type":"webauthn.get","challenge":"${c}"}`],
    ['challenge padded', `{"type":"webauthn.get","challenge":"${c}=","origin":"${ORIGIN}"}`],
    ['challenge as number', `{"type":"webauthn.get","challenge":1,"origin":"${ORIGIN}"}`],
    ['type create', `{"type":"webauthn.create","challenge":"${c}","origin":"${ORIGIN}"}`],
    ['type missing', `{"challenge":"${c}","origin":"${ORIGIN}"}`],
    ['type escaped', `{"type":"webauthn\\u002eget","challenge":"${c}","origin":"${ORIGIN}"}`],
    ['duplicate type, last wins', `{"type":"webauthn.create",${base},"type":"webauthn.get"}`],
    ['duplicate type, last loses', `{${base},"type":"webauthn.create"}`],
    ['__proto__ member', `{"__proto__":{"type":"webauthn.get"},"challenge":"${c}","origin":"${ORIGIN}"}`],
    ['pretty printed', `{\r\n\t"type" : "webauthn.get",\r\n\t"challenge" : "${c}",\r\n\t"origin" : "${ORIGIN}"\r\n}`],
    ['leading whitespace', ` \n{${base}}`],
    ['extra members', `{${base},"other_keys_can_be_added_here":"do not compare clientDataJSON against a template","n":[1,{"a":null}]}`],
    ['not JSON', `{${base}`],
    ['JSON array', `[${JSON.stringify(base)}]`],
    ['JSON null', 'null'],
    ['JSON number', '1'],
    ['JSON string', '"webauthn.get"'],
    ['empty', ''],
  ];
  for (const [name, v] of [
    ['string', '"https://evil.example"'],
    ['empty string', '""'],
    ['zero', '0'],
    ['one', '1'],
    ['false', 'false'],
    ['true', 'true'],
    ['null', 'null'],
    ['object', '{}'],
    ['array', '[]'],
  ] as const) {
    texts.push([`topOrigin ${name}`, `{${base},"topOrigin":${v}}`]);
    texts.push([`topOrigin ${name}, crossOrigin`, `{${base},"crossOrigin":true,"topOrigin":${v}}`]);
  }
  for (const [name, v] of [
    ['present', '{"status":"present","id":"abc"}'],
    ['supported', '{"status":"supported"}'],
    ['notSupported', '{"status":"notSupported"}'],
    ['bogus', '{"status":"bogus"}'],
    ['no status', '{}'],
    ['status array', '{"status":["present"]}'],
    ['string', '"present"'],
    ['array', '[]'],
    ['null', 'null'],
    ['zero', '0'],
    ['one', '1'],
    ['true', 'true'],
    ['empty string', '""'],
  ] as const) {
    texts.push([`tokenBinding ${name}`, `{${base},"tokenBinding":${v}}`]);
  }
  const cases: [string, Buffer][] = texts.map(([n, t]) => [n, Buffer.from(t, 'utf8')]);
  const valid = Buffer.from(`{${base}}`, 'utf8');
  cases.push(['UTF-8 BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), valid])]);
  cases.push(['UTF-16 BOM', Buffer.concat([Buffer.from([0xfe, 0xff]), valid])]);
  cases.push(['invalid UTF-8 in an extra member', Buffer.concat([Buffer.from(`{${base},"x":"`), Buffer.from([0xff, 0xc3]), Buffer.from('"}')])]);
  cases.push(['invalid UTF-8 in the origin', Buffer.from(`{"type":"webauthn.get","challenge":"${c}","origin":"${ORIGIN}\u00ff"}`, 'latin1')]);
  cases.push(['NUL after the JSON', Buffer.concat([valid, Buffer.from([0])])]);
  return cases;
}

const CRED_PROTECT = cbor(new Map([['credProtect', 1]]));
const EXTENSION_TAILS: [string, Buffer][] = [
  ['credProtect map', CRED_PROTECT],
  ['empty map', Buffer.from([0xa0])],
  ['nested map', cbor(new Map<string, Cbor>([['a', new Map<string, Cbor>([['b', 1]])]]))],
  ['map + trailing byte', Buffer.concat([CRED_PROTECT, Buffer.from([0])])],
  ['two maps', Buffer.concat([CRED_PROTECT, CRED_PROTECT])],
  ['nothing', Buffer.alloc(0)],
  ['non-minimal uint value', Buffer.from([0xa1, 0x61, 0x61, 0x19, 0x00, 0x01])],
  ['non-minimal uint16 >= 24', Buffer.from([0xa1, 0x61, 0x61, 0x19, 0x00, 0x64])],
  ['uint8 length below 24', Buffer.from([0xa1, 0x61, 0x61, 0x18, 0x05])],
  ['integer', Buffer.from([0x01])],
  ['text string', cbor('ab')],
  ['truncated text string', Buffer.from([0x65, 0x61, 0x62])],
  ['truncated byte string', Buffer.from([0x45, 0x01, 0x02])],
  ['byte string', cbor(Buffer.from([1, 2]))],
  ['empty array', Buffer.from([0x80])],
  ['array of strings', cbor(['ab', 'cd'])],
  ['array with a number', cbor(['ab', 1])],
  ['array with a map', cbor([new Map([[1, 2]])])],
  ['non-ASCII text key', cbor(new Map([['é', 1]]))],
  ['float16 Infinity', Buffer.from([0xf9, 0x7c, 0x00])],
  ['float32 value', Buffer.from([0xa1, 0x61, 0x61, 0xfa, 0x3f, 0x80, 0x00, 0x00])],
  ['float64 value', Buffer.from([0xa1, 0x61, 0x61, 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])],
  ['true', Buffer.from([0xf5])],
  ['null', Buffer.from([0xf6])],
  ['tag', Buffer.from([0xc1, 0x01])],
  ['indefinite map', Buffer.from([0xbf, 0x61, 0x61, 0x01, 0xff])],
  ['duplicate map key', Buffer.from([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02])],
  ['map with a missing value', Buffer.from([0xa1, 0x61, 0x61])],
  ['map with an array key', Buffer.from([0xa1, 0x80, 0x01])],
  ['break byte', Buffer.from([0xff])],
];

function attestedTails(cred: Cred): [string, Buffer][] {
  const credId = randomBytes(16);
  const idLength = Buffer.from([0, credId.length]);
  const aaguid = Buffer.alloc(16);
  const attested = Buffer.concat([aaguid, idLength, credId, Buffer.from(cred.cose)]);
  return [
    ['attested data', attested],
    ['attested data + extensions', Buffer.concat([attested, CRED_PROTECT])],
    ['attested data + trailing byte', Buffer.concat([attested, Buffer.from([0])])],
    ['attested data, truncated key', attested.subarray(0, attested.length - 3)],
    ['attested data, id length too long', Buffer.concat([aaguid, Buffer.from([0xff, 0xff]), credId])],
    ['attested data only aaguid', aaguid],
    ['Firefox EdDSA CBOR', Buffer.concat([aaguid, idLength, credId, Buffer.from('a301634f4b500327206745643235353139', 'hex'), Buffer.from([0x58, 0x20]), randomBytes(32)])],
  ];
}

/** Cases over authenticator data: every flags byte, extensions, attested data, counters, RP ID hashes. */
function authDataCases(cred: Cred): [string, Buffer][] {
  const cases: [string, Buffer][] = [];
  for (let flags = 0; flags < 256; flags++) {
    let tail = Buffer.alloc(0);
    if (flags & AT) tail = Buffer.concat([tail, attestedTails(cred)[0]![1]]);
    if (flags & ED) tail = Buffer.concat([tail, CRED_PROTECT]);
    cases.push([`flags ${flags.toString(2)}`, authDataOf({ flags, tail })]);
    if (tail.length) cases.push([`flags ${flags.toString(2)} without data`, authDataOf({ flags })]);
  }
  for (const [name, tail] of EXTENSION_TAILS) cases.push([`extensions: ${name}`, authDataOf({ flags: UP | UV | BE | BS | ED, tail })]);
  for (const [name, tail] of EXTENSION_TAILS.slice(0, 6)) cases.push([`no ED flag, tail ${name}`, authDataOf({ tail })]);
  for (const [name, tail] of attestedTails(cred)) cases.push([`AT: ${name}`, authDataOf({ flags: UP | UV | AT, tail })]);
  for (const counter of [0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff]) cases.push([`counter ${counter}`, authDataOf({ counter })]);
  for (const rp of ['login.example.com.', 'LOGIN.example.com', 'example.com', '']) cases.push([`rpIdHash of "${rp}"`, authDataOf({ rpIdHash: sha256(rp) })]);
  cases.push(['rpIdHash all zero', authDataOf({ rpIdHash: Buffer.alloc(32) })]);
  cases.push(['36 bytes', authDataOf().subarray(0, 36)]);
  cases.push(['empty', Buffer.alloc(0)]);
  return cases;
}

// ---------------------------------------------------------------------------------------------
// ECDSA signature encodings

function derInt(v: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x02, v.length]), v]);
}
function minimal(v: Buffer): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const m = v.subarray(i);
  return m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m;
}
function seq(body: Buffer, tag = 0x30): Buffer {
  return body.length < 0x80 ? Buffer.concat([Buffer.from([tag, body.length]), body]) : Buffer.concat([Buffer.from([tag, 0x81, body.length]), body]);
}

/** Encodings of (r, s) SimpleWebAuthn may or may not accept; raw is the IEEE P1363 r || s. */
function derVariants(raw: Buffer, size: number, order?: bigint): [string, Buffer][] {
  const r = raw.subarray(0, size);
  const s = raw.subarray(size);
  const rm = minimal(r);
  const sm = minimal(s);
  const body = Buffer.concat([derInt(rm), derInt(sm)]);
  const out: [string, Buffer][] = [
    ['canonical', seq(body)],
    ['long form length 0x81', Buffer.concat([Buffer.from([0x30, 0x81, body.length]), body])],
    ['long form length 0x82', Buffer.concat([Buffer.from([0x30, 0x82, body.length >> 8, body.length & 0xff]), body])],
    ['indefinite length', Buffer.concat([Buffer.from([0x30, 0x80]), body, Buffer.from([0, 0])])],
    ['indefinite length without end', Buffer.concat([Buffer.from([0x30, 0x80]), body])],
    ['trailing garbage', Buffer.concat([seq(body), Buffer.from([1, 2, 3])])],
    ['trailing zeros', Buffer.concat([seq(body), Buffer.from([0, 0])])],
    ['context tag [0]', seq(body, 0xa0)],
    ['context tag [1]', seq(body, 0xa1)],
    ['application tag', seq(body, 0x60)],
    ['SET tag', seq(body, 0x31)],
    ['extra NULL', seq(Buffer.concat([body, Buffer.from([0x05, 0x00])]))],
    ['extra INTEGER', seq(Buffer.concat([body, derInt(Buffer.from([1]))]))],
    ['extra malformed BOOLEAN', seq(Buffer.concat([body, Buffer.from([0x01, 0x02, 0, 0])]))],
    ['r with an extra zero byte', seq(Buffer.concat([derInt(Buffer.concat([Buffer.from([0]), rm])), derInt(sm)]))],
    ['r with two extra zero bytes', seq(Buffer.concat([derInt(Buffer.concat([Buffer.from([0, 0]), rm])), derInt(sm)]))],
    ['r fixed width', seq(Buffer.concat([derInt(Buffer.from(r)), derInt(sm)]))],
    ['r without sign byte', seq(Buffer.concat([derInt(rm[0] === 0 ? rm.subarray(1) : rm), derInt(sm)]))],
    ['s without sign byte', seq(Buffer.concat([derInt(rm), derInt(sm[0] === 0 ? sm.subarray(1) : sm)]))],
    ['r and s swapped', seq(Buffer.concat([derInt(sm), derInt(rm)]))],
    ['r zero', seq(Buffer.concat([derInt(Buffer.from([0])), derInt(sm)]))],
    ['r empty', seq(Buffer.concat([Buffer.from([0x02, 0x00]), derInt(sm)]))],
    ['long form INTEGER length', seq(Buffer.concat([Buffer.from([0x02, 0x81, rm.length]), rm, derInt(sm)]))],
    ['multi-byte INTEGER tag', seq(Buffer.concat([Buffer.from([0x1f, 0x02, rm.length]), rm, derInt(sm)]))],
    ['constructed INTEGER', seq(Buffer.concat([Buffer.from([0x22, rm.length]), rm, derInt(sm)]))],
    ['only r', seq(derInt(rm))],
    ['child overruns the sequence', Buffer.concat([Buffer.from([0x30, 4]), body])],
    ['sequence shorter than content', Buffer.concat([Buffer.from([0x30, body.length - 1]), body])],
    ['sequence longer than content', Buffer.concat([Buffer.from([0x30, body.length + 1]), body, Buffer.from([0])])],
    ['nested sequence', seq(seq(body))],
    ['empty sequence', Buffer.from([0x30, 0x00])],
    ['raw r || s', Buffer.from(raw)],
    ['empty', Buffer.alloc(0)],
    ['truncated', seq(body).subarray(0, 10)],
  ];
  if (order !== undefined) {
    const sHigh = order - BigInt(`0x${s.toString('hex')}`);
    const sh = Buffer.from(sHigh.toString(16).padStart(size * 2, '0'), 'hex');
    out.push(['high S (n - s)', seq(Buffer.concat([derInt(rm), derInt(minimal(sh))]))]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tests

describe.each(['ES256', 'EdDSA', 'RS256'] as const)('%s: fast verifier == SimpleWebAuthn', (alg) => {
  it('valid assertions and the ceremony overrides', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const authenticate = async (o: Parameters<typeof cred.auth.authenticate>[1], challenge = b64(randomBytes(32))) => ({
      json: await cred.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: cred.id, type: 'public-key' }] }, o),
      challenge,
    });
    for (let i = 0; i < 20; i++) {
      const { json, challenge } = await authenticate({ origin: ORIGIN });
      const out = await diff.check(`valid #${i}`, json, expectation(cred, challenge, { requireUserVerification: i % 2 === 0 }));
      expect(out).toEqual({ signCount: i + 1, userVerified: true, backedUp: true });
    }
    const cases: [string, Parameters<typeof cred.auth.authenticate>[1], Partial<AssertionExpectation>, 'accepted' | 'refused'][] = [
      ['other allowed origin', { origin: ORIGINS[1]! }, {}, 'accepted'],
      ['wrong origin', { origin: 'https://evil.example' }, {}, 'refused'],
      ['origin not in an empty list', { origin: ORIGIN }, { origins: [] }, 'refused'],
      ['wrong rpId', { origin: ORIGIN, rpId: 'evil.example' }, {}, 'refused'],
      ['expected rpId differs', { origin: ORIGIN }, { rpId: 'example.com' }, 'refused'],
      ['type webauthn.create', { origin: ORIGIN, type: 'webauthn.create' }, {}, 'refused'],
      ['type payment.get', { origin: ORIGIN, type: 'payment.get' }, {}, 'refused'],
      ['UP off', { origin: ORIGIN, userPresent: false }, {}, 'refused'],
      ['UP off, UV not required', { origin: ORIGIN, userPresent: false }, { requireUserVerification: false }, 'refused'],
      ['UV off, UV required', { origin: ORIGIN, userVerified: false }, { requireUserVerification: true }, 'refused'],
      ['UV off, UV not required', { origin: ORIGIN, userVerified: false }, { requireUserVerification: false }, 'accepted'],
      ['wrong challenge', { origin: ORIGIN, challenge: b64(randomBytes(32)) }, {}, 'refused'],
      ['crossOrigin true without topOrigin', { origin: ORIGIN, crossOrigin: true }, {}, 'accepted'],
      ['counter 0', { origin: ORIGIN, counter: 0 }, {}, 'accepted'],
      ['counter 2^32-1', { origin: ORIGIN, counter: 0xffffffff }, {}, 'accepted'],
    ];
    for (const [name, o, exp, want] of cases) {
      const { json, challenge } = await authenticate(o);
      const out = await diff.check(name, json, expectation(cred, challenge, exp));
      expect(out === 'refused' ? 'refused' : 'accepted', name).toBe(want);
    }
    // Another credential's key never verifies this credential's assertion.
    const other = await softCredential(alg);
    const { json, challenge } = await authenticate({ origin: ORIGIN });
    expect(await diff.check('other credential key', json, expectation(other, challenge))).toBe('refused');
    diff.expectClean();
  });

  it('client data, authenticator data and response members', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const challenge = b64(randomBytes(32));
    const exp = expectation(cred, challenge);
    const validClientData = Buffer.from(clientDataText(challenge));
    for (const [name, cd] of clientDataCases(challenge)) {
      for (const requireUserVerification of [true, false]) {
        await diff.check(`clientData ${name}`, assertionOf(cred, authDataOf(), cd), { ...exp, requireUserVerification });
      }
    }
    for (const [name, ad] of authDataCases(cred)) {
      for (const requireUserVerification of [true, false]) {
        await diff.check(`authData ${name}`, assertionOf(cred, ad, validClientData), { ...exp, requireUserVerification });
      }
    }
    // RP IDs outside ASCII: SimpleWebAuthn hashes one byte per UTF-16 code unit (its low 8 bits).
    for (const rpId of ['lógin.example.com', 'l\u0101gin.example.com', 'login.example.com\u2603']) {
      const lowBytes = Buffer.from([...rpId].map((ch) => ch.charCodeAt(0) & 0xff));
      await diff.check(`rpId ${rpId} (low bytes)`, assertionOf(cred, authDataOf({ rpIdHash: sha256(lowBytes) }), validClientData), { ...exp, rpId });
      await diff.check(`rpId ${rpId} (UTF-8)`, assertionOf(cred, authDataOf({ rpIdHash: sha256(rpId) }), validClientData), { ...exp, rpId });
    }
    // Response members.
    const valid = assertionOf(cred, authDataOf(), validClientData);
    const padded = (s: string) => s + '='.repeat((4 - (s.length % 4)) % 4);
    const members: [string, (j: Json) => void][] = [
      ['id padded', (j) => (j.id = padded(String(j.id)))],
      ['rawId padded', (j) => (j.rawId = `${String(j.rawId)}==`)],
      ['id missing', (j) => delete j.id],
      ['id empty', (j) => (j.id = j.rawId = '')],
      ['type missing', (j) => delete j.type],
      ['type other', (j) => (j.type = 'public-key2')],
      ['userHandle empty', (j) => (j.response.userHandle = '')],
      ['userHandle missing', (j) => delete j.response.userHandle],
      ['userHandle number', (j) => (j.response.userHandle = 7)],
      ['userHandle zero', (j) => (j.response.userHandle = 0)],
      ['userHandle object', (j) => (j.response.userHandle = {})],
      ['userHandle not base64url', (j) => (j.response.userHandle = '***')],
      ['clientDataJSON number', (j) => (j.response.clientDataJSON = 1)],
      ['authenticatorData number', (j) => (j.response.authenticatorData = 1)],
      ['signature missing', (j) => delete j.response.signature],
      ['signature empty', (j) => (j.response.signature = '')],
      ['authenticatorData with = inside', (j) => (j.response.authenticatorData = `${String(j.response.authenticatorData).slice(0, 8)}=${String(j.response.authenticatorData).slice(8)}`)],
      ['response missing', (j) => delete (j as Record<string, unknown>).response],
      ['extension results odd', (j) => (j.clientExtensionResults = { appid: true, credProps: 1 })],
      ['authenticatorAttachment', (j) => (j.authenticatorAttachment = 'cross-platform')],
    ];
    for (const [name, change] of members) {
      const j = clone(valid);
      change(j);
      await diff.check(`member ${name}`, j, exp);
    }
    // base64url forms of each member: correct padding is fine, wrong padding changes what SimpleWebAuthn decodes.
    for (const field of FIELDS) {
      const s = String(valid.response[field]);
      for (const [name, v] of [
        ['padded', padded(s)],
        ['"==" appended', `${s}==`],
        ['"=" appended', `${s}=`],
        ['standard alphabet', Buffer.from(s, 'base64url').toString('base64')],
      ] as const) {
        const j = clone(valid);
        j.response[field] = v;
        await diff.check(`${field} ${name}`, j, exp);
        if (field !== 'signature') await diff.check(`${field} ${name}, re-signed`, resign(cred, j), exp);
      }
    }
    expect(diff.accepted).toBeGreaterThan(50);
    expect(diff.refused).toBeGreaterThan(50);
    diff.expectClean();
  });

  it('random mutations of clientDataJSON, authenticatorData and signature', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const seed = { ES256: 0x5eed1, EdDSA: 0x5eed2, RS256: 0x5eed3 }[alg];
    const rnd = prng(seed);
    const N = 450;
    for (let i = 0; i < N; i++) {
      const challenge = b64(randomBytesFrom(rnd, 32));
      const exp = expectation(cred, challenge, { requireUserVerification: rnd() < 0.5 });
      const base = assertionOf(cred, authDataOf({ counter: i, flags: pick(rnd, [UP | UV | BE | BS, UP | UV, UP | BE, UP | UV | BE]) }), Buffer.from(clientDataText(challenge)));
      let { label, json } = randomMutation(rnd, cred, base);
      // Sometimes stack a second mutation.
      if (rnd() < 0.25) {
        const second = randomMutation(rnd, cred, json);
        label = `${label} then ${second.label}`;
        json = second.json;
      }
      await diff.check(`seed ${seed} #${i} ${label}`, json, exp);
    }
    // The mutation set must contain both outcomes, or it proves nothing.
    expect(diff.accepted).toBeGreaterThan(N / 20);
    expect(diff.refused).toBeGreaterThan(N / 4);
    diff.expectClean();
  });
});

describe('other key types (hand-built COSE keys)', () => {
  const creds = (): Cred[] => [
    ecCredential('ES384 P-384', 'P-384', 2, -35, 'sha384'),
    ecCredential('ES512 P-521', 'P-521', 3, -36, 'sha512'),
    ecCredential('ES256 alg on P-384 (SHA-256, P-384 sizes)', 'P-384', 2, -7, 'sha256'),
    ecCredential('RS256 alg on P-256 (ECDSA SHA-256)', 'P-256', 1, -257, 'sha256'),
    ecCredential('EdDSA alg on P-256 (ECDSA SHA-512)', 'P-256', 1, -8, 'sha512'),
    ecCredential('RS1 alg on P-256 (ECDSA SHA-1)', 'P-256', 1, -65535, 'sha1'),
    rsaCredential('PS256', -37, 'sha256', 32),
    rsaCredential('PS384', -38, 'sha384', 48),
    rsaCredential('PS512 on 1024-bit key (salt does not fit)', -39, 'sha512', 0, 1024),
    rsaCredential('PS256 signed with salt 20', -37, 'sha256', 20),
    rsaCredential('RS384', -258, 'sha384'),
    rsaCredential('RS512', -259, 'sha512'),
    rsaCredential('RS1', -65535, 'sha1'),
    rsaCredential('RS256 on 1024-bit key', -257, 'sha256', undefined, 1024),
  ];

  it('all take the fast path and agree with SimpleWebAuthn, valid and mutated', async () => {
    const diff = new Differential();
    const rnd = prng(0x0ddba11);
    for (const cred of creds()) {
      expect(fastPathSupports(cred.cose), cred.name).toBe(true);
      const challenge = b64(randomBytes(32));
      const exp = expectation(cred, challenge);
      const valid = assertionOf(cred, authDataOf(), Buffer.from(clientDataText(challenge)));
      const out = await diff.check(`${cred.name} valid`, valid, exp);
      if (!cred.name.includes('does not fit') && !cred.name.includes('salt 20')) expect(out, cred.name).toEqual({ signCount: 1, userVerified: true, backedUp: true });
      else expect(out, cred.name).toBe('refused');
      for (let i = 0; i < 40; i++) {
        const { label, json } = randomMutation(rnd, cred, valid);
        await diff.check(`${cred.name} #${i} ${label}`, json, exp);
      }
    }
    expect(diff.accepted).toBeGreaterThan(20);
    diff.expectClean();
  });

  it('ECDSA signature encodings are judged like SimpleWebAuthn (BER leniencies included)', async () => {
    const diff = new Differential();
    const seen = new Map<string, Set<string>>();
    const ecCreds: Cred[] = [await softCredential('ES256'), ecCredential('ES384 P-384', 'P-384', 2, -35, 'sha384'), ecCredential('ES512 P-521', 'P-521', 3, -36, 'sha512')];
    for (const cred of ecCreds) {
      const size = cred.ecSize!;
      // Several signatures, so r and s with and without the high bit set (and shorter ones) all occur.
      for (let i = 0; i < 12; i++) {
        const challenge = b64(randomBytes(32));
        const ad = authDataOf({ counter: i });
        const cd = Buffer.from(clientDataText(challenge));
        const der = cred.sign(Buffer.concat([ad, sha256(cd)]));
        const raw = derToRaw(der, size);
        for (const [name, sig] of derVariants(raw, size, cred.order)) {
          const out = await diff.check(`${cred.name} ${name} #${i}`, assertionOf(cred, ad, cd, sig), expectation(cred, challenge));
          const key = `${cred.name}: ${name}`;
          if (!seen.has(key)) seen.set(key, new Set());
          seen.get(key)!.add(out === 'refused' ? 'refused' : 'accepted');
        }
      }
    }
    // What SimpleWebAuthn does with some of them (documenting its leniency, which the fast path follows).
    expect(seen.get('ES256: canonical')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: trailing garbage')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: context tag [0]')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: indefinite length')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: extra malformed BOOLEAN')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: high S (n - s)')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: raw r || s')).toEqual(new Set(['refused']));
    expect(seen.get('ES256: SET tag')).toEqual(new Set(['refused']));
    diff.expectClean();
  });

  it('EdDSA signature edge cases', async () => {
    const cred = await softCredential('EdDSA');
    const diff = new Differential();
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    for (let i = 0; i < 6; i++) {
      const challenge = b64(randomBytes(32));
      const ad = authDataOf({ counter: i });
      const cd = Buffer.from(clientDataText(challenge));
      const sig = cred.sign(Buffer.concat([ad, sha256(cd)]));
      const sLe = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`);
      const sPlusL = Buffer.from((sLe + L).toString(16).padStart(64, '0'), 'hex').reverse();
      for (const [name, s] of [
        ['valid', sig],
        ['S + L', Buffer.concat([sig.subarray(0, 32), sPlusL])],
        ['63 bytes', sig.subarray(0, 63)],
        ['65 bytes', Buffer.concat([sig, Buffer.from([0])])],
        ['all zero', Buffer.alloc(64)],
      ] as const) {
        await diff.check(`EdDSA ${name}`, assertionOf(cred, ad, cd, s), expectation(cred, challenge));
      }
    }
    diff.expectClean();
  });
});

describe('keys the fast path does not take', () => {
  it('go to SimpleWebAuthn through verifyAssertionWith; verifyAssertionFast says so', async () => {
    const ed = generateKeyPairSync('ed25519');
    const edX = jwkOf(ed.publicKey).x!;
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pj = jwkOf(p256.publicKey);
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const kj = jwkOf(k1.publicKey);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rj = jwkOf(rsa.publicKey);
    // A P-256 key whose x has a leading zero byte, sent as 31 bytes.
    let short: { privateKey: KeyObject; x: Buffer; y: Buffer } | undefined;
    for (let i = 0; i < 5000 && !short; i++) {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const j = jwkOf(k.publicKey);
      if (j.x![0] === 0) short = { privateKey: k.privateKey, x: j.x!.subarray(1), y: j.y! };
    }
    const edSign = (d: Buffer, k: KeyObject) => sign(null, d, k);
    const es256 = (d: Buffer, k: KeyObject) => sign('sha256', d, k);
    const fallbacks: Cred[] = [
      handCredential('OKP Ed25519 with alg ES256', ed.privateKey, cose([[1, 1], [3, -7], [-1, 6], [-2, edX]]), edSign),
      handCredential('OKP with string crv', ed.privateKey, cose([[1, 1], [3, -8], [-1, 'Ed25519'], [-2, edX]]), edSign),
      handCredential('OKP without alg', ed.privateKey, cose([[1, 1], [-1, 6], [-2, edX]]), edSign),
      handCredential('EC2 P-256 with alg ES256K', p256.privateKey, cose([[1, 2], [3, -47], [-1, 1], [-2, pj.x!], [-3, pj.y!]]), es256),
      handCredential('EC2 secp256k1', k1.privateKey, cose([[1, 2], [3, -47], [-1, 8], [-2, kj.x!], [-3, kj.y!]]), es256),
      handCredential('EC2 without y', p256.privateKey, cose([[1, 2], [3, -7], [-1, 1], [-2, pj.x!]]), es256),
      handCredential('EC2 with a y off the curve', p256.privateKey, cose([[1, 2], [3, -7], [-1, 1], [-2, pj.x!], [-3, Buffer.from(pj.y!).fill(7, 0, 4)]]), es256),
      handCredential('EC2 kty as text', p256.privateKey, cose([[1, 'EC2'], [3, -7], [-1, 1], [-2, pj.x!], [-3, pj.y!]]), es256),
      handCredential('RSA with alg ES256', rsa.privateKey, cose([[1, 3], [3, -7], [-1, rj.n!], [-2, rj.e!]]), (d, k) => sign('sha256', d, k)),
      handCredential('RSA n with a leading zero byte', rsa.privateKey, cose([[1, 3], [3, -257], [-1, Buffer.concat([Buffer.from([0]), rj.n!])], [-2, rj.e!]]), (d, k) => sign('sha256', d, k)),
      handCredential('AKP (ML-DSA-44)', ed.privateKey, cose([[1, 7], [3, -48], [-1, randomBytes(1312)]]), edSign),
      handCredential('not a map', ed.privateKey, cbor(7), edSign),
      handCredential('not CBOR', ed.privateKey, Buffer.from([0xff, 0x00]), edSign),
    ];
    if (short) fallbacks.push(handCredential('EC2 x of 31 bytes', short.privateKey, cose([[1, 2], [3, -7], [-1, 1], [-2, short.x], [-3, short.y]]), es256));

    const diff = new Differential();
    const outcomes = new Map<string, Outcome>();
    for (const cred of fallbacks) {
      expect(fastPathSupports(cred.cose), cred.name).toBe(false);
      const challenge = b64(randomBytes(32));
      const exp = expectation(cred, challenge);
      const json = assertionOf(cred, authDataOf(), Buffer.from(clientDataText(challenge)));
      const parsed = parseAssertion(json);
      expect(() => verifyAssertionFast(parsed, exp), cred.name).toThrow(UnsupportedKeyError);
      outcomes.set(cred.name, await diff.check(`fallback ${cred.name}`, json, exp));
    }
    // SimpleWebAuthn verifies Ed25519 whatever (valid) alg the OKP key names, and accepts RSA n with a leading zero.
    expect(outcomes.get('OKP Ed25519 with alg ES256')).not.toBe('refused');
    expect(outcomes.get('RSA n with a leading zero byte')).not.toBe('refused');
    expect(outcomes.get('EC2 secp256k1')).toBe('refused');
    expect(outcomes.get('AKP (ML-DSA-44)')).toBe('refused');
    diff.expectClean();
  });
});

describe('real-device assertions (fido2-helpers)', () => {
  interface VectorJson {
    id: string;
    rawId: string;
    response: Record<string, string>;
  }
  const helpers = createRequire(import.meta.url)('fido2-helpers') as { server: Record<string, VectorJson>; lib: Record<string, string> };

  function coseFromPem(pem: string, alg: number): Buffer {
    const key = createPublicKey(pem);
    const j = jwkOf(key);
    return key.asymmetricKeyType === 'ec' ? cose([[1, 2], [3, alg], [-1, 1], [-2, j.x!], [-3, j.y!]]) : cose([[1, 3], [3, alg], [-1, j.n!], [-2, j.e!]]);
  }

  const VECTORS = [
    { name: 'U2F security key (ES256)', json: 'assertionResponseMsgB64Url', pem: 'assnPublicKey', alg: -7, rpId: 'localhost', origin: 'https://localhost:8443', uv: false, want: { signCount: 363, userVerified: false, backedUp: false } },
    { name: 'Windows Hello (RS256)', json: 'assertionResponseWindowsHelloMsgB64Url', pem: 'assnPublicKeyWindowsHello', alg: -257, rpId: 'webauthn.org', origin: 'https://webauthn.org', uv: true, want: { signCount: 1, userVerified: true, backedUp: false } },
  ] as const;

  it.each(VECTORS)('$name verifies the same way, and so do its mutations', async (v) => {
    const vector = helpers.server[v.json]!;
    const json: Json = { id: vector.id, rawId: vector.rawId, type: 'public-key', response: { ...vector.response }, clientExtensionResults: {} };
    const publicKey = coseFromPem(helpers.lib[v.pem]!, v.alg);
    expect(fastPathSupports(publicKey)).toBe(true);
    const challenge = (JSON.parse(Buffer.from(vector.response.clientDataJSON!, 'base64url').toString('utf8')) as { challenge: string }).challenge;
    const exp: AssertionExpectation = { challenge, origins: [v.origin], rpId: v.rpId, requireUserVerification: v.uv, publicKey };
    const diff = new Differential();
    expect(await diff.check('as recorded', json, exp)).toEqual(v.want);
    expect(verifyAssertionFast(parseAssertion(json), exp)).toEqual(v.want);
    expect(await diff.check('UV required', json, { ...exp, requireUserVerification: true })).toEqual(v.uv ? v.want : 'refused');
    expect(await diff.check('other origin', json, { ...exp, origins: ['https://example.org'] })).toBe('refused');
    expect(await diff.check('other RP ID', json, { ...exp, rpId: 'example.org' })).toBe('refused');
    expect(await diff.check('other challenge', json, { ...exp, challenge: `${challenge}x` })).toBe('refused');
    // Padding on or off changes nothing when it is right.
    for (const field of FIELDS) {
      const s = String(json.response[field]);
      const bare = s.replace(/=+$/, '');
      for (const form of [bare, bare + '='.repeat((4 - (bare.length % 4)) % 4)]) {
        const j = clone(json);
        j.response[field] = form;
        expect(await diff.check(`${field} as ${form.slice(-4)}`, j, exp)).toEqual(v.want);
      }
    }
    const rnd = prng(v.alg === -7 ? 0xfeed1 : 0xfeed2);
    for (let i = 0; i < 200; i++) {
      const j = clone(json);
      const field = pick(rnd, FIELDS);
      const s = String(j.response[field]);
      j.response[field] = rnd() < 0.5 ? mutateString(rnd, s) : b64(mutateBytes(rnd, Buffer.from(s, 'base64url')));
      await diff.check(`vector #${i} ${field}`, j, exp);
    }
    diff.expectClean();
  });
});

describe('public key cache', () => {
  it('parses a key once, and keeps keys apart', async () => {
    const a = await softCredential('ES256');
    const b = await softCredential('ES256');
    const c = await softCredential('EdDSA');
    const run = async (cred: typeof a, signer = cred) => {
      const challenge = b64(randomBytes(32));
      const json = await signer.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: signer.id, type: 'public-key' }] }, { origin: ORIGIN });
      return settle(() => verifyAssertionFast(parseAssertion(json), expectation(cred, challenge)));
    };

    clearKeyCache();
    expect(keyCacheStats()).toEqual({ parses: 0, hits: 0, size: 0 });
    expect(await run(a)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 0, size: 1 });
    expect(await run(a)).not.toBe('refused');
    // The same bytes in another array are the same key.
    const aCopy = { ...a, cose: new Uint8Array(Array.from(a.cose)) };
    expect(await run(aCopy, a)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 2, size: 1 });

    expect(await run(b)).not.toBe('refused');
    expect(await run(c)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 3, hits: 2, size: 3 });

    // Each cached KeyObject is its own credential's key and no other's.
    const keyA = cachedKeyObject(a.cose)!;
    const keyB = cachedKeyObject(b.cose)!;
    const keyC = cachedKeyObject(c.cose)!;
    const publicOf = (cred: typeof a) => createPublicKey(cred.auth.credentials[0]!.privateKey);
    expect(keyA.equals(publicOf(a))).toBe(true);
    expect(keyB.equals(publicOf(b))).toBe(true);
    expect(keyC.equals(publicOf(c))).toBe(true);
    expect(keyA.equals(keyB)).toBe(false);
    expect(keyA.equals(publicOf(b))).toBe(false);

    // Assertions signed by one credential are refused under the other's (cached) key, in both directions,
    // and each still verifies under its own afterwards.
    expect(await run(a, b)).toBe('refused');
    expect(await run(b, a)).toBe('refused');
    expect(await run(a)).not.toBe('refused');
    expect(await run(b)).not.toBe('refused');
    expect(keyCacheStats().parses).toBe(3);

    // verifyAssertionWith uses the same cache; clearing it forces a new parse.
    clearKeyCache();
    const challenge = b64(randomBytes(32));
    const json = await a.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: a.id, type: 'public-key' }] }, { origin: ORIGIN });
    await verifyAssertionWith(parseAssertion(json), expectation(a, challenge));
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 0, size: 1 });
  });
});

/** IEEE P1363 r || s from a DER ECDSA signature made by node:crypto (plain DER, short or 0x81 length). */
function derToRaw(der: Buffer, size: number): Buffer {
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
