import { getOption, hasOption, toJsonString, type DescField, type DescMessage, type Message } from '@bufbuild/protobuf';
import { reflect, type ReflectMessage } from '@bufbuild/protobuf/reflect';
import { ScalarType } from '@bufbuild/protobuf';
import { field as fieldRulesExt } from '../../gen/passkeyd/options/v1/options_pb.js';
import { invalid } from '../errors.js';

type Check = (m: ReflectMessage, path: string) => void;

interface Bounds {
  minLen?: number | undefined;
  maxLen?: number | undefined;
  required: boolean;
  min?: bigint | undefined;
  max?: bigint | undefined;
  email: boolean;
  itemMaxLen?: number | undefined;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const compiled = new Map<string, Check[]>();

function boundsOf(f: DescField): Bounds | undefined {
  if (!hasOption(f, fieldRulesExt)) return undefined;
  const r = getOption(f, fieldRulesExt);
  const n = (v: bigint | undefined) => (v === undefined ? undefined : Number(v));
  return { minLen: n(r.minLen), maxLen: n(r.maxLen), required: r.required, min: r.min, max: r.max, email: r.email, itemMaxLen: n(r.itemMaxLen) };
}

/** Characters as a person counts them (code points), without allocating for short ASCII strings. */
function charLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff) n++;
  }
  return n;
}

function lengthCheck(path: string, len: number, b: Bounds, unit: string): void {
  if (b.minLen !== undefined && len < b.minLen) {
    throw invalid(b.minLen === 1 ? `${path}: is required` : `${path}: must be at least ${b.minLen} ${unit}`);
  }
  if (b.maxLen !== undefined && len > b.maxLen) throw invalid(`${path}: must be at most ${b.maxLen} ${unit}`);
}

function stringCheck(path: string, s: string, b: Bounds): void {
  lengthCheck(path, charLength(s), b, 'characters');
  if (b.email && !EMAIL.test(s)) throw invalid(`${path}: is not a valid email address`);
}

function rangeCheck(path: string, v: number | bigint, b: Bounds): void {
  const x = BigInt(v);
  if (b.min !== undefined && x < b.min) throw invalid(`${path}: must be at least ${b.min}`);
  if (b.max !== undefined && x > b.max) throw invalid(`${path}: must be at most ${b.max}`);
}

function enumCheck(path: string, f: DescField & { enum: NonNullable<DescField['enum']> }, v: number): void {
  if (!f.enum.values.some((e) => e.number === v)) throw invalid(`${path}: unknown enum value ${v}`);
}

function isWellKnown(m: DescMessage): boolean {
  return m.typeName.startsWith('google.protobuf.');
}

