/** Mutations and case generators for the assertion verifier tests (client data, authenticator data, DER). */
import { randomBytes } from 'node:crypto';
import {
  AT,
  BE,
  BS,
  type Cbor,
  type Cred,
  ED,
  type Json,
  ORIGIN,
  ORIGINS,
  type Rnd,
  UP,
  UV,
  authDataOf,
  b64,
  cbor,
  clone,
  int,
  pick,
  resign,
  sha256,
} from './assertion-builders.js';

// ---------------------------------------------------------------------------------------------
// Mutations

const B64_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ODD_CHARS = ['=', '==', '+', '/', ' ', '.', '\n', 'é', '\u2603', '%'];

export function mutateBytes(rnd: Rnd, b: Buffer): Buffer {
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

export function randomBytesFrom(rnd: Rnd, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rnd, 256);
  return b;
}

export function mutateString(rnd: Rnd, s: string): string {
  const at = int(rnd, s.length + 1);
  switch (int(rnd, 8)) {
    case 0:
      return s.slice(0, at) + pick(rnd, [...B64_CHARS]) + s.slice(at + 1);
    case 1:
      return `${s.slice(0, at)}=${s.slice(at)}`;
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

export const FIELDS = ['clientDataJSON', 'authenticatorData', 'signature'] as const;

/** One random mutation of a valid assertion; re-signed about half of the time when the signed parts changed. */
export function randomMutation(rnd: Rnd, cred: Cred, base: Json): { label: string; json: Json } {
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

export function clientDataCases(challenge: string): [string, Buffer][] {
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
export function authDataCases(cred: Cred): [string, Buffer][] {
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
export function derVariants(raw: Buffer, size: number, order?: bigint): [string, Buffer][] {
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
