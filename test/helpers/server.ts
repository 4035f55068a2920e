import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { loadConfig, type Config } from '../../src/config/config.js';
import { mintAdminToken } from '../../src/domain/admin.js';
import { createApp, type App } from '../../src/server/app.js';
import { listen, type RunningServer } from '../../src/server/listen.js';
import { openStore, storeOptions, type Store, type StoreOptions } from '../../src/store/db.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** The PostgreSQL URL tests use; unset means the tests run on embedded PGlite. */
export const TEST_DATABASE_URL = process.env.PASSKEYD_TEST_DATABASE_URL || undefined;
export const BACKEND: 'postgres' | 'pglite' = TEST_DATABASE_URL ? 'postgres' : 'pglite';

/**
 * A fresh, empty PostgreSQL schema, so test files never share tables. It is named after the vitest run
 * (the workers' parent process) and dropped by test/global-setup.ts when the run ends, not here.
 * `drop` is kept for callers.
 */
export async function createSchema(url: string): Promise<{ schema: string; drop(): Promise<void> }> {
  const schema = `t_${process.ppid}_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  if (POOLED) {
    // Behind PgBouncer in transaction mode a search_path in the startup packet does not hold: the
    // schema is the role's (one role per schema, named like it; dropped with it by global-setup).
    await client.query(`create role ${schema} login`);
    await client.query(`alter role ${schema} set search_path = ${schema}`);
    await client.query(`create schema ${schema} authorization ${schema}`);
  } else {
    await client.query(`create schema ${schema}`);
  }
  await client.end();
  return { schema, drop: async () => {} };
}

/**
 * Set by the PgBouncer step of .ci/run: PASSKEYD_TEST_DATABASE_URL is a PgBouncer in transaction mode,
 * so each test schema is selected by its role (see {@link createSchema}), not by the startup packet.
 */
const POOLED = process.env.PASSKEYD_TEST_POOLER === 'pgbouncer';

/** The URL a store of `schema` connects with: as the schema's role when pooled. */
function urlFor(url: string, schema: string): string {
  if (!POOLED) return url;
  const u = new URL(url);
  u.username = schema;
  u.password = '';
  return u.toString();
}

/** A database for one test server: an in-memory PGlite, or a private schema on PostgreSQL. */
export async function openTestStore(
  options: { dataDir?: string; schema?: string; embedded?: boolean; databaseUrl?: string; timeouts?: Pick<StoreOptions, 'connectTimeoutMs' | 'statementTimeoutMs'> } = {},
): Promise<{ store: Store; schema?: string; cleanup(): Promise<void> }> {
  const url = options.databaseUrl ?? TEST_DATABASE_URL;
  if (!url || options.embedded) {
    const store = await openStore({ dataDir: options.dataDir ?? 'memory://' });
    return { store, cleanup: async () => {} };
  }
  const owned = options.schema ? undefined : await createSchema(url);
  const schema = options.schema ?? owned!.schema;
  const preparedStatements = process.env.PASSKEYD_DATABASE_PREPARED_STATEMENTS !== 'false';
  const store = await openStore({ databaseUrl: urlFor(url, schema), schema: POOLED ? undefined : schema, poolSize: 5, preparedStatements, ...options.timeouts });
  return { store, schema, cleanup: async () => void (await owned?.drop()) };
}

export interface TestServer {
  app: App;
  server: RunningServer;
  config: Config;
  /** http://127.0.0.1:PORT */
  url: string;
  schema: string | undefined;
  /** An admin token minted the way `passkeyd admin token` does. */
  adminToken(role?: 'instance_admin' | 'org_admin', org?: string, user?: string, ttlSeconds?: number): Promise<string>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  config?: Record<string, string>;
  /** Reuse a PostgreSQL schema (two instances on one database). */
  schema?: string;
  dataDir?: string;
  /** Use PGlite even when the run targets PostgreSQL (PGlite-specific behaviour). */
  embedded?: boolean;
  /** Another way to the test PostgreSQL (through a proxy). */
  databaseUrl?: string;
}

/** Starts a real passkeyd on 127.0.0.1, port 0, on the test backend. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const config = loadConfig({ port: '0', host: '127.0.0.1', 'log-level': 'silent', ...options.config }, {});
  const { connectTimeoutMs, statementTimeoutMs } = storeOptions(config);
  const timeouts = { connectTimeoutMs, statementTimeoutMs };
  const { store, schema, cleanup } = await openTestStore({
    schema: options.schema,
    dataDir: options.dataDir,
    embedded: options.embedded,
    databaseUrl: options.databaseUrl,
    timeouts,
  });
  const app = await createApp(config, { store, log: pino({ level: process.env.PASSKEYD_TEST_LOG ?? 'silent' }) });
  const server = await listen(app);
  const url = `http://127.0.0.1:${server.port}`;
  return {
    app,
    server,
    config,
    url,
    schema,
    adminToken: (role = 'instance_admin', org, user, ttlSeconds) => mintAdminToken(app.store.db, app.tokens, { role, org, user, ttlSeconds }),
    async close() {
      await server.close();
      await cleanup();
    },
  };
}

