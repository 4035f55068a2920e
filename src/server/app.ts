import { readFileSync } from 'node:fs';
import { Code, createConnectRouter, createContextValues } from '@connectrpc/connect';
import { compressionBrotli, compressionGzip } from '@connectrpc/connect-node';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { clientAddressKey } from '../api/context.js';
import { authInterceptor } from '../api/interceptors/auth.js';
import { deadlineInterceptor } from '../api/interceptors/deadline.js';
import { errorInterceptor } from '../api/interceptors/errors.js';
import { loggingInterceptor } from '../api/interceptors/logging.js';
import { createOAuthEndpoints } from '../api/oauth/routes.js';
import { rateLimitInterceptor } from '../api/interceptors/rate-limit.js';
import { createRateLimits } from '../store/rate-limits.js';
import { createRoutes } from '../api/router.js';
import type { ServiceDeps } from '../api/services/deps.js';
import { pathOf, sendStatus, type NodeRequest, type NodeResponse } from '../api/transport/http.js';
import { clientFaultCompression, checkedJsonDecoder } from '../api/transport/input-limits.js';
import { createRpcNodeHandler } from '../api/transport/node-adapter.js';
import { openApiRoute } from '../api/transport/rest/openapi.js';
import { createRestTranscoder } from '../api/transport/rest/transcoder.js';
import { createUnaryFastPath } from '../api/transport/unary-fast-path.js';
import { createCallers } from '../auth/callers.js';
import { createTokenService, type TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { recordDueRetirements } from '../domain/admin.js';
import { bootstrap } from '../domain/bootstrap.js';
import { internalError, unavailable } from '../errors.js';
import { orgOfUser } from '../domain/users.js';
import { sweepExpiredSessions } from '../domain/sessions.js';
import { createLogger, type Logger } from '../log.js';
import { deleteExpiredAssertions } from '../store/credentials.js';
import { openStore, storeOptions, type Store } from '../store/db.js';
import { timeLimit, withDeadline } from '../store/deadline.js';
import { migrateToLatest } from '../store/migrate.js';
import { createCors } from './cors.js';
import { createPublicRoutes } from './http-routes.js';
import { createPages } from './pages.js';
import { loadTrustedMetadata, NO_METADATA, type TrustedMetadata } from '../webauthn/metadata.js';

/** The API version the OpenAPI document states (the proto packages' v2). */
const OPENAPI_VERSION = '2.0.0';

/** Largest request body accepted on any protocol. */
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * An HTTP/1.1 request answered before its body was read (too large, unauthenticated) still has bytes in
 * flight: once the response is written, read and discard the rest (up to a bound, past which it is
 * destroyed), so the client reads the answer instead of seeing a connection reset. (HTTP/2 needs none of
 * this: the stream is closed with its session, and shutdown does not wait for it; see listen.ts.)
 */
function stopUnreadBody(req: NodeRequest, res: NodeResponse, limit = 8 * MAX_BODY_BYTES): void {
  if (req.httpVersionMajor !== 1) return;
  res.once('finish', () => {
    if (req.complete || req.destroyed) return;
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) req.destroy();
    });
    req.on('error', () => {});
    req.resume();
  });
}

/** A ready-to-serve passkeyd: its HTTP handler and what it owns. */
export interface App {
  config: Config;
  store: Store;
  tokens: TokenService;
  log: Logger;
  handler: (req: NodeRequest, res: NodeResponse) => void;
  close(): Promise<void>;
}

export interface AppOptions {
  log?: Logger;
  /** An already open store (tests); otherwise opened from the configuration. */
  store?: Store;
  /** The database is migrated and bootstrapped already (cluster workers: the primary did it). */
  migrated?: boolean;
}

