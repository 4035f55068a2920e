import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { NodeRequest, NodeResponse } from '../api/transport/http.js';
import type { App } from './app.js';
import { answerClientError } from './client-error.js';

/** The HTTP/2 connection preface a prior-knowledge client sends first. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const SNIFF_TIMEOUT_MS = 10_000;

export interface RunningServer {
  port: number;
  /** The extra HTTP/2-only port, when configured. */
  grpcPort: number | undefined;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), then closes the app. */
  close(): Promise<void>;
}

/**
 * Serves every protocol on one port. In cleartext, the first bytes of a connection decide: the HTTP/2
 * preface goes to the HTTP/2 server (gRPC, and Connect/gRPC-web over h2c), anything else to the HTTP/1.1
 * server (curl, browsers, gRPC-web, Connect, REST). With TLS, ALPN decides.
 */
export async function listen(app: App): Promise<RunningServer> {
  const { config, handler, log } = app;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  // In flight = its response is not written yet. An HTTP/2 compat response only closes with its stream,
  // which a client may keep open uploading a body nobody reads: watch the stream's writable side.
  const tracked = (req: NodeRequest, res: NodeResponse) => {
    inFlight++;
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      inFlight--;
      if (inFlight === 0) drained?.();
    };
    res.once('close', done);
    ('stream' in req ? req.stream : res).once('finish', done);
    handler(req, res);
  };

  const h1 = http.createServer({ requestTimeout: 60_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 }, tracked);
  const h2options: http2.ServerOptions = { settings: { maxConcurrentStreams: 1000 }, maxSessionMemory: 64 };
  const h2 = config.tlsCert
    ? http2.createSecureServer({ ...h2options, allowHTTP1: true, cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey!) }, tracked)
    : http2.createServer(h2options, tracked);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  for (const s of [h1, h2]) s.on('clientError', answerClientError);

  const sniff = (socket: net.Socket) => {
    socket.setNoDelay(true);
    let seen: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    // Read in paused mode and push the bytes back: the HTTP/2 session then takes the socket over with
    // its preface intact (resuming the socket here would steal bytes from it).
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
      if (seen.length === 0) return;
      const n = Math.min(seen.length, H2_PREFACE.length);
      const h2prefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2prefix && seen.length < H2_PREFACE.length) return; // not decided yet
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.unshift(seen);
      (h2prefix ? h2 : h1).emit('connection', socket);
    };
    const onError = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('readable', onReadable);
    socket.on('error', onError);
  };

  const front: net.Server = config.tlsCert ? (h2 as unknown as net.Server) : net.createServer(sniff);
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(config.port, config.host, () => resolve());
  });
  const port = (front.address() as net.AddressInfo).port;

  let grpcServer: http2.Http2Server | undefined;
  let grpcPort: number | undefined;
  if (config.grpcPort && !config.tlsCert) {
    grpcServer = http2.createServer(h2options, tracked);
    grpcServer.on('session', (s) => {
      sessions.add(s);
      s.once('close', () => sessions.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      grpcServer!.once('error', reject);
      grpcServer!.listen(config.grpcPort, config.host, () => resolve());
    });
    grpcPort = (grpcServer.address() as net.AddressInfo).port;
  }
  log.info({ port, grpcPort, host: config.host, tls: Boolean(config.tlsCert), database: app.store.kind }, 'passkeyd listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    grpcPort,
    close() {
      closing ??= (async () => {
        front.close();
        grpcServer?.close();
        h1.close();
        if (front !== (h2 as unknown)) h2.close();
        // Idle keep-alive connections go now; busy ones after their response.
        h1.closeIdleConnections();
        for (const s of sessions) s.close();
        if (inFlight > 0) {
          await new Promise<void>((resolve) => {
            drained = resolve;
            setTimeout(resolve, config.shutdownGraceSeconds * 1000).unref();
          });
        }
        h1.closeAllConnections();
        for (const s of sessions) s.destroy();
        await app.close();
        log.info('passkeyd stopped');
      })();
      return closing;
    },
  };
}
