import { createConnectRouter, createContextValues } from '@connectrpc/connect';
import { compressionBrotli, compressionGzip } from '@connectrpc/connect-node';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { clientAddressKey } from '../api/context.js';
import { authInterceptor } from '../api/interceptors/auth.js';
import { errorInterceptor } from '../api/interceptors/errors.js';
import { loggingInterceptor } from '../api/interceptors/logging.js';
import { createRpcNodeHandler, type NodeServerRequest } from '../api/rest/node-bridge.js';
import { createRestTranscoder } from '../api/rest/transcoder.js';
import { createRoutes } from '../api/router.js';
import type { ServiceDeps } from '../api/services/deps.js';
import { createTokenService, type TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { bootstrap } from '../domain/bootstrap.js';
import { orgOfUser } from '../domain/orgs.js';
import { createLogger, type Logger } from '../log.js';
import { openStore, type Store } from '../store/db.js';
import { migrateToLatest } from '../store/migrate.js';
import { createCors } from './cors.js';
import { createPublicRoutes, sendJson, type NodeRequest, type NodeResponse } from './http-routes.js';

/** Largest request body accepted on any protocol. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Reads and discards what is left of a request body, up to a bound; past it the connection goes. */
function drain(req: NodeRequest, limit = 8 * MAX_BODY_BYTES): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > limit) req.destroy();
  });
  req.on('error', () => {});
  req.resume();
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
}

/** Opens the database, migrates, bootstraps, and wires every protocol to one handler set. */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.logLevel);
  const store = options.store ?? (await openStore({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir }));
  await migrateToLatest(store.db, store.schema);
  await bootstrap(store.db);
  const tokens = await createTokenService(store.db, { issuer: config.issuer, audience: config.audience });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const deps: ServiceDeps = { config, db: store.db, tokens, log };
  const interceptors = [
    loggingInterceptor(log, registry),
    errorInterceptor(log),
    authInterceptor(tokens, (id) => orgOfUser(store.db, id), async () => {}),
  ];
  const ping = () => store.ping();
  const publicRoutes = createPublicRoutes({ issuer: config.issuer, tokens, ping, registry });
  const notFound = (_req: NodeRequest, res: NodeResponse) => sendJson(res, 404, { code: 5, message: 'not found', details: [] });
  // One router, one set of handlers (with their interceptors): the Node adapter serves gRPC, gRPC-web
  // and Connect from it, the REST transcoder hands /v2/... requests to the very same handlers.
  const router = createConnectRouter({
    readMaxBytes: MAX_BODY_BYTES,
    // Unknown JSON fields are a client mistake (a typo would otherwise be silently dropped).
    jsonOptions: { ignoreUnknownFields: false },
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  createRoutes(deps, ping, interceptors)(router);
  const contextValues = (req: NodeServerRequest) => createContextValues().set(clientAddressKey, req.socket?.remoteAddress ?? 'unknown');
  const connect = createRpcNodeHandler(router.handlers, { contextValues, fallback: notFound as any, log });
  const rest = createRestTranscoder({ handlers: router.handlers, contextValues, maxBodyBytes: MAX_BODY_BYTES, log });
  const cors = createCors(config.origins);

  const handler = (req: NodeRequest, res: NodeResponse) => {
    // A request refused before its body was read (too large, unauthenticated) still has bytes in
    // flight; draining them lets the client read the answer instead of seeing a connection reset.
    res.once('finish', () => {
      if (!req.complete && !req.destroyed) drain(req);
    });
    // Answered before its body is read, such a request must not leave its connection to be reused.
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
    if (cors(req, res)) return;
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const route = publicRoutes.get(path);
    if (route && (req.method === 'GET' || req.method === 'HEAD')) {
      Promise.resolve(route(req, res)).catch((err) => {
        log.error({ err, path }, 'route failed');
        if (!res.headersSent) sendJson(res, 500, { code: 13, message: 'internal error', details: [] });
      });
      return;
    }
    if (path.startsWith('/v2/')) {
      rest(req as any, res as any);
      return;
    }
    connect(req as any, res as any);
  };

  return {
    config,
    store,
    tokens,
    log,
    handler,
    async close() {
      tokens.close();
      await store.close();
    },
  };
}
