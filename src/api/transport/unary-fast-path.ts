import http2 from 'node:http2';
import type { DescMethodUnary, DescService, JsonReadOptions } from '@bufbuild/protobuf';
import { Code, ConnectError, createServiceImplSpec, type ContextValues, type HandlerContext, type Interceptor, type MethodImplSpec } from '@connectrpc/connect';
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  mergeNonProtocolHeaders,
  type Compression,
  type MethodSerializationLookup,
} from '@connectrpc/connect/protocol';
import { codeToHttpStatus, errorToJsonBytes, trailerMux } from '@connectrpc/connect/protocol-connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { Counter, type Registry } from 'prom-client';
import { internalError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { specGrpcMessage } from './grpc-message.js';
import { writeHead, type NodeRequest, type NodeResponse } from './http.js';

/** A service as registered on the router: its implementation and interceptors, for the fast path. */
export interface ServiceRegistration {
  service: DescService;
  impl: object;
  interceptors: Interceptor[];
}

interface UnaryEntry {
  spec: MethodImplSpec & { kind: 'unary' };
  method: DescMethodUnary;
  interceptors: Interceptor[];
  serialization: MethodSerializationLookup<any, any>;
}

/** What the fast path cannot serve goes back to Connect, with the body bytes it already read. */
type Fallback = (body: Uint8Array) => void;

/**
 * The fast path as the RPC adapter sees it: declared here, injected there, so the adapter depends on
 * this module's interface and never the other way round.
 */
export interface UnaryFastPath {
  /**
   * Takes a request when it is a plain unary call to a known method and returns true; otherwise
   * returns false without touching it. A taken request that turns out unusual goes to `fallback`.
   */
  take(req: NodeRequest, res: NodeResponse, path: string, contextValues: () => ContextValues, fallback: Fallback): boolean;
}

/** The router's options that decide how messages are read and written. */
export interface FastPathOptions {
  maxBodyBytes: number;
  jsonOptions: Partial<JsonReadOptions>;
  acceptCompression: Compression[];
  compressMinBytes: number;
  log: Logger;
  registry: Registry;
}

const GRPC_PROTO = 'application/grpc+proto';
/** gRPC's message prefix: one flag byte, then the message length as a big-endian uint32. */
const PREFIX = 5;

/** One wire protocol the fast path speaks: how a call is recognized, read and answered. */
interface Protocol {
  name: 'grpc' | 'connect';
  /** Bytes a body may have beyond the message limit (gRPC's prefix). */
  overhead: number;
  /** The message bytes of a complete body, or undefined when the body is Connect's to judge. */
  unwrap(body: Buffer): Buffer | undefined;
  respond(res: NodeResponse, output: Uint8Array, context: HandlerContext, acceptEncoding: string | undefined): Promise<void>;
  respondError(res: NodeResponse, error: ConnectError, context: HandlerContext): void;
}

/** Headers set on the response before the call (CORS's Vary), as Connect's answer would carry them. */
function presetHeaders(res: NodeResponse): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.getHeaders())) if (v !== undefined) fields[k] = String(v);
  return fields;
}

function toRecord(headers: Headers, into: Record<string, string> = {}): Record<string, string> {
  headers.forEach((v, k) => (into[k] = v));
  return into;
}

const grpc: Protocol = {
  name: 'grpc',
  overhead: PREFIX,
  unwrap(body) {
    // Exactly one uncompressed message filling the body.
    if (body.length < PREFIX || body[0] !== 0 || body.readUInt32BE(1) !== body.length - PREFIX) return undefined;
    return body.subarray(PREFIX);
  },
  async respond(res, output, context) {
    const framed = Buffer.allocUnsafe(PREFIX + output.length);
    framed[0] = 0;
    framed.writeUInt32BE(output.length, 1);
    framed.set(output, PREFIX);
    const h2 = res as http2.Http2ServerResponse;
    // Through the compat response: it sends the trailers when the stream asks for them.
    h2.addTrailers(toRecord(context.responseTrailer));
    h2.writeHead(200, toRecord(context.responseHeader));
    h2.end(framed);
  },
  respondError(res, error, context) {
    const fields = presetHeaders(res);
    fields[':status'] = '200';
    toRecord(context.responseHeader, fields);
    fields['content-type'] = GRPC_PROTO;
    toRecord(context.responseTrailer, fields);
    const status = new Headers();
    setTrailerStatus(status, error);
    status.forEach((v, k) => (fields[k] = k === 'grpc-message' ? specGrpcMessage(v) : v));
    // Trailers-only: the status travels in the one HEADERS frame that ends the stream.
    const stream = (res as http2.Http2ServerResponse).stream;
    if (!stream.destroyed && !stream.headersSent) stream.respond(fields, { endStream: true });
  },
};