/** Opens the database, migrates, bootstraps, and wires every protocol to one handler set. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.logLevel);
  // First, so a BLOB that does not verify stops the start before anything is opened.
  const metadata = config.fidoMdsFile ? await loadTrustedMetadata(config.fidoMdsFile, config.fidoMdsRoot ? readFileSync(config.fidoMdsRoot, 'utf8') : undefined) : NO_METADATA;
  const store = options.store ?? (await openStore(storeOptions(config)));
  try {
    return await wire(config, store, log, options, metadata);
  } catch (err) {
    // A start that failed (the database went away meanwhile) leaves no pool behind: a worker retries.
    if (!options.store) await store.close().catch(() => {});
    throw err;
  }
}

async function wire(config: Config, store: Store, log: Logger, options: AppOptions, metadata: TrustedMetadata): Promise<App> {
  if (!options.migrated) {
    await migrateToLatest(store.db, store.schema);
    await bootstrap(store.db);
  }
  const tokens = await createTokenService(store.db, {
    issuer: config.issuer,
    audience: config.audience,
    onRetirementDue: (kids) => recordDueRetirements(store.db, kids),
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  // Every Bearer credential is verified and its revocable parts looked up per call (src/auth/callers.ts):
  // a user token's session (logout), a machine token's key or secret, a PAT, the roles granted.
  const callers = createCallers(store.db, tokens);
  const deps: ServiceDeps = { config, db: store.db, tokens, callers, log, metadata };
  const rateLimits = await createRateLimits(store, config);
  const callTimeoutMs = config.callTimeoutSeconds * 1000;
  const interceptors = [
    loggingInterceptor(log, registry),
    errorInterceptor(log),
    deadlineInterceptor(callTimeoutMs),
    rateLimitInterceptor(rateLimits),
    authInterceptor(callers, (id) => orgOfUser(store.db, id)),
  ];
  // Expired sessions and abandoned login challenges are only dead weight; every read ignores them.
  const sweeper = setInterval(
    () => {
      sweepExpiredSessions(store.db).catch((err: unknown) => log.warn({ err }, 'sweeping expired sessions failed'));
      rateLimits.sweep().catch((err: unknown) => log.warn({ err }, 'sweeping expired rate-limit counters failed'));
      // A used assertion's jti is kept only until the assertion expires: after that it cannot be replayed.
      deleteExpiredAssertions(store.db).catch((err: unknown) => log.warn({ err }, 'sweeping used JWT-profile assertions failed'));
    },
    10 * 60 * 1000,
  );
  sweeper.unref();
  // Readiness answers within its timeout: a partitioned database must not hold /readyz or health checks.
  const readinessMs = config.readinessTimeoutSeconds * 1000;
  const ping = () =>
    timeLimit(
      withDeadline(readinessMs, () => store.ping()),
      readinessMs,
      () => unavailable('the database did not answer in time'),
    );
  const publicRoutes = createPublicRoutes({ issuer: config.issuer, tokens, ping, registry });
  const notFound = (_req: NodeRequest, res: NodeResponse) => sendStatus(res, Code.NotFound, 'not found');
  // One router, one set of handlers (with their interceptors): the Node adapter serves gRPC, gRPC-web
  // and Connect from it, the REST transcoder hands /v2/... requests to the very same handlers.
  const codecs = {
    readMaxBytes: MAX_BODY_BYTES,
    // Unknown JSON fields are a client mistake (a typo would otherwise be silently dropped).
    // Nesting is limited before parsing, on every protocol: Connect's JSON decoding goes through this decoder.
    jsonOptions: { ignoreUnknownFields: false, textDecoder: checkedJsonDecoder(config.maxJsonDepth) },
    // Bytes that do not decompress are the client's fault (INVALID_ARGUMENT), never INTERNAL.
    acceptCompression: [compressionGzip, compressionBrotli].map(clientFaultCompression),
    // Compressing a 1–2 KiB login response costs more CPU than it saves on any network (the profile of
    // the bench showed zlib on the login path); only large responses (long lists) are worth it.
    compressMinBytes: 32 * 1024,
  };
  const router = createConnectRouter(codecs);
  const registrations = createRoutes(deps, ping, interceptors)(router);
  const contextValues = (req: NodeRequest) => createContextValues().set(clientAddressKey, req.socket?.remoteAddress ?? 'unknown');
  // Plain unary gRPC and Connect calls (the login's two, among others) skip Connect's per-call machinery.
  const fastPath = createUnaryFastPath(registrations, { ...codecs, maxBodyBytes: MAX_BODY_BYTES, log, registry });
  const connect = createRpcNodeHandler(router.handlers, { contextValues, fallback: notFound, log, fastPath });
  const rest = createRestTranscoder({ handlers: router.handlers, contextValues, maxBodyBytes: MAX_BODY_BYTES, maxJsonDepth: config.maxJsonDepth, log });
  publicRoutes.set('/openapi.json', openApiRoute(rest.table.routes, { title: 'passkeyd', version: OPENAPI_VERSION }));
  const cors = createCors(config.origins);
  // POST /oauth/v2/token and /oauth/v2/introspect: plain HTTP forms (RFC 6749, 7523, 7662), server to server.
  const oauth = createOAuthEndpoints({ config, db: store.db, tokens, callers, rateLimits, log });
  // The hosted pages (sign-in, registration link, account): GET/HEAD on /, /register, /account, /assets/*.
  const pages = createPages({ log });

  const handler = (req: NodeRequest, res: NodeResponse) => {
    stopUnreadBody(req, res);
    // Answered before its body is read, such a request must not leave its connection to be reused.
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
    const path = pathOf(req, '/');
    // Before CORS: no browser origin is allowed to call the OAuth endpoints or read their answers.
    if (withDeadline(callTimeoutMs, () => oauth(req, res, path))) return;
    if (cors(req, res)) return;
    if (pages.handle(req, res, path)) return;
    const route = publicRoutes.get(path);
    if (route && (req.method === 'GET' || req.method === 'HEAD')) {
      Promise.resolve(route(req, res)).catch((err) => {
        log.error({ err, path }, 'route failed');
        const internal = internalError(err);
        if (!res.headersSent) sendStatus(res, internal.code, internal.rawMessage);
      });
      return;
    }
    if (path.startsWith('/v2/')) {
      rest(req, res);
      return;
    }
    connect(req, res);
  };

  return {
    config,
    store,
    tokens,
    log,
    handler,
    async close() {
      clearInterval(sweeper);
      tokens.close();
      await store.close();
    },
  };
}
