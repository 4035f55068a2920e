/**
 * Four real clients behind one JSON-in, JSON-out call signature, so one scenario can run unchanged over
 * each and the results can be compared:
 *
 * - `grpc-js`: @grpc/grpc-js with @grpc/proto-loader loading the very .proto files in proto/ (HTTP/2
 *   cleartext). Its objects are protobufjs-shaped; they are converted from and to proto3 JSON here with
 *   the help of the descriptors (Struct, Value, Timestamp, Duration differ).
 * - `grpc-web`: connect-web's gRPC-web transport over fetch, as a browser.
 * - `connect`: the Connect protocol, hand-written with fetch (JSON, HTTP/1.1).
 * - `rest`: fetch on the ZITADEL-style REST paths; request field names sent in snake_case (proto names).
 */
import path from 'node:path';
import { fromJson, toJson, type DescField, type DescMessage, type DescMethod, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export type ClientName = 'grpc-js' | 'grpc-web' | 'connect' | 'rest';
export const CLIENTS: ClientName[] = ['grpc-js', 'grpc-web', 'connect', 'rest'];

/** A call's outcome in protocol-neutral form: proto3 JSON, or the numeric gRPC code. */
export type CallResult = { ok: true; json: JsonObject; httpStatus?: number } | { ok: false; code: Code; message: string; httpStatus?: number; retryAfter?: string | null };

/** One client: calls any unary RPC of passkeyd with a proto3 JSON request (lowerCamelCase). */
export interface JsonClient {
  name: ClientName;
  call(method: DescMethod, request: JsonObject, token?: string): Promise<CallResult>;
  close(): void;
}

// ---------------------------------------------------------------------------------------------------
// proto3 JSON <-> protobufjs objects (what @grpc/proto-loader clients take and give)

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

function valueToPb(v: JsonValue): Record<string, unknown> {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueToPb) } };
  return { structValue: structToPb(v) };
}
function structToPb(o: JsonObject): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, valueToPb(v as JsonValue)])) };
}
function valueFromPb(v: Record<string, any>): JsonValue {
  if ('nullValue' in v) return null;
  if ('numberValue' in v) return v.numberValue;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('listValue' in v) return (v.listValue.values ?? []).map(valueFromPb);
  if ('structValue' in v) return structFromPb(v.structValue);
  throw new Error(`unset google.protobuf.Value ${JSON.stringify(v)}`);
}
function structFromPb(o: Record<string, any>): JsonObject {
  return Object.fromEntries(Object.entries(o.fields ?? {}).map(([k, v]) => [k, valueFromPb(v as Record<string, any>)]));
}

