import { getOption, hasOption, ScalarType, type DescEnum, type DescField, type DescMessage, type DescMethod } from '@bufbuild/protobuf';
import { Access, auth as authExt, field as fieldExt } from '../../../../gen/passkeyd/options/v1/options_pb.js';
import { successStatusOf, type RestRoute } from './route-table.js';

type Schema = Record<string, unknown>;

/** Well-known types in their proto3 JSON form. */
const WKT: Record<string, Schema> = {
  'google.protobuf.Timestamp': { type: 'string', format: 'date-time' },
  'google.protobuf.Duration': { type: 'string', pattern: '^-?\\d+(\\.\\d{1,9})?s$', example: '3600s' },
  'google.protobuf.FieldMask': { type: 'string' },
  'google.protobuf.Struct': { type: 'object', additionalProperties: true },
  'google.protobuf.Value': {},
  'google.protobuf.ListValue': { type: 'array', items: {} },
  'google.protobuf.Empty': { type: 'object' },
  'google.protobuf.Any': { type: 'object', properties: { '@type': { type: 'string' } }, additionalProperties: true },
  'google.protobuf.StringValue': { type: ['string', 'null'] },
  'google.protobuf.BytesValue': { type: ['string', 'null'], format: 'byte' },
  'google.protobuf.BoolValue': { type: ['boolean', 'null'] },
  'google.protobuf.DoubleValue': { type: ['number', 'null'] },
  'google.protobuf.FloatValue': { type: ['number', 'null'] },
  'google.protobuf.Int32Value': { type: ['integer', 'null'], format: 'int32' },
  'google.protobuf.UInt32Value': { type: ['integer', 'null'], format: 'uint32' },
  'google.protobuf.Int64Value': { type: ['string', 'null'], format: 'int64' },
  'google.protobuf.UInt64Value': { type: ['string', 'null'], format: 'uint64' },
};

function scalarSchema(t: ScalarType): Schema {
  switch (t) {
    case ScalarType.STRING:
      return { type: 'string' };
    case ScalarType.BYTES:
      return { type: 'string', format: 'byte' };
    case ScalarType.BOOL:
      return { type: 'boolean' };
    case ScalarType.DOUBLE:
      return { type: 'number', format: 'double' };
    case ScalarType.FLOAT:
      return { type: 'number', format: 'float' };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: 'integer', format: 'int32' };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: 'integer', format: 'uint32', minimum: 0 };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      // proto3 JSON writes 64-bit integers as strings (a JavaScript number would lose precision).
      return { type: 'string', format: 'uint64' };
    default:
      return { type: 'string', format: 'int64' };
  }
}

/** Collects component schemas while walking messages, each type once. */
class SchemaSet {
  readonly schemas: Record<string, Schema> = {};

  ref(name: string): Schema {
    return { $ref: `#/components/schemas/${name}` };
  }

  enumRef(e: DescEnum): Schema {
    if (!this.schemas[e.typeName]) this.schemas[e.typeName] = { type: 'string', enum: e.values.map((v) => v.name) };
    return this.ref(e.typeName);
  }

  messageRef(m: DescMessage): Schema {
    const wkt = WKT[m.typeName];
    if (wkt) return wkt;
    if (!this.schemas[m.typeName]) {
      const properties: Record<string, Schema> = {};
      this.schemas[m.typeName] = { type: 'object', properties, additionalProperties: false };
      for (const f of m.fields) properties[f.jsonName] = this.fieldSchema(f);
      const oneofs = m.oneofs.filter((o) => !o.fields.every((f) => f.proto.proto3Optional));
      if (oneofs.length) this.schemas[m.typeName]!.description = oneofs.map((o) => `At most one of ${o.fields.map((f) => f.jsonName).join(', ')}.`).join(' ');
    }
    return this.ref(m.typeName);
  }

  singular(f: DescField): Schema {
    if (f.enum) return this.enumRef(f.enum);
    if (f.message) return this.messageRef(f.message);
    return scalarSchema(f.scalar!);
  }

  fieldSchema(f: DescField): Schema {
    const notOffered = hasOption(f, fieldExt) ? getOption(f, fieldExt).notOffered : '';
    if (notOffered) {
      // Declared only to be refused by name: any value is answered 400 INVALID_ARGUMENT.
      return { description: `ZITADEL's ${notOffered}: not offered, passkeyd is passkey-only (refused with 400 INVALID_ARGUMENT when set).`, 'x-passkeyd-not-offered': true };
    }
    if (f.fieldKind === 'list') return { type: 'array', items: this.singular(f) };
    if (f.fieldKind === 'map') {
      const value = f.mapKind === 'enum' ? this.enumRef(f.enum) : f.mapKind === 'message' ? this.messageRef(f.message) : scalarSchema(f.scalar);
      return { type: 'object', additionalProperties: value };
    }
    return this.singular(f);
  }
}

