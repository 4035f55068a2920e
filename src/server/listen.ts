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
  /**
   * Stops accepting, lets in-flight requests finish (up to the grace period), then closes the app.
   * `idleLingerMs`: how long idle HTTP/1.1 connections stay open meanwhile (a request on one is answered,
   * with `Connection: close`) before they are closed; SIGTERM gives clients a moment, tests none.
   */
  close(idleLingerMs?: number): Promise<void>;
}

/**
 * Serves every protocol on one port. In cleartext, the first bytes of a connection decide: the HTTP/2
 * preface goes to the HTTP/2 server (gRPC, and Connect/gRPC-web over h2c), anything else to the HTTP/1.1
 * server (curl, browsers, gRPC-web, Connect, REST). With TLS, ALPN decides.
 */
export interface ListenOptions {
  /**
   * Resolves once the listening port is closed for good, not only this process's hold on it. A cluster
   * worker's port lives on in the primary until every worker lets go; clients are told to reconnect only
   * after that, so their reconnect is refused rather than accepted and then cut off.
   */
  portClosed?: (maxWaitMs: number) => Promise<void>;
}

export async function listen(app: App, options: ListenOptions = {}): Promise<RunningServer> {
  const { config, handler, log } = app;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  // Draining (after close()): every HTTP/1.1 response says `Connection: close`, and an HTTP/1.1
  // connection is closed once it is idle; HTTP/2 sessions got GOAWAY. `busy` counts, per HTTP/1.1
  // connection, the requests whose response is not written yet.
  let draining = false;
  let closeIdleNow = false;
  const busy = new Map<net.Socket, number>();
  const h1sockets = new Set<net.Socket>();
  const trackH1 = (socket: net.Socket) => {
    h1sockets.add(socket);
    socket.once('close', () => {
      h1sockets.delete(socket);
      busy.delete(socket);
      maybeDrained();
    });
  };
  const closeIdle = () => {
    for (const socket of h1sockets) if (!busy.get(socket)) socket.destroySoon();
  };
  const maybeDrained = () => {
    if (draining && inFlight === 0 && h1sockets.size === 0 && sessions.size === 0) drained?.();
  };
  // In flight = its response is not written yet. An HTTP/2 compat response only closes with its stream,
  // which a client may keep open uploading a body nobody reads: watch the stream's writable side.
  const tracked = (req: NodeRequest, res: NodeResponse) => {
    inFlight++;
    const socket = req.httpVersionMajor === 1 ? req.socket : undefined;
    if (socket) {
      if (!h1sockets.has(socket)) trackH1(socket);
      busy.set(socket, (busy.get(socket) ?? 0) + 1);
      if (draining) res.setHeader('connection', 'close');
      else open.add(res);
    }
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      inFlight--;
      if (socket) {
        open.delete(res);
        busy.set(socket, (busy.get(socket) ?? 1) - 1);
        if (closeIdleNow) setImmediate(closeIdle);
      }
      maybeDrained();
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
  /** HTTP/1.1 responses not yet begun when draining started: they get `Connection: close` then. */
  const open = new Set<NodeResponse>();
  const addSession = (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.once('close', () => {
      sessions.delete(s);
      maybeDrained();
    });
    // A session that starts while draining (its connection was accepted just before) is told at once.
    if (draining) s.close();
  };
  h2.on('session', addSession);
  // TLS: a connection ALPN gave to HTTP/1.1 is drained as a cleartext one is.
  h2.on('secureConnection', (socket: net.Socket & { alpnProtocol?: string | false }) => {
    if (socket.alpnProtocol !== 'h2') trackH1(socket);
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
      if (!h2prefix) trackH1(socket);
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
    grpcServer.on('session', addSession);
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
    close(idleLingerMs = 0) {
      closing ??= (async () => {
        const graceMs = config.shutdownGraceSeconds * 1000;
        const until = Date.now() + graceMs;
        // No new connections (net.Server's own close: with TLS, the front is the HTTP/2 server, whose
        // close() would also drop idle HTTP/1.1 connections at once, racing a request a client is sending
        // on one). Requests go on being served as usual until the port is closed for good.
        net.Server.prototype.close.call(front);
        grpcServer?.close();
        await options.portClosed?.(Math.min(5000, graceMs / 2));
        // Then HTTP/2 sessions get GOAWAY (their streams in flight finish), and every HTTP/1.1 response
        // from now on says `Connection: close`, so a keep-alive client opens no new request on it.
        draining = true;
        for (const s of sessions) s.close();
        for (const res of open) if (!res.headersSent) res.setHeader('connection', 'close');
        open.clear();
        await new Promise<void>((resolve) => {
          drained = resolve;
          // Idle HTTP/1.1 connections may still carry a request a client sent before it learnt of the
          // drain: they are closed (and each one that goes idle later) after the linger.
          const linger = setTimeout(
            () => {
              closeIdleNow = true;
              closeIdle();
              maybeDrained();
            },
            Math.min(idleLingerMs, graceMs),
          );
          linger.unref();
          setTimeout(resolve, Math.max(0, until - Date.now())).unref();
          maybeDrained();
        });
        // Past the grace period: whatever is left is cut.
        h1.close();
        if (front !== (h2 as unknown)) h2.close();
        h1.closeAllConnections();
        for (const socket of h1sockets) socket.destroy();
        for (const s of sessions) s.destroy();
        await app.close();
        log.info('passkeyd stopped');
      })();
      return closing;
    },
  };
}