function timestampToPb(s: string): Record<string, unknown> {
  const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(s);
  if (!m) throw new Error(`bad timestamp ${s}`);
  const seconds = Math.floor(Date.parse(`${m[1]}${m[3]}`) / 1000);
  return { seconds: String(seconds), nanos: Number((m[2] ?? '').padEnd(9, '0')) };
}
function timestampFromPb(t: { seconds?: string; nanos?: number }): string {
  const seconds = Number(t.seconds ?? 0);
  const nanos = t.nanos ?? 0;
  const base = new Date(seconds * 1000).toISOString().slice(0, 19);
  // Same fraction rule as proto3 JSON (and protobuf-es): 0, 3, 6 or 9 digits.
  const frac =
    nanos === 0
      ? ''
      : nanos % 1_000_000 === 0
        ? `.${String(nanos / 1_000_000).padStart(3, '0')}`
        : nanos % 1000 === 0
          ? `.${String(nanos / 1000).padStart(6, '0')}`
          : `.${String(nanos).padStart(9, '0')}`;
  return `${base}${frac}Z`;
}
function durationToPb(s: string): Record<string, unknown> {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(s);
  if (!m) throw new Error(`bad duration ${s}`);
  const sign = m[1] ? -1 : 1;
  return { seconds: String(sign * Number(m[2])), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}
function durationFromPb(d: { seconds?: string; nanos?: number }): string {
  const nanos = d.nanos ?? 0;
  return nanos === 0 ? `${d.seconds ?? 0}s` : `${Number(d.seconds ?? 0) + nanos / 1e9}s`;
}

/** protobufjs' camelCase of a field name (what proto-loader uses with keepCase: false). */
const pbjsCamel = (name: string) => name.slice(0, 1) + name.slice(1).replace(/_([a-z])(?=[a-z]|$)/g, (_, c: string) => c.toUpperCase());

function convertSingle(f: DescField, v: any, dir: 'to' | 'from'): any {
  const msg =
    f.fieldKind === 'message'
      ? f.message
      : f.fieldKind === 'list' && f.listKind === 'message'
        ? f.message
        : f.fieldKind === 'map' && f.mapKind === 'message'
          ? f.message
          : undefined;
  if (!msg) return v;
  switch (msg.typeName) {
    case 'google.protobuf.Struct':
      return dir === 'to' ? structToPb(v) : structFromPb(v);
    case 'google.protobuf.Value':
      return dir === 'to' ? valueToPb(v) : valueFromPb(v);
    case 'google.protobuf.Timestamp':
      return dir === 'to' ? timestampToPb(v) : timestampFromPb(v);
    case 'google.protobuf.Duration':
      return dir === 'to' ? durationToPb(v) : durationFromPb(v);
    default:
      return convertMessage(msg, v, dir);
  }
}

/** proto3 JSON → protobufjs object ('to'), or back ('from'), guided by the protobuf-es descriptor. */
function convertMessage(desc: DescMessage, obj: Record<string, any>, dir: 'to' | 'from'): Record<string, any> {
  const out: Record<string, any> = {};
  for (const [key, v] of Object.entries(obj)) {
    const f = desc.fields.find((x) => (dir === 'to' ? x.jsonName === key || x.name === key : pbjsCamel(x.name) === key));
    if (!f) throw new Error(`${desc.typeName} has no field ${key}`);
    const outKey = dir === 'to' ? pbjsCamel(f.name) : f.jsonName;
    if (f.fieldKind === 'list') out[outKey] = (v as any[]).map((x) => convertSingle(f, x, dir));
    else if (f.fieldKind === 'map') out[outKey] = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, convertSingle(f, x, dir)]));
    else out[outKey] = convertSingle(f, v, dir);
  }
  return out;
}

