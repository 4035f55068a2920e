import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { clientAddressKey } from '../api/context.js';
import { authInterceptor } from '../api/interceptors/auth.js';
import { errorInterceptor } from '../api/interceptors/errors.js';
import { loggingInterceptor } from '../api/interceptors/logging.js';
import { createRoutes } from '../api/router.js';
import type { ServiceDeps } from '../api/services/deps.js';
import { createTokenService, type TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { bootstrap } from '../domain/bootstrap.js';
import { orgOfUser } from '../domain/orgs.js';
import { createLogger, type Logger } from '../log.js';
import { openStore, type Store } from '../store/db.js';
import { migrateToLatest } from '../store/migrate.js';
import { createPublicRoutes, sendJson, type NodeRequest, type NodeResponse } from './http-routes.js';

/** Largest request body accepted on any protocol. */
export const MAX_BODY_BYTES = 1024 * 1024;

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
  const connect = connectNodeAdapter({
    routes: createRoutes(deps, ping, interceptors),
    readMaxBytes: MAX_BODY_BYTES,
    // Unknown JSON fields are a client mistake (a typo would otherwise be silently dropped).
    jsonOptions: { ignoreUnknownFields: false },
    contextValues: (req) => createContextValues().set(clientAddressKey, req.socket?.remoteAddress ?? 'unknown'),
    fallback: notFound as any,
  });

  const handler = (req: NodeRequest, res: NodeResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const route = publicRoutes.get(path);
    if (route && (req.method === 'GET' || req.method === 'HEAD')) {
      Promise.resolve(route(req, res)).catch((err) => {
        log.error({ err, path }, 'route failed');
        if (!res.headersSent) sendJson(res, 500, { code: 13, message: 'internal error', details: [] });
      });
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
