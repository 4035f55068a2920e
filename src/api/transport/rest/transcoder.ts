import type { DescField, JsonObject, JsonValue } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import type { UniversalHandler } from '@connectrpc/connect/protocol';
import { universalRequestFromNodeRequest } from '@connectrpc/connect-node';
import { HTTP_STATUS_TOO_LARGE, internalError } from '../../../errors.js';
import type { Logger } from '../../../log.js';
import { restKey } from '../../context.js';
import { distinctServices, registryOf } from '../../descriptors.js';
import { jsonProblem } from '../input-limits.js';
import { pathOf, sendJsonText, sendStatus, type ContextValuesOf, type NodeRequest, type NodeResponse, type StatusOptions } from '../http.js';
import { codeFromConnectName, detailToAnyJson } from './connect-error.js';
import { jsonFromText, resolveFieldPath, RestInputError, setAtPath } from './field-values.js';
import { buildRouteTable, successStatusOf, type RestRoute, type RouteTable } from './route-table.js';

/** What the REST transcoder is built from. */
export interface RestTranscoderOptions {
  /** The router's handlers: the very ones serving gRPC, gRPC-web and Connect, interceptors included. */
  handlers: readonly UniversalHandler[];
  contextValues: ContextValuesOf;
  /** Request bodies above this are refused (413) before they are parsed. */
  maxBodyBytes: number;
  /** Request JSON nested deeper than this is refused (400) before it is parsed. */
  maxJsonDepth: number;
  log: Logger;
}

/** A REST request handler plus the route table it serves (for OpenAPI and tests). */
export interface RestTranscoder {
  (req: NodeRequest, res: NodeResponse): void;
  table: RouteTable<UniversalHandler>;
}

// Request headers that describe the client's HTTP framing or would switch the Connect handler's behaviour
// (compression, protocol, timeouts); everything else (authorization, user-agent, x-*) reaches the interceptors.
const DROP_REQUEST_HEADER = /^(?::|host$|content-|accept-encoding$|transfer-encoding$|connection$|keep-alive$|te$|trailer$|upgrade$|expect$|connect-|grpc-)/;
// Response headers of the Connect framing; the rest (retry-after, set by a rate limit) is passed on.
const DROP_RESPONSE_HEADER = /^(?:content-|connect-|grpc-|trailer-)/;

/** A refusal decided before the RPC runs; answered as google.rpc.Status with the code's HTTP status unless `status` says otherwise. */
class HttpFailure extends Error {
  constructor(
    readonly code: Code,
    message: string,
    readonly options: StatusOptions = {},
  ) {
    super(message);
  }
}

const inputError = (message: string) => new HttpFailure(Code.InvalidArgument, message);

/** Ends a response whose headers have gone already (nothing more can be said), or writes JSON text. */
function send(res: NodeResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendJsonText(res, status, body, headers);
}

/** As {@link send}, for an error answer: a google.rpc.Status body through src/errors.ts's tables. */
function sendError(res: NodeResponse, code: Code, message: string, options: StatusOptions = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendStatus(res, code, message, options);
}

/**
 * Reads a request body, refusing it as soon as it is known to exceed the limit: from Content-Length before
 * reading anything, otherwise as the bytes arrive. The rest is not read (the connection is closed instead).
 */