/** proto3 JSON keys → proto names (snake_case), leaving Struct contents alone. */
function toProtoNames(desc: DescMessage, obj: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, v] of Object.entries(obj)) {
    const f = desc.fields.find((x) => x.jsonName === key || x.name === key);
    if (!f) throw new Error(`${desc.typeName} has no field ${key}`);
    const msg = f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message') ? f.message : undefined;
    const nested = (x: JsonValue): JsonValue => (msg && !msg.typeName.startsWith('google.protobuf.') && isObj(x) ? toProtoNames(msg, x as JsonObject) : x);
    out[f.name] = Array.isArray(v) ? v.map(nested) : nested(v as JsonValue);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------

function grpcJsClient(baseUrl: string): JsonClient {
  const protos = ['passkeyd/user/v2/user_service.proto', 'passkeyd/session/v2/session_service.proto', 'passkeyd/org/v2/org_service.proto'];
  protos.push('passkeyd/internal_permission/v2/internal_permission_service.proto');
  const def = protoLoader.loadSync(protos, {
    includeDirs: [path.resolve('proto'), path.resolve('node_modules/google-proto-files')],
    keepCase: false,
    longs: String,
    enums: String,
    bytes: String,
    defaults: false,
    oneofs: false,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const address = baseUrl.replace(/^http:\/\//, '');
  const stubs = new Map<string, grpc.Client>();
  const stubOf = (typeName: string) => {
    let s = stubs.get(typeName);
    if (!s) {
      const Ctor = typeName.split('.').reduce((o, p) => o[p], pkg);
      s = new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client;
      stubs.set(typeName, s);
    }
    return s;
  };
  return {
    name: 'grpc-js',
    call(method, request, token) {
      const stub = stubOf(method.parent.typeName) as any;
      const md = new grpc.Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      return new Promise((resolve) => {
        stub[method.name](convertMessage(method.input, request, 'to'), md, (err: grpc.ServiceError | null, res: Record<string, any>) => {
          if (err) resolve({ ok: false, code: err.code as number as Code, message: err.details });
          else resolve({ ok: true, json: convertMessage(method.output, res, 'from') as JsonObject });
        });
      });
    },
    close() {
      for (const s of stubs.values()) s.close();
    },
  };
}

function grpcWebClient(baseUrl: string): JsonClient {
  const transport = createGrpcWebTransport({ baseUrl, fetch: globalThis.fetch });
  return {
    name: 'grpc-web',
    async call(method, request, token) {
      const client = createClient(method.parent, transport) as any;
      try {
        const res = await client[method.localName](fromJson(method.input, request), token ? { headers: { authorization: `Bearer ${token}` } } : {});
        return { ok: true, json: toJson(method.output, res) as JsonObject };
      } catch (err) {
        const e = ConnectError.from(err);
        return { ok: false, code: e.code, message: e.rawMessage };
      }
    },
    close() {},
  };
}

const CONNECT_CODES: Record<string, Code> = Object.fromEntries(
  Object.entries(Code)
    .filter((e): e is [string, Code] => typeof e[1] === 'number')
    .map(([n, c]) => [n.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase(), c]),
);

function connectClient(baseUrl: string): JsonClient {
  return {
    name: 'connect',
    async call(method, request, token) {
      const res = await fetch(`${baseUrl}/${method.parent.typeName}/${method.name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(request),
      });
      const json = (await res.json()) as JsonObject;
      if (res.status === 200) return { ok: true, json, httpStatus: 200 };
      return { ok: false, code: CONNECT_CODES[json.code as string] ?? Code.Unknown, message: String(json.message ?? ''), httpStatus: res.status };
    },
    close() {},
  };
}

interface RestRequest {
  method: string;
  path: string;
  /** Body fields (the request minus what the path carries); undefined: no body. */
  body?: JsonObject;
  query?: Record<string, string | undefined>;
}

const enc = encodeURIComponent;
function omit(o: JsonObject, ...keys: string[]): JsonObject {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
}

/** The ZITADEL-style REST binding of each RPC, written out by hand (not derived from the route table). */
const REST: Record<string, (r: JsonObject) => RestRequest> = {
  'passkeyd.user.v2.UserService/AddHumanUser': (r) => ({ method: 'POST', path: '/v2/users/human', body: r }),
  'passkeyd.user.v2.UserService/GetUserByID': (r) => ({ method: 'GET', path: `/v2/users/${enc(String(r.userId))}` }),
  'passkeyd.user.v2.UserService/ListUsers': (r) => ({ method: 'POST', path: '/v2/users', body: r }),
  'passkeyd.user.v2.UserService/DeleteUser': (r) => ({ method: 'DELETE', path: `/v2/users/${enc(String(r.userId))}` }),
  'passkeyd.user.v2.UserService/CreatePasskeyRegistrationLink': (r) => ({
    method: 'POST',
    path: `/v2/users/${enc(String(r.userId))}/passkeys/registration_link`,
    body: omit(r, 'userId'),
  }),
  'passkeyd.user.v2.UserService/RegisterPasskey': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/passkeys`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/VerifyPasskeyRegistration': (r) => ({
    method: 'POST',
    path: `/v2/users/${enc(String(r.userId))}/passkeys/${enc(String(r.passkeyId))}`,
    body: omit(r, 'userId', 'passkeyId'),
  }),
  'passkeyd.user.v2.UserService/ListPasskeys': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/passkeys/_search`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/RenamePasskey': (r) => ({
    method: 'PATCH',
    path: `/v2/users/${enc(String(r.userId))}/passkeys/${enc(String(r.passkeyId))}`,
    body: omit(r, 'userId', 'passkeyId'),
  }),
  'passkeyd.user.v2.UserService/RemovePasskey': (r) => ({
    method: 'DELETE',
    path: `/v2/users/${enc(String(r.userId))}/passkeys/${enc(String(r.passkeyId))}`,
    query: r.force === undefined ? {} : { force: String(r.force) as string },
  }),
  'passkeyd.session.v2.SessionService/CreateSession': (r) => ({ method: 'POST', path: '/v2/sessions', body: r }),
  'passkeyd.session.v2.SessionService/SetSession': (r) => ({ method: 'PATCH', path: `/v2/sessions/${enc(String(r.sessionId))}`, body: omit(r, 'sessionId') }),
  'passkeyd.session.v2.SessionService/GetSession': (r) => ({
    method: 'GET',
    path: `/v2/sessions/${enc(String(r.sessionId))}`,
    query: r.sessionToken === undefined ? {} : { session_token: String(r.sessionToken) },
  }),
  'passkeyd.session.v2.SessionService/DeleteSession': (r) => ({ method: 'DELETE', path: `/v2/sessions/${enc(String(r.sessionId))}`, body: omit(r, 'sessionId') }),
  // Machine users, their credentials, and administrators (ZITADEL's v2 paths).
  'passkeyd.user.v2.UserService/CreateUser': (r) => ({ method: 'POST', path: '/v2/users/new', body: r }),
  'passkeyd.user.v2.UserService/DeactivateUser': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/deactivate`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/ReactivateUser': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/reactivate`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/AddKey': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/keys`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/RemoveKey': (r) => ({ method: 'DELETE', path: `/v2/users/${enc(String(r.userId))}/keys/${enc(String(r.keyId))}` }),
  'passkeyd.user.v2.UserService/ListKeys': (r) => ({ method: 'POST', path: '/v2/users/keys/search', body: r }),
  'passkeyd.user.v2.UserService/AddPersonalAccessToken': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/pats`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/RemovePersonalAccessToken': (r) => ({ method: 'DELETE', path: `/v2/users/${enc(String(r.userId))}/pats/${enc(String(r.tokenId))}` }),
  'passkeyd.user.v2.UserService/ListPersonalAccessTokens': (r) => ({ method: 'POST', path: '/v2/users/pats/search', body: r }),
  'passkeyd.user.v2.UserService/AddSecret': (r) => ({ method: 'POST', path: `/v2/users/${enc(String(r.userId))}/secret`, body: omit(r, 'userId') }),
  'passkeyd.user.v2.UserService/RemoveSecret': (r) => ({ method: 'DELETE', path: `/v2/users/${enc(String(r.userId))}/secret` }),
  'passkeyd.internal_permission.v2.InternalPermissionService/CreateAdministrator': (r) => ({ method: 'POST', path: '/v2/administrators', body: r }),
  'passkeyd.internal_permission.v2.InternalPermissionService/UpdateAdministrator': (r) => ({
    method: 'PATCH',
    path: `/v2/administrators/${enc(String(r.userId))}`,
    body: omit(r, 'userId'),
  }),
  'passkeyd.internal_permission.v2.InternalPermissionService/DeleteAdministrator': (r) => ({
    method: 'DELETE',
    path: `/v2/administrators/${enc(String(r.userId))}`,
    body: omit(r, 'userId'),
  }),
  'passkeyd.internal_permission.v2.InternalPermissionService/ListAdministrators': (r) => ({ method: 'POST', path: '/v2/administrators/search', body: r }),
};

function restClient(baseUrl: string): JsonClient {
  return {
    name: 'rest',
    async call(method, request, token) {
      const bind = REST[`${method.parent.typeName}/${method.name}`];
      if (!bind) throw new Error(`no REST binding written for ${method.name}`);
      const r = bind(request);
      const query = Object.entries(r.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
      const qs = query.length ? `?${new URLSearchParams(query)}` : '';
      const res = await fetch(`${baseUrl}${r.path}${qs}`, {
        method: r.method,
        headers: { ...(r.body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        // snake_case (proto names) in, to show the transcoder takes both spellings; lowerCamelCase out.
        body: r.body ? JSON.stringify(toProtoNames(method.input, r.body)) : undefined,
      });
      const json = (await res.json()) as JsonObject;
      // ZITADEL's gateway answers CreateSession with 201 Created; everything else succeeds with 200.
      const success = method.name === 'CreateSession' ? 201 : 200;
      if (res.status === success) return { ok: true, json, httpStatus: res.status };
      return { ok: false, code: json.code as Code, message: String(json.message ?? ''), httpStatus: res.status, retryAfter: res.headers.get('retry-after') };
    },
    close() {},
  };
}

/** A client of the given kind for a server at baseUrl (http://127.0.0.1:PORT). */
export function jsonClient(name: ClientName, baseUrl: string): JsonClient {
  switch (name) {
    case 'grpc-js':
      return grpcJsClient(baseUrl);
    case 'grpc-web':
      return grpcWebClient(baseUrl);
    case 'connect':
      return connectClient(baseUrl);
    case 'rest':
      return restClient(baseUrl);
  }
}
