import http2 from 'node:http2';
import { fromBinary, toBinary, type DescMethodUnary, type DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, createHandlerContext, createServiceImplSpec, type ContextValues, type Interceptor, type MethodImplSpec } from '@connectrpc/connect';
import { invokeUnaryImplementation } from '@connectrpc/connect/protocol';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { specGrpcMessage } from './rest/node-bridge.js';

/** A service as registered on the router: its implementation and interceptors, for the fast path. */
export interface ServiceRegistration {
  service: DescService;
  impl: object;
  interceptors: Interceptor[];
}

/** An HTTP/2 compat request/response pair (what node:http2's request handler receives). */
type H2Request = http2.Http2ServerRequest;
type H2Response = http2.Http2ServerResponse;

interface UnaryEntry {
  spec: MethodImplSpec & { kind: 'unary' };
  method: DescMethodUnary;
  interceptors: Interceptor[];
}

/** What the fast path cannot serve goes back to Connect, with the body bytes it already read. */
export type Fallback = (body: Uint8Array) => void;

const GRPC_PROTO = 'application/grpc+proto';
/** gRPC's message prefix: one flag byte, then the message length as a big-endian uint32. */
const PREFIX = 5;

/**
 * The login's hot path over gRPC, without Connect's per-call machinery: for a plain unary gRPC call
 * (HTTP/2, protobuf, no compression, no deadline header) it reads the single message, runs the very
 * same implementation behind the very same interceptors through Connect's own `invokeUnaryImplementation`
 * (authentication, validation, rate limits, logging, error mapping all apply unchanged), and writes the
 * response with one `respond` and one `sendTrailers`.
 *
 * Why: the profile of `npm run bench` showed Connect's gRPC handler running every unary call through
 * its streaming pipeline (async iterators, several AbortControllers and their DOMExceptions, four
 * `Headers` objects); that was a large share of the service's CPU per login.
 *
 * Anything else (compressed messages, `grpc-timeout`, JSON codec, several messages in one body, bytes
 * that do not decode) is handed to Connect's handler with the bytes read so far, so every protocol
 * detail and error keeps Connect's behaviour.
 */