/** Compiles the checks for a message type once; recursive types are guarded by the memo. */
function checksFor(desc: DescMessage): Check[] {
  const memo = compiled.get(desc.typeName);
  if (memo) return memo;
  const checks: Check[] = [];
  compiled.set(desc.typeName, checks);
  for (const f of desc.fields) {
    const b = boundsOf(f);
    const name = f.name;
    const presence = f.presence !== 2; // EXPLICIT (optional/oneof/message) or LEGACY_REQUIRED: skip when unset
    const notOffered = hasOption(f, fieldRulesExt) ? getOption(f, fieldRulesExt).notOffered : '';
    if (notOffered) {
      // A field of ZITADEL's message that passkeyd declares only to refuse it by name (not as a typo).
      checks.push((m, p) => {
        if (m.isSet(f)) throw invalid(`${p + name}: ZITADEL's ${notOffered} are not offered: passkeyd is passkey-only`);
      });
      continue;
    }
    switch (f.fieldKind) {
      case 'scalar': {
        if (f.scalar === ScalarType.STRING) {
          // Every string, bounded or not: PostgreSQL cannot store U+0000 in text or jsonb.
          checks.push((m, p) => {
            if (presence && !m.isSet(f)) return;
            const s = m.get(f) as string;
            if (s.includes('\u0000')) throw invalid(`${p + name}: must not contain a NUL character`);
            if (b) stringCheck(p + name, s, b);
          });
        } else if (!b) {
          break;
        } else if (f.scalar === ScalarType.BYTES) {
          checks.push((m, p) => {
            if (presence && !m.isSet(f)) return;
            lengthCheck(p + name, (m.get(f) as Uint8Array).length, b, 'bytes');
          });
        } else if (f.scalar !== ScalarType.BOOL) {
          checks.push((m, p) => {
            if (presence && !m.isSet(f)) return;
            rangeCheck(p + name, m.get(f) as number | bigint, b);
          });
        }
        break;
      }
      case 'enum':
        checks.push((m, p) => enumCheck(p + name, f, m.get(f) as number));
        break;
      case 'message': {
        const inner = isWellKnown(f.message) ? [] : checksFor(f.message);
        const isStruct = f.message.typeName === 'google.protobuf.Struct';
        checks.push((m, p) => {
          if (!m.isSet(f)) {
            if (b?.required) throw invalid(`${p + name}: is required`);
            return;
          }
          const v = m.get(f) as ReflectMessage;
          if (isStruct && b) {
            const bytes = Buffer.byteLength(toJsonString(v.desc, v.message));
            lengthCheck(p + name, bytes, b, 'bytes of JSON');
          }
          for (const c of inner) c(v, `${p + name}.`);
        });
        break;
      }
      case 'list': {
        const itemBounds: Bounds | undefined = b?.itemMaxLen !== undefined ? { required: false, email: false, maxLen: b.itemMaxLen } : undefined;
        const inner = f.listKind === 'message' && !isWellKnown(f.message) ? checksFor(f.message) : [];
        checks.push((m, p) => {
          const list = m.get(f) as unknown as { size: number; get(i: number): unknown };
          if (b) lengthCheck(p + name, list.size, b, 'items');
          for (let i = 0; i < list.size; i++) {
            const item = list.get(i);
            const ip = `${p + name}[${i}]`;
            if (f.listKind === 'enum') enumCheck(ip, f as any, item as number);
            else if (typeof item === 'string') {
              if (item.includes('\u0000')) throw invalid(`${ip}: must not contain a NUL character`);
              if (itemBounds) stringCheck(ip, item, itemBounds);
            } else if (f.listKind === 'message') for (const c of inner) c(item as ReflectMessage, `${ip}.`);
          }
        });
        break;
      }
      case 'map': {
        // Bounds on a map: max_len entries, item_max_len characters per key; message values are checked.
        const inner = f.mapKind === 'message' && !isWellKnown(f.message) ? checksFor(f.message) : [];
        checks.push((m, p) => {
          const map = m.get(f) as unknown as { size: number; entries(): Iterable<[unknown, unknown]> };
          if (b) lengthCheck(p + name, map.size, b, 'entries');
          for (const [k, v] of map.entries()) {
            const kp = `${p + name}[${String(k)}]`;
            if (typeof k === 'string') {
              if (k.includes('\u0000')) throw invalid(`${p + name}: a key must not contain a NUL character`);
              if (b?.itemMaxLen !== undefined && charLength(k) > b.itemMaxLen) throw invalid(`${p + name}: a key must be at most ${b.itemMaxLen} characters`);
            }
            for (const c of inner) c(v as ReflectMessage, `${kp}.`);
          }
        });
        break;
      }
    }
  }
  return checks;
}

/**
 * Checks a request against the bounds declared in its proto (`(passkeyd.options.v1.field)`), and that
 * every enum value is a defined one. Throws INVALID_ARGUMENT naming the first offending field.
 */
export function validateMessage(desc: DescMessage, message: Message): void {
  const checks = checksFor(desc);
  if (checks.length === 0) return;
  const m = reflect(desc, message);
  for (const c of checks) c(m, '');
}
