import { ScalarType, type DescField, type DescMessage, type JsonObject, type JsonValue } from '@bufbuild/protobuf';

/** A client mistake in a path variable, query parameter or body: becomes INVALID_ARGUMENT (HTTP 400). */
export class RestInputError extends Error {}

/**
 * Resolves a dotted field path against a message, accepting proto names ("org_id") and JSON names
 * ("orgId"); every step but the last must be a singular message field. Undefined when it does not resolve.
 */
export function resolveFieldPath(message: DescMessage, path: readonly string[]): DescField[] | undefined {
  const out: DescField[] = [];
  let m: DescMessage | undefined = message;
  for (let i = 0; i < path.length; i++) {
    if (!m) return undefined;
    const part = path[i]!;
    const f: DescField | undefined = m.fields.find((x) => x.name === part) ?? m.fields.find((x) => x.jsonName === part);
    if (!f) return undefined;
    out.push(f);
    m = f.fieldKind === 'message' ? f.message : undefined;
  }
  return out;
}

// Well-known types whose proto3 JSON form is a single string or number, so one query value can carry them.
const STRING_WKT = new Set(['google.protobuf.Timestamp', 'google.protobuf.Duration', 'google.protobuf.FieldMask']);
const WRAPPERS: Record<string, ScalarType> = {
  'google.protobuf.DoubleValue': ScalarType.DOUBLE,
  'google.protobuf.FloatValue': ScalarType.FLOAT,
  'google.protobuf.Int64Value': ScalarType.INT64,
  'google.protobuf.UInt64Value': ScalarType.UINT64,
  'google.protobuf.Int32Value': ScalarType.INT32,
  'google.protobuf.UInt32Value': ScalarType.UINT32,
  'google.protobuf.BoolValue': ScalarType.BOOL,
  'google.protobuf.StringValue': ScalarType.STRING,
  'google.protobuf.BytesValue': ScalarType.BYTES,
};

const INT = /^-?\d+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i;
const DURATION = /^-?\d+(?:\.\d{1,9})?s$/;

function scalarFromText(type: ScalarType, text: string, label: string): JsonValue {
  switch (type) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return text;
    case ScalarType.BOOL:
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      throw new RestInputError(`${label}: "${text}" is not a boolean (use true or false)`);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64: {
      const unsigned = type === ScalarType.UINT64 || type === ScalarType.FIXED64;
      if (!INT.test(text) || (unsigned && text.startsWith('-'))) throw new RestInputError(`${label}: "${text}" is not an integer`);
      const v = BigInt(text);
      const [min, max] = unsigned ? [0n, 2n ** 64n - 1n] : [-(2n ** 63n), 2n ** 63n - 1n];
      if (v < min || v > max) throw new RestInputError(`${label}: ${text} is out of range`);
      // proto3 JSON carries 64-bit integers as strings, so no precision is lost.
      return text;
    }
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
    case ScalarType.UINT32:
    case ScalarType.FIXED32: {
      const unsigned = type === ScalarType.UINT32 || type === ScalarType.FIXED32;
      const n = Number(text);
      const [min, max] = unsigned ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
      if (!INT.test(text) || n < min || n > max) throw new RestInputError(`${label}: "${text}" is not a ${unsigned ? 'non-negative ' : ''}32-bit integer`);
      return n;
    }
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE: {
      if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') return text;
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new RestInputError(`${label}: "${text}" is not a number`);
      return n;
    }
  }
}

/**
 * Converts one text value (a path segment or a query parameter) to the proto3 JSON value of a field,
 * by the field's type: numbers, booleans, enums by name or number, and the well-known types whose JSON is a
 * string (Timestamp, Duration, FieldMask, wrappers). A repeated field takes one element per value.
 */
export function jsonFromText(field: DescField, text: string, label: string): JsonValue {
  let kind: 'scalar' | 'enum' | 'message' | 'map';
  if (field.fieldKind === 'list') kind = field.listKind;
  else kind = field.fieldKind;
  if (kind === 'scalar') return scalarFromText(field.scalar!, text, label);
  if (kind === 'enum') {
    if (INT.test(text)) return Number(text);
    const e = field.enum!;
    if (!e.values.some((v) => v.name === text)) {
      throw new RestInputError(`${label}: "${text}" is not one of ${e.values.map((v) => v.name).join(', ')}`);
    }
    return text;
  }
  if (kind === 'message') {
    const typeName = field.message!.typeName;
    if (typeName === 'google.protobuf.Timestamp' && !RFC3339.test(text)) throw new RestInputError(`${label}: "${text}" is not an RFC 3339 timestamp (e.g. 2024-01-02T03:04:05Z)`);
    if (typeName === 'google.protobuf.Duration' && !DURATION.test(text)) throw new RestInputError(`${label}: "${text}" is not a duration in seconds (e.g. 1.5s)`);
    if (STRING_WKT.has(typeName)) return text;
    const wrapped = WRAPPERS[typeName];
    if (wrapped !== undefined) return scalarFromText(wrapped, text, label);
  }
  throw new RestInputError(`${label}: this field cannot be set from a URL (put it in the JSON body)`);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Sets (or, for repeated fields with `append`, adds to) a value at a resolved field path inside a JSON
 * request object. Keys are written under the JSON name; a snake_case spelling of the same field coming from
 * the body is folded in first, so the message never carries one field under two names.
 */
export function setAtPath(target: JsonObject, fields: readonly DescField[], value: JsonValue, append = false): void {
  let obj = target;
  fields.forEach((f, i) => {
    const existing = obj[f.jsonName] !== undefined ? obj[f.jsonName] : obj[f.name];
    if (f.name !== f.jsonName) delete obj[f.name];
    if (i < fields.length - 1) {
      const next: JsonObject = isObject(existing) ? existing : {};
      obj[f.jsonName] = next;
      obj = next;
      return;
    }
    if (append) {
      const list = Array.isArray(existing) ? existing : [];
      list.push(value);
      obj[f.jsonName] = list;
    } else {
      obj[f.jsonName] = value;
    }
  });
}