/** Query parameters for the fields a route leaves to the query string: scalars, enums, nested by dots. */
function queryParameters(set: SchemaSet, m: DescMessage, bound: Set<string>, prefix = '', depth = 0): Schema[] {
  const out: Schema[] = [];
  for (const f of m.fields) {
    const name = prefix + f.name;
    if (bound.has(name)) continue;
    const msg = f.fieldKind === 'message' ? f.message : undefined;
    if (msg && !WKT[msg.typeName]) {
      if (depth < 3) out.push(...queryParameters(set, msg, bound, `${name}.`, depth + 1));
      continue;
    }
    if (f.fieldKind === 'map' || (f.fieldKind === 'list' && f.listKind === 'message') || msg?.typeName === 'google.protobuf.Struct') continue;
    out.push({ name, in: 'query', required: false, schema: set.fieldSchema(f), ...(f.fieldKind === 'list' ? { style: 'form', explode: true } : {}) });
  }
  return out;
}

/** Bearer required; optional where a registration code or session token may stand in; none if public. */
function securityOf(method: DescMethod): Schema[] | undefined {
  const allow = hasOption(method, authExt) ? getOption(method, authExt).allow : [];
  if (allow.includes(Access.PUBLIC)) return [];
  if (allow.includes(Access.REGISTRATION_CODE) || allow.includes(Access.SESSION_TOKEN)) return [{ bearer: [] }, {}];
  return undefined;
}

/** The OpenAPI `info` object. */
export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

/**
 * An OpenAPI 3.1 document of the REST surface, generated from the same compiled routes and descriptors
 * that serve it (so it cannot drift): one operation per binding, path and query parameters, request and
 * response schemas in proto3 JSON form, google.rpc.Status errors, Bearer security except on public RPCs.
 */
function buildOpenApi(routes: readonly RestRoute<unknown>[], info: OpenApiInfo): Record<string, unknown> {
  const set = new SchemaSet();
  const paths: Record<string, Record<string, unknown>> = {};
  const ids = new Map<string, number>();
  for (const route of routes) {
    const t = route.template;
    // OpenAPI has no "{name=pattern}": a variable becomes one parameter named by its field path.
    let path = '';
    let i = 0;
    while (i < t.segments.length) {
      const v = t.variables.find((x) => x.start === i);
      if (v) {
        path += `/{${v.fieldPath.join('.')}}`;
        i = v.end ?? t.segments.length;
        continue;
      }
      const s = t.segments[i]!;
      path += `/${s.kind === 'literal' ? s.value : '*'}`;
      i++;
    }
    if (t.verb) path += `:${t.verb}`;
    const m = route.method;
    const bound = new Set(route.variables.map((v) => v.fields.map((f) => f.name).join('.')));
    const parameters: Schema[] = route.variables.map((v) => ({ name: v.key, in: 'path', required: true, schema: set.singular(v.fields[v.fields.length - 1]!) }));
    if (route.body !== '*') {
      if (route.bodyField) bound.add(route.bodyField.name);
      parameters.push(...queryParameters(set, m.input, bound));
    }
    let requestBody: Schema | undefined;
    if (route.body === '*') requestBody = { required: true, content: { 'application/json': { schema: set.messageRef(m.input) } } };
    else if (route.bodyField) requestBody = { required: true, content: { 'application/json': { schema: set.fieldSchema(route.bodyField) } } };
    const response = route.responseField ? set.fieldSchema(route.responseField) : set.messageRef(m.output);
    const base = `${m.parent.name}_${m.name}`;
    const n = (ids.get(base) ?? 0) + 1;
    ids.set(base, n);
    const operation: Record<string, unknown> = {
      operationId: n === 1 ? base : `${base}${n}`,
      tags: [m.parent.name],
      summary: m.name,
      description: `${m.parent.typeName}/${m.name}; the same RPC is served over gRPC, gRPC-web and Connect.${route.body === '*' && route.variables.length ? ' Path variables win over the same fields in the body.' : ''}`,
      ...(parameters.length ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses: {
        [String(successStatusOf(m))]: { description: successStatusOf(m) === 201 ? 'Created' : 'OK', content: { 'application/json': { schema: response } } },
        default: {
          description: 'An error: the gRPC code as HTTP status (400, 401, 403, 404, 409, 429, 503, ...)',
          content: { 'application/json': { schema: set.ref('google.rpc.Status') } },
        },
      },
      ...(securityOf(m) ? { security: securityOf(m) } : {}),
    };
    (paths[path] ??= {})[route.httpMethod.toLowerCase()] = operation;
  }
  set.schemas['google.rpc.Status'] = {
    type: 'object',
    properties: { code: { type: 'integer', description: 'gRPC status code' }, message: { type: 'string' }, details: { type: 'array', items: WKT['google.protobuf.Any'] } },
    required: ['code', 'message', 'details'],
  };
  return {
    openapi: '3.1.0',
    info,
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(set.schemas).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    },
    security: [{ bearer: [] }],
  };
}

/**
 * The handler of GET /openapi.json: the document is built on first request (from the compiled routes)
 * and its text kept, so later requests cost one write.
 */
export function openApiRoute(routes: readonly RestRoute<unknown>[], info: OpenApiInfo) {
  let text: string | undefined;
  return (_req: unknown, res: { writeHead(status: number, headers: Record<string, string | number>): unknown; end(body: string): unknown }): void => {
    text ??= JSON.stringify(buildOpenApi(routes, info));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'public, max-age=300' });
    res.end(text);
  };
}