function connectProtocol(options: FastPathOptions): Protocol {
  const send = (res: NodeResponse, status: number, header: Headers, body: Uint8Array) => {
    header.set('content-length', String(body.byteLength));
    writeHead(res, status, toRecord(header));
    res.end(body);
  };
  return {
    name: 'connect',
    overhead: 0,
    unwrap: (body) => body,
    async respond(res, output, context, acceptEncoding) {
      let body = output;
      const compression = compressionNegotiate(options.acceptCompression, null, acceptEncoding ?? null, 'Accept-Encoding').response;
      if (compression && body.byteLength >= options.compressMinBytes) {
        body = await compression.compress(body);
        context.responseHeader.set('content-encoding', compression.name);
      }
      send(res, 200, trailerMux(context.responseHeader, context.responseTrailer), body);
    },
    respondError(res, error, context) {
      context.responseHeader.set('content-type', 'application/json');
      if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
      send(res, codeToHttpStatus(error.code), trailerMux(context.responseHeader, context.responseTrailer), errorToJsonBytes(error, options.jsonOptions));
    },
  };
}

const noTimeout = () => undefined;

/** The signal a call's handler sees: aborted when the client goes away before the answer is written. */
interface Gone {
  signal: AbortSignal;
  /** The call no longer needs watching (answered, or handed to Connect, which watches by itself). */
  done(): void;
}

function clientGone(res: NodeResponse): Gone {
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) abort.abort(new ConnectError('the client went away', Code.Canceled));
  };
  res.once('close', onClose);
  return { signal: abort.signal, done: () => res.off('close', onClose) };
}

/** How a request asks to be served: protocol and codec, or undefined when it is Connect's to serve. */
function recognize(req: NodeRequest, connect: Protocol): { protocol: Protocol; binary: boolean; contentType: string } | undefined {
  if (req.method !== 'POST') return undefined;
  const h = req.headers;
  const type = h['content-type'];
  if (req.httpVersionMajor === 2 && (type === 'application/grpc' || type === GRPC_PROTO)) {
    if ((h['grpc-encoding'] !== undefined && h['grpc-encoding'] !== 'identity') || h['grpc-timeout'] !== undefined) return undefined;
    return { protocol: grpc, binary: true, contentType: GRPC_PROTO };
  }
  if (type === 'application/json' || type === 'application/proto') {
    if ((h['content-encoding'] !== undefined && h['content-encoding'] !== 'identity') || h['connect-timeout-ms'] !== undefined) return undefined;
    return { protocol: connect, binary: type === 'application/proto', contentType: type };
  }
  return undefined;
}

/**
 * The login's hot path without Connect's per-call protocol machinery: for a plain unary call over gRPC
 * (HTTP/2, protobuf, no compression, no deadline) or the Connect protocol (POST, JSON or protobuf, no
 * compression, no deadline), it reads the message with Connect's own serializers, runs the very same
 * implementation behind the very same interceptors through Connect's own `invokeUnaryImplementation`
 * (authentication, validation, rate limits, logging and error mapping all apply unchanged), and writes
 * the answer the way Connect's handler would, in one go.
 *
 * Why: the profile of `npm run bench` showed Connect's gRPC handler running each unary call through its
 * streaming pipeline (async iterators, several AbortControllers and their DOMExceptions, four `Headers`
 * objects), and Connect's Node adapter converting every request and response to and from its universal
 * form: a large share of the service's CPU per login.
 *
 * Anything else (compressed bodies, deadlines, gRPC-web, GET requests, several messages in one body,
 * bytes that do not decode) is handed to Connect's handler with the bytes read so far, so every
 * protocol detail and error keeps Connect's behaviour. test/unary-fast-path.test.ts sends each call
 * both ways and compares the answers.
 */
