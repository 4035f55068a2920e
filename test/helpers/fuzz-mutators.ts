/**
 * Mutations of valid requests for test/fuzz.test.ts: JSON values (types, depth, sizes, unknown fields),
 * JSON text and protobuf bytes (bit flips, varint junk, truncation, splices), gRPC framing (flags,
 * declared length) and WebAuthn payload bytes. Every mutator takes the case's own PRNG, so a case is
 * replayed from the seed and its index alone.
 */
import type { JsonObject, JsonValue } from '@bufbuild/protobuf';

export type Rnd = () => number;
export const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);
export const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;

/** A JSON value nested `depth` levels (objects or arrays). */
function nested(rnd: Rnd, depth: number): JsonValue {
  let v: JsonValue = pick(rnd, [1, 'x', null, true, {}, []]);
  for (let i = 0; i < depth; i++) v = rnd() < 0.5 ? [v] : { a: v };
  return v;
}

/** A JSON value of another kind than expected: the type confusions a hand-written client makes. */
function oddValue(rnd: Rnd): JsonValue {
  switch (int(rnd, 14)) {
    case 0:
      return null;
    case 1:
      return pick(rnd, [true, false]);
    case 2:
      return pick(rnd, [0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 4294967296, -2147483649]);
    case 3:
      return pick(rnd, ['', ' ', '0', '-1', 'NaN', 'Infinity', '1e999', 'true', '\u0000', '\ud800', 'é'.repeat(300)]);
    case 4:
      return 'x'.repeat(pick(rnd, [201, 1000, 70_000]));
    case 5:
      return [];
    case 6:
      return {};
    case 7:
      return nested(rnd, 1 + int(rnd, 100));
    case 8:
      return Array.from({ length: int(rnd, 50) }, () => int(rnd, 1000));
    case 9:
      return { '@type': 'type.googleapis.com/google.protobuf.Empty' };
    case 10:
      return pick(rnd, ['2020-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '1s', '-1s', '315576000001s', '0.0000000001s']);
    case 11:
      return pick(rnd, ['AAAA', '!!!!', 'a=b=', '____']);
    case 12:
      return pick(rnd, ['USER_VERIFICATION_REQUIREMENT_REQUIRED', 'NOPE', 99, -1]);
    default:
      return nested(rnd, 60 + int(rnd, 20));
  }
}

/** Every path to a value in a JSON tree (the root excluded). */
function paths(v: JsonValue, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  const children: [string | number, JsonValue][] = Array.isArray(v) ? v.map((c, i) => [i, c]) : v && typeof v === 'object' ? Object.entries(v as JsonObject) : [];
  for (const [k, c] of children) {
    out.push([...prefix, k]);
    paths(c, [...prefix, k], out);
  }
  return out;
}

/** A mutated copy of a JSON request: one value replaced, removed, duplicated into a new key, or the whole replaced. */
export function mutateJsonValue(rnd: Rnd, template: JsonObject): JsonValue {
  const copy = structuredClone(template) as JsonObject;
  const all = paths(copy);
  const roll = int(rnd, 10);
  if (roll === 0 || all.length === 0) return oddValue(rnd);
  const path = pick(rnd, all);
  let parent: any = copy;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const key = path[path.length - 1]!;
  if (roll === 1) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else if (roll === 2 && !Array.isArray(parent)) parent[`${String(key)}_${int(rnd, 10)}`] = parent[key];
  else parent[key] = oddValue(rnd);
  return copy;
}

/** Byte-level damage: bit flips, random bytes, varint junk, truncation, deletion, duplication, splices. */
export function mutateBytes(rnd: Rnd, input: Uint8Array): Buffer {
  const b = Buffer.from(input);
  const at = () => int(rnd, Math.max(1, b.length));
  switch (int(rnd, 9)) {
    case 0: {
      if (b.length) b[at()]! ^= 1 << int(rnd, 8);
      return b;
    }
    case 1: {
      for (let i = 0, n = 1 + int(rnd, 4); i < n && b.length; i++) b[at()] = int(rnd, 256);
      return b;
    }
    case 2: {
      // An over-long or unterminated varint where a tag or length is expected.
      const i = at();
      return Buffer.concat([b.subarray(0, i), Buffer.alloc(1 + int(rnd, 12), 0xff), b.subarray(i)]);
    }
    case 3:
      return b.subarray(0, at());
    case 4: {
      const i = at();
      return Buffer.concat([b.subarray(0, i), b.subarray(i + 1 + int(rnd, 8))]);
    }
    case 5:
      return Buffer.concat([b, b.subarray(at())]);
    case 6: {
      // A tag with an illegal wire type or field number 0.
      const i = at();
      return Buffer.concat([b.subarray(0, i), Buffer.from([pick(rnd, [0x00, 0x06, 0x07, 0x0e, 0x0f, 0x0c]), int(rnd, 256)]), b.subarray(i)]);
    }
    case 7: {
      // A length prefix promising more than follows.
      const i = at();
      return Buffer.concat([b.subarray(0, i), Buffer.from([0x0a, 0x80 | int(rnd, 128), 0x01]), b.subarray(i)]);
    }
    default:
      return Buffer.concat([b, Buffer.from([0xc3, 0x28, 0xff, 0xfe])]);
  }
}

/** A gRPC / gRPC-web body around a message, with its prefix possibly wrong (flags, length, truncation, a second frame). */
export function mutateFrame(rnd: Rnd, message: Uint8Array): { body: Buffer; flagged: boolean } {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  let body = Buffer.concat([prefix, message]);
  switch (int(rnd, 6)) {
    case 0:
      body[0] = pick(rnd, [0x01, 0x02, 0x80, 0xff]);
      break;
    case 1:
      body.writeUInt32BE(pick(rnd, [0, message.length + 1, Math.max(0, message.length - 1), 0xffffffff, 2 * 1024 * 1024]), 1);
      break;
    case 2:
      body = body.subarray(0, int(rnd, 5));
      break;
    case 3:
      body = Buffer.concat([body, body]);
      break;
    case 4:
      body = Buffer.concat([body, Buffer.from([0x80, 0, 0, 0, 0])]);
      break;
    default:
      body = Buffer.concat([prefix, mutateBytes(rnd, message)]).fill(0, 0, 1);
      body.writeUInt32BE(body.length - 5, 1);
  }
  return { body, flagged: (body[0]! & 1) === 1 };
}

/** The WebAuthn members of an assertion or attestation response that carry signed (or attested) bytes. */
export const SIGNED_MEMBERS = ['authenticatorData', 'clientDataJSON', 'signature'] as const;

/** A copy of a credential JSON with one base64url member's bytes damaged (bytes decoded, mutated, re-encoded). */
export function mutateCredentialBytes(rnd: Rnd, credential: JsonObject, members: readonly string[]): { credential: JsonObject; member: string } {
  const copy = structuredClone(credential);
  const response = copy.response as JsonObject;
  const present = members.filter((m) => typeof response[m] === 'string');
  const member = pick(rnd, present);
  const before = Buffer.from(response[member] as string, 'base64url');
  let after = mutateBytes(rnd, before);
  // A mutation must change the bytes (a truncation at the end, say, may not).
  if (after.equals(before)) after = Buffer.concat([before, Buffer.from([0])]);
  response[member] = after.toString('base64url');
  return { credential: copy, member };
}