export function createGrpcUnaryFastPath(registrations: ServiceRegistration[], options: { maxBodyBytes: number; log: Logger; registry: Registry }) {
  const served = new Counter({ name: 'passkeyd_grpc_fast_path_calls_total', help: 'unary gRPC calls served by the fast path (the others go through Connect)', registers: [options.registry] });
  const table = new Map<string, UnaryEntry>();
  for (const r of registrations) {
    const specs = createServiceImplSpec(r.service, r.impl as never);
    for (const method of r.service.methods) {
      if (method.methodKind !== 'unary') continue;
      const spec = specs.methods[method.localName] as UnaryEntry['spec'];
      table.set(`/${r.service.typeName}/${method.name}`, { spec, method: method as DescMethodUnary, interceptors: r.interceptors });
    }
  }

  /** Writes a call's error the way gRPC wants it: status, message and metadata, no body. */
  function respondError(res: H2Response, err: unknown, responseHeader: Headers, responseTrailer: Headers): void {
    const error = err instanceof ConnectError ? err : new ConnectError('internal error', Code.Internal, undefined, undefined, err);
    if (!(err instanceof ConnectError)) options.log.error({ err }, 'rpc handler failed');
    // Headers set on the response before the call (CORS's Vary), as Connect's answer would carry them.
    const fields: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.getHeaders())) if (v !== undefined) fields[k] = String(v);
    fields[':status'] = '200';
    fields['content-type'] = GRPC_PROTO;
    responseHeader.forEach((v, k) => (fields[k] = v));
    responseTrailer.forEach((v, k) => (fields[k] = v));
    const status = new Headers();
    setTrailerStatus(status, error);
    status.forEach((v, k) => (fields[k] = k === 'grpc-message' ? specGrpcMessage(v) : v));
    // Trailers-only: the status travels in the one HEADERS frame that ends the stream.
    const stream = res.stream;
    if (!stream.destroyed && !stream.headersSent) stream.respond(fields, { endStream: true });
  }

  async function serve(entry: UnaryEntry, req: H2Request, res: H2Response, body: Uint8Array, contextValues: ContextValues, fallback: Fallback): Promise<void> {
    let message: ReturnType<typeof fromBinary>;
    try {
      message = fromBinary(entry.method.input, body.subarray(PREFIX));
    } catch {
      fallback(body); // Connect words the decoding error
      return;
    }
    served.inc();
    const stream = res.stream;
    const header = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.charCodeAt(0) === 58 /* ':' */ || v === undefined) continue;
      if (Array.isArray(v)) for (const one of v) header.append(k, one);
      else header.set(k, v);
    }
    const abort = new AbortController();
    const onClose = () => abort.abort(new ConnectError('the client went away', Code.Canceled));
    stream.once('close', onClose);
    const context = createHandlerContext({
      ...entry.spec,
      service: entry.method.parent,
      requestMethod: 'POST',
      protocolName: 'grpc',
      timeoutMs: undefined,
      shutdownSignal: undefined,
      requestSignal: abort.signal,
      requestHeader: header,
      url: `http://${req.authority ?? 'localhost'}${req.url}`,
      responseHeader: { 'content-type': GRPC_PROTO },
      responseTrailer: { 'grpc-status': '0' },
      contextValues,
    });
    let output: Uint8Array;
    try {
      const result = await invokeUnaryImplementation(entry.spec, context, message, entry.interceptors);
      output = toBinary(entry.method.output, result as never);
    } catch (err) {
      stream.off('close', onClose);
      respondError(res, err, context.responseHeader, context.responseTrailer);
      return;
    }
    stream.off('close', onClose);
    if (stream.destroyed || stream.headersSent) return;
    const framed = Buffer.allocUnsafe(PREFIX + output.length);
    framed[0] = 0;
    framed.writeUInt32BE(output.length, 1);
    framed.set(output, PREFIX);
    const fields: Record<string, string> = {};
    context.responseHeader.forEach((v, k) => (fields[k] = v));
    const trailers: Record<string, string> = {};
    context.responseTrailer.forEach((v, k) => (trailers[k] = v));
    // Through the compat response: it sends its trailers when the stream asks for them.
    res.addTrailers(trailers);
    res.writeHead(200, fields);
    res.end(framed);
  }

  return {
    /**
     * Takes a request when it is a plain unary gRPC call to a known method and returns true; otherwise
     * returns false without touching it. A taken request that turns out unusual goes to `fallback`.
     */
    take(req: H2Request, res: H2Response, path: string, contextValues: () => ContextValues, fallback: Fallback): boolean {
      if (req.httpVersionMajor !== 2 || req.method !== 'POST') return false;
      const type = req.headers['content-type'];
      if (type !== 'application/grpc' && type !== GRPC_PROTO) return false;
      const encoding = req.headers['grpc-encoding'];
      if ((encoding !== undefined && encoding !== 'identity') || req.headers['grpc-timeout'] !== undefined) return false;
      const entry = table.get(path);
      if (!entry) return false;
      const chunks: Buffer[] = [];
      let size = 0;
      let handedOver = false;
      const handOver = () => {
        handedOver = true;
        fallback(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      };
      req.on('data', (chunk: Buffer) => {
        if (handedOver) return; // past the limit: Connect has answered from the prefix; drop the rest
        chunks.push(chunk);
        size += chunk.length;
        if (size > options.maxBodyBytes + PREFIX) handOver();
      });
      req.once('end', () => {
        if (handedOver) return;
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        // Exactly one uncompressed message filling the body; anything else is Connect's to judge.
        if (body.length < PREFIX || body[0] !== 0 || body.readUInt32BE(1) !== body.length - PREFIX) {
          fallback(body);
          return;
        }
        serve(entry, req, res, body, contextValues(), fallback).catch((err: unknown) => {
          options.log.error({ err, path }, 'rpc handler failed');
          if (!res.stream.destroyed && !res.stream.headersSent) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        });
      });
      return true;
    },
  };
}

export type GrpcUnaryFastPath = ReturnType<typeof createGrpcUnaryFastPath>;