export function createUnaryFastPath(registrations: ServiceRegistration[], options: FastPathOptions): UnaryFastPath {
  const served = new Counter({
    name: 'passkeyd_unary_fast_path_calls_total',
    help: 'unary calls served by the fast path (the others go through Connect)',
    labelNames: ['protocol'],
    registers: [options.registry],
  });
  const counted = { grpc: served.labels('grpc'), connect: served.labels('connect') };
  const limits = { readMaxBytes: options.maxBodyBytes, writeMaxBytes: 0xffffffff };
  const table = new Map<string, UnaryEntry>();
  for (const r of registrations) {
    const specs = createServiceImplSpec(r.service, r.impl as never);
    for (const method of r.service.methods) {
      if (method.methodKind !== 'unary') continue;
      const spec = specs.methods[method.localName] as UnaryEntry['spec'];
      const serialization = createMethodSerializationLookup(method, undefined, options.jsonOptions, limits);
      table.set(`/${r.service.typeName}/${method.name}`, { spec, method: method as DescMethodUnary, interceptors: r.interceptors, serialization });
    }
  }
  const connect = connectProtocol(options);

  async function serve(
    entry: UnaryEntry,
    call: NonNullable<ReturnType<typeof recognize>>,
    req: NodeRequest,
    res: NodeResponse,
    body: Buffer,
    contextValues: ContextValues,
    fallback: Fallback,
    gone: Gone,
  ): Promise<void> {
    const { protocol, binary } = call;
    const bytes = protocol.unwrap(body);
    let message: unknown;
    try {
      if (!bytes || (!binary && bytes.length === 0)) throw new Error('not for the fast path');
      message = entry.serialization.getI(binary).parse(bytes);
    } catch {
      fallback(body); // Connect words the error
      return;
    }
    counted[protocol.name].inc();
    // The request's fields without HTTP/2's pseudo-headers; the context below makes Headers of them.
    const header: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.charCodeAt(0) === 58 /* ':' */ || v === undefined) continue;
      header[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    const authority = (req as http2.Http2ServerRequest).authority ?? req.headers.host ?? 'localhost';
    // What Connect's createHandlerContext makes, less its two AbortControllers per call (a deadline's
    // and one linking it to the request's): the fast path serves no call with a deadline, so the
    // handler's signal is the client's going away, and nothing else aborts it.
    const context: HandlerContext = {
      method: entry.method,
      service: entry.method.parent,
      requestMethod: 'POST',
      protocolName: protocol.name,
      timeoutMs: noTimeout,
      signal: gone.signal,
      requestHeader: new Headers(header),
      url: `http://${authority}${req.url}`,
      responseHeader: new Headers({ 'content-type': call.contentType }),
      responseTrailer: new Headers(protocol === grpc ? { 'grpc-status': '0' } : {}),
      values: contextValues,
    };
    let output: Uint8Array;
    try {
      const result = await invokeUnaryImplementation(entry.spec, context, message as never, entry.interceptors);
      output = entry.serialization.getO(binary).serialize(result);
    } catch (err) {
      gone.done();
      if (res.headersSent || res.destroyed) return;
      if (!(err instanceof ConnectError)) options.log.error({ err }, 'rpc handler failed');
      protocol.respondError(res, err instanceof ConnectError ? err : internalError(err), context);
      return;
    }
    gone.done();
    if (res.headersSent || res.destroyed) return;
    const acceptEncoding = req.headers['accept-encoding'];
    await protocol.respond(res, output, context, Array.isArray(acceptEncoding) ? acceptEncoding.join(',') : acceptEncoding);
  }

  return {
    take(req, res, path, contextValues, fallback) {
      const call = recognize(req, connect);
      if (!call) return false;
      const entry = table.get(path);
      if (!entry) return false;
      const chunks: Buffer[] = [];
      let size = 0;
      let handedOver = false;
      let dropped = 0;
      const gone = clientGone(res);
      const whole = () => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      req.on('data', (chunk: Buffer) => {
        if (handedOver) {
          // Past the limit: Connect answers from what it got. Drop the rest, up to a bound past which
          // the request is cut off (a client that keeps sending is not owed the bandwidth).
          dropped += chunk.length;
          if (dropped > 8 * options.maxBodyBytes) req.destroy();
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
        if (size > options.maxBodyBytes + call.protocol.overhead) {
          handedOver = true;
          gone.done();
          fallback(whole());
        }
      });
      req.once('end', () => {
        if (handedOver) return;
        // A client that reset its stream mid-upload ends it with what arrived: nobody to answer.
        if (gone.signal.aborted || (req as { aborted?: boolean }).aborted) {
          gone.done();
          return;
        }
        const body = whole();
        const declared = req.headers['content-length'];
        if (declared !== undefined && Number(declared) !== body.length) {
          gone.done();
          fallback(body); // Connect words the mismatch
          return;
        }
        serve(
          entry,
          call,
          req,
          res,
          body,
          contextValues(),
          (bytes) => {
            gone.done();
            fallback(bytes);
          },
          gone,
        ).catch((err: unknown) => {
          options.log.error({ err, path }, 'rpc handler failed');
          if ('stream' in res && !res.stream.destroyed && !res.stream.headersSent) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
          else if (!res.headersSent) res.destroy();
        });
      });
      return true;
    },
  };
}