function readBody(req: NodeRequest, max: number): Promise<Buffer> {
  // HTTP/1.1: the unread rest of the body would be taken for the next request, so the connection goes.
  // (HTTP/2 forbids the header; the stream is simply reset.)
  const headers: Record<string, string> = req.httpVersionMajor === 1 ? { connection: 'close' } : {};
  // 413, not RESOURCE_EXHAUSTED's 429: the request itself is too large, retrying will not help.
  const tooLarge = () => new HttpFailure(Code.ResourceExhausted, `request body exceeds ${max} bytes`, { status: HTTP_STATUS_TOO_LARGE, headers });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Field paths (proto names) that the path or the body already set; a query parameter may not set them again. */
function boundPaths(route: RestRoute<unknown>): string[] {
  const out = route.variables.map((v) => v.fields.map((f) => f.name).join('.'));
  if (route.bodyField) out.push(route.bodyField.name);
  return out;
}

function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}.`) || b.startsWith(`${a}.`);
}

/** Builds the request message's proto3 JSON from the path variables, the body and the query string. */
function assembleRequest(route: RestRoute<unknown>, bindings: Map<string, string>, query: URLSearchParams, raw: Buffer, maxJsonDepth: number): JsonObject {
  let parsed: JsonValue | undefined;
  const text = raw.toString('utf8');
  if (text.trim() !== '') {
    if (route.body === '') throw inputError(`${route.httpMethod} ${route.template.source} takes no request body; send the fields as query parameters`);
    // Before JSON.parse: nesting without bound would overflow the stack here or in JSON.stringify below.
    const problem = jsonProblem(raw, maxJsonDepth);
    if (problem) throw inputError(problem);
    try {
      parsed = JSON.parse(text) as JsonValue;
    } catch (err) {
      throw inputError(`request body is not valid JSON: ${(err as Error).message}`);
    }
  }
  let message: JsonObject = {};
  if (route.body === '*') {
    if (parsed !== undefined && !isObject(parsed)) throw inputError('request body must be a JSON object');
    message = (parsed as JsonObject | undefined) ?? {};
  } else if (route.bodyField && parsed !== undefined) {
    setAtPath(message, [route.bodyField], parsed);
  }
  // Path variables win over the same field in the body: the URL names the resource acted on.
  for (const v of route.variables) {
    const leaf = v.fields[v.fields.length - 1]!;
    const value = jsonFromText(leaf, bindings.get(v.key) ?? '', `path variable ${v.key}`);
    setAtPath(message, v.fields, leaf.fieldKind === 'list' ? [value] : value);
  }
  const bound = boundPaths(route);
  const seen = new Set<string>();
  for (const [key, value] of query) {
    if (route.body === '*') throw inputError(`${route.httpMethod} ${route.template.source} takes every field in the JSON body; query parameter "${key}" is not accepted`);
    const fields = resolveFieldPath(route.method.input, key.split('.'));
    if (!fields) throw inputError(`query parameter "${key}" is not a field of ${route.method.input.name}`);
    const protoPath = fields.map((f) => f.name).join('.');
    if (bound.some((b) => overlaps(b, protoPath))) throw inputError(`query parameter "${key}" is already set by the ${route.bodyField ? 'path or body' : 'path'}`);
    const leaf: DescField = fields[fields.length - 1]!;
    const repeated = leaf.fieldKind === 'list';
    if (!repeated && seen.has(protoPath)) throw inputError(`query parameter "${key}" is given more than once`);
    seen.add(protoPath);
    setAtPath(message, fields, jsonFromText(leaf, value, `query parameter "${key}"`), repeated);
  }
  return message;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function readAll(body: AsyncIterable<Uint8Array> | undefined): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * HTTP/JSON transcoding of every RPC that has a `google.api.http` rule. A REST request becomes a Connect
 * unary JSON request (the message assembled from path variables, body and query) handed to the RPC's
 * universal handler, so interceptors (auth, validation, rate limits, logging) and implementation are the
 * very ones gRPC uses. Success: 200 with the response's proto3 JSON. Failure: the gRPC code's HTTP status
 * and a google.rpc.Status JSON body `{"code": <int>, "message": ..., "details": [...]}`.
 */
export function createRestTranscoder(options: RestTranscoderOptions): RestTranscoder {
  const table = buildRouteTable(options.handlers);
  const registry = registryOf(distinctServices(options.handlers));
  const encoder = new TextEncoder();

  const serve = async (req: NodeRequest, res: NodeResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const httpMethod = (req.method ?? 'GET').toUpperCase();
    const found = table.lookup(httpMethod, path);
    if (found.kind === 'not-found') throw new HttpFailure(Code.NotFound, `no REST route for ${httpMethod} ${path}`);
    if (found.kind === 'method-not-allowed') {
      // 405, not UNIMPLEMENTED's 501: the path exists, with other methods.
      throw new HttpFailure(Code.Unimplemented, `${httpMethod} is not allowed on ${path}; allowed: ${found.allowed.join(', ')}`, {
        status: 405,
        headers: { allow: found.allowed.join(', ') },
      });
    }
    const { route, bindings } = found;
    const raw = await readBody(req, options.maxBodyBytes);
    let message: JsonObject;
    try {
      message = assembleRequest(route, bindings, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)), raw, options.maxJsonDepth);
    } catch (err) {
      if (err instanceof RestInputError) throw inputError(err.message);
      throw err;
    }

    const contextValues = options.contextValues(req).set(restKey, true);
    // The body argument is a placeholder: it keeps the adapter from consuming the (already read) stream.
    let base: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      base = universalRequestFromNodeRequest(req, res, null, contextValues);
    } catch {
      throw inputError('the request has no Host header');
    }
    const header = new Headers();
    base.header.forEach((value, name) => {
      if (!DROP_REQUEST_HEADER.test(name)) header.append(name, value);
    });
    header.set('content-type', 'application/json');
    header.set('connect-protocol-version', '1');
    const uRes = await route.handler({
      ...base,
      method: 'POST',
      url: new URL(route.handler.requestPath, base.url).toString(),
      header,
      body: once(encoder.encode(JSON.stringify(message))),
    });
    const out = await readAll(uRes.body);
    const headers: Record<string, string> = {};
    uRes.header?.forEach((value, name) => {
      if (!DROP_RESPONSE_HEADER.test(name)) headers[name] = value;
    });
    if (uRes.status === 200) {
      const ok = successStatusOf(route.method);
      if (!route.responseField) {
        send(res, ok, out.toString('utf8'), headers);
        return;
      }
      const whole = JSON.parse(out.toString('utf8')) as JsonObject;
      send(res, ok, JSON.stringify(whole[route.responseField.jsonName] ?? {}), headers);
      return;
    }
    let error: { code?: unknown; message?: unknown; details?: unknown } = {};
    try {
      error = JSON.parse(out.toString('utf8'));
    } catch {
      // Not a Connect error body (should not happen for a unary JSON call); reported as UNKNOWN below.
    }
    const code = codeFromConnectName(error.code);
    const details = Array.isArray(error.details) ? error.details.map((d) => detailToAnyJson(d, registry)).filter((d): d is JsonValue => d !== undefined) : [];
    const text = typeof error.message === 'string' ? error.message : '';
    sendError(res, code, text, { details, headers });
  };

  const transcoder = ((req: NodeRequest, res: NodeResponse) => {
    serve(req, res).catch((err: unknown) => {
      if (err instanceof HttpFailure) {
        sendError(res, err.code, err.message, err.options);
        return;
      }
      // The path only: a query string may carry a session token.
      options.log.error({ err, path: pathOf(req) }, 'REST transcoding failed');
      const internal = internalError(err);
      sendError(res, internal.code, internal.rawMessage);
    });
  }) as RestTranscoder;
  transcoder.table = table;
  return transcoder;
}