/**
 * A test server on PostgreSQL whose connections go through a TCP proxy: `proxy.cut()` is a database
 * outage for this server only, `proxy.restore()` ends it.
 */
export async function startServerBehindProxy(config: Record<string, string> = {}): Promise<TestServer & { proxy: TcpProxy }> {
  const target = new URL(TEST_DATABASE_URL!);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  const viaProxy = new URL(TEST_DATABASE_URL!);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const srv = await startTestServer({ databaseUrl: viaProxy.toString(), config });
  return {
    ...srv,
    proxy,
    async close() {
      await srv.close();
      await proxy.close();
    },
  };
}

/** What {@link useTestServer} starts: options, or a function giving them once earlier `beforeAll`s have run. */
export type TestServerSetup = TestServerOptions | (() => TestServerOptions | Promise<TestServerOptions>);

/** The server of {@link useTestServer}: every property reads the running server, so use it inside tests and hooks. */
export interface TestServerHandle extends Omit<TestServer, 'close'> {
  /** An instance_admin token, minted when the server started. */
  readonly admin: string;
}

/**
 * The test server fixture: registers a `beforeAll` that starts a real passkeyd (see {@link startTestServer})
 * and an `afterAll` that stops it, in the scope it is called in (the file, or a `describe`). `beforeAll`s
 * registered before it run first, so `setup` as a function can use what they made (a webhook's URL).
 * `retries` restarts it when the port a setup function chose was taken meanwhile (EADDRINUSE).
 */
export function useTestServer(setup: TestServerSetup = {}, options: { retries?: number } = {}): TestServerHandle {
  let running: { srv: TestServer; admin: string } | undefined;
  const get = () => {
    if (!running) throw new Error('useTestServer: no server is running here (used outside a test or hook of its scope, or its beforeAll failed)');
    return running;
  };
  beforeAll(async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        const srv = await startTestServer(typeof setup === 'function' ? await setup() : setup);
        try {
          running = { srv, admin: await srv.adminToken() };
        } catch (err) {
          await srv.close();
          throw err;
        }
        return;
      } catch (err) {
        if (attempt >= (options.retries ?? 0) || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  });
  afterAll(async () => {
    const was = running;
    running = undefined;
    await was?.srv.close();
  });
  return {
    get app() {
      return get().srv.app;
    },
    get server() {
      return get().srv.server;
    },
    get config() {
      return get().srv.config;
    },
    get url() {
      return get().srv.url;
    },
    get schema() {
      return get().srv.schema;
    },
    get admin() {
      return get().admin;
    },
    adminToken: (...args) => get().srv.adminToken(...args),
  };
}
