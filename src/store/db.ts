import { AsyncResource } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Config } from '../config/config.js';
import { waitLimitMs } from './deadline.js';
import { withOwnSchemaIntrospection } from './introspector.js';
import { createPGliteDialect } from './pglite-dialect.js';
import { type AnswerShape, PreparedQuery } from './prepared-query.js';
import type { Database } from './schema.js';

/** The open database: PostgreSQL through `pg`, or embedded PGlite. One code path above this. */
export interface Store {
  db: Kysely<Database>;
  kind: 'postgres' | 'pglite';
  /** The PostgreSQL schema in use, when not the default. */
  schema: string | undefined;
  /** The pg pool on PostgreSQL (shared-state helpers such as the rate limiter use it); undefined on PGlite. */
  pgPool?: pg.Pool | undefined;
  /** Resolves when a trivial query succeeds. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StoreOptions {
  databaseUrl?: string | undefined;
  dataDir?: string;
  /** PostgreSQL pool size. */
  poolSize?: number;
  /** PostgreSQL schema to use (tests give each file its own). */
  schema?: string;
  /** Prepare parameterized statements once per connection (default true). */
  preparedStatements?: boolean;
  /** How long opening a PostgreSQL connection (or waiting for a free one) may take (default 5 s). */
  connectTimeoutMs?: number;
  /** PostgreSQL's `statement_timeout` for passkeyd's sessions; 0 or unset: none. */
  statementTimeoutMs?: number;
  /** How long a connection may sit idle in the pool before it is closed (default 10 s); 0: kept open. */
  idleTimeoutMs?: number;
}

/** The store options the configuration gives. */
export function storeOptions(config: Config): StoreOptions {
  return {
    databaseUrl: config.databaseUrl,
    schema: config.databaseSchema,
    dataDir: config.dataDir,
    preparedStatements: config.databasePreparedStatements,
    connectTimeoutMs: Math.round(config.databaseConnectTimeoutSeconds * 1000),
    statementTimeoutMs: Math.round(config.databaseStatementTimeoutSeconds * 1000),
    idleTimeoutMs: Math.round(config.databaseIdleTimeoutSeconds * 1000),
  };
}

/** How much longer than the statement timeout a query may go unanswered before its connection is given up. */
const GUARD_MARGIN_MS = 1000;

/** A query that got no answer in time: its connection is given up (isDatabaseUnavailable knows the code). */
function noAnswer(): Error {
  return Object.assign(new Error('the database did not answer in time'), { code: 'ETIMEDOUT' });
}

const INT8 = 20;

/** Creates the schema if it is missing (before the pool pins its search path to it). */
async function ensureSchema(url: string, schema: string, connectTimeoutMs = 5000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs });
  // A connection lost during the statement also emits 'error': without a listener, that ends the process.
  client.on('error', () => {});
  await client.connect().catch((err: Error & { code?: string }) => {
    // pg's own connect timeout says only "timeout expired": make it a database outage like the pool's.
    throw err.code === undefined && err.message === 'timeout expired' ? Object.assign(new Error('timeout expired connecting to the database'), { code: 'ETIMEDOUT' }) : err;
  });
  try {
    await client.query(`create schema if not exists "${schema}"`);
  } catch (err) {
    // Two instances starting at once may race on the catalog; the schema exists either way.
    if ((err as { code?: string }).code !== '23505') throw err;
  } finally {
    await client.end();
  }
}

/** Most distinct statements one connection prepares; past that, statements run unprepared. */
const MAX_PREPARED_PER_CONNECTION = 256;

/** Statement names by SQL text (hashing a long text on every call showed in the profile). */
const names = new Map<string, string>();
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `p_${createHash('sha1').update(text).digest('base64url')}`;
    if (names.size < 4 * MAX_PREPARED_PER_CONNECTION) names.set(text, name);
  }
  return name;
}

/**
 * A pg client that survives its connection dropping while it is checked out: the pool listens for
 * errors only on idle clients, so pg's 'error' event would otherwise be an uncaught exception. The
 * queries in flight are rejected anyway, and the pool discards the broken client when it comes back.
 */
class SturdyClient extends pg.Client {
  /** How long any query may wait for its answer, deadline or not (statement timeout plus a margin). */
  private readonly guardMs: number | undefined;

  constructor(config?: string | (pg.ClientConfig & { guardMs?: number })) {
    super(config);
    this.guardMs = typeof config === 'object' ? config.guardMs : undefined;
    this.on('error', () => {});
  }

  /**
   * Every query is bounded by the current deadline (src/store/deadline.ts) and the guard: when neither
   * the answer nor PostgreSQL's own statement timeout came in time, the server or the network is gone
   * (a partition leaves the socket open and silent), so the connection is destroyed. Its queries fail
   * as UNAVAILABLE and the pool discards it, instead of the call waiting for TCP to give up.
   */
  override query(config: any, values?: any, callback?: any): any {
    const ms = waitLimitMs(this.guardMs);
    const cb = typeof values === 'function' ? values : callback;
    // A submitted query object without a callback is its own answer (events), which nothing here awaits.
    if (ms === undefined || (typeof config?.submit === 'function' && typeof cb !== 'function')) return super.query(config, values, callback);
    if (ms <= 0) {
      if (typeof cb === 'function') return void process.nextTick(cb, noAnswer());
      return Promise.reject(noAnswer());
    }
    const timer = setTimeout(() => (this as unknown as { connection: { stream: { destroy(err: Error): void } } }).connection.stream.destroy(noAnswer()), ms);
    if (typeof cb === 'function') {
      const done = (err: Error, res: unknown) => {
        clearTimeout(timer);
        cb(err, res);
      };
      return typeof values === 'function' ? super.query(config, done) : super.query(config, values, done);
    }
    return (super.query(config, values) as Promise<unknown>).then(
      (res) => {
        clearTimeout(timer);
        return res;
      },
      (err: unknown) => {
        clearTimeout(timer);
        throw err;
      },
    );
  }
}

/**
 * Bounds the wait for a pooled client by the current deadline (the pool's own timeout is the connect
 * timeout), and runs a callback in its caller's async context, not in that of whoever released the
 * client it gets: the deadline must follow the query that runs on it.
 */
function boundPoolWaits(pool: pg.Pool): void {
  const connect = pool.connect.bind(pool) as (cb?: (err: Error | undefined, client?: pg.PoolClient, release?: () => void) => void) => Promise<pg.PoolClient> | undefined;
  (pool as { connect: unknown }).connect = (callback?: (err: Error | undefined, client?: pg.PoolClient, release?: () => void) => void) => {
    if (callback) return connect(AsyncResource.bind(callback));
    const ms = waitLimitMs(undefined);
    if (ms === undefined) return connect();
    return new Promise<pg.PoolClient>((resolve, reject) => {
      let late = false;
      const timer = setTimeout(
        () => {
          late = true;
          reject(Object.assign(new Error('timeout exceeded when trying to connect'), { code: 'ETIMEDOUT' }));
        },
        Math.max(0, ms),
      );
      connect((err, client) => {
        clearTimeout(timer);
        if (late) client?.release();
        else if (err || !client) reject(err);
        else resolve(client);
      });
    });
  };
}

/**
 * A pg client that prepares every parameterized statement once per connection (named by a hash of its
 * text), so PostgreSQL parses a hot statement once instead of on every call: the login's statements
 * are long CTE chains, and parsing and planning them was half of the database's CPU per login.
 */
class PreparingClient extends SturdyClient {
  private readonly prepared = new Set<string>();
  /** Statements this connection must not use prepared any more (their plan went stale). */
  private readonly stale = new Set<string>();
  /** The answer's columns of each statement prepared here, so runs after the first skip Describe (prepared-query.ts). */
  private readonly shapes = new Map<string, AnswerShape>();

  override query(config: any, values?: any, callback?: any): any {
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0 && callback === undefined) {
      const name = statementName(config);
      if (!this.stale.has(name) && (this.prepared.has(name) || this.prepared.size < MAX_PREPARED_PER_CONNECTION)) {
        this.prepared.add(name);
        return new Promise<pg.QueryResult>((resolve, reject) =>
          super.query(new PreparedQuery(name, config, values, this.shapes), (err: Error | null, res: pg.QueryResult) => (err ? reject(err) : resolve(res))),
        ).catch((err: { code?: string }) => {
          // A table changed under a prepared statement (another instance migrated: "cached plan must
          // not change result type"), or the server lost it: from now on run it unprepared here.
          if (err?.code !== '0A000' && err?.code !== '26000') throw err;
          this.stale.add(name);
          this.shapes.delete(name);
          return super.query(config, values);
        });
      }
    }
    return super.query(config, values, callback);
  }
}

/**
 * A pg client that prepares nothing, not even the named statements a library asks for (the PostgreSQL
 * rate limiter names its queries): behind a pooler in transaction mode (PgBouncer) a statement prepared
 * on one server connection is missing on the next, so every query goes unnamed, parsed where it runs.
 */
class UnpreparedClient extends SturdyClient {
  override query(config: any, values?: any, callback?: any): any {
    if (config !== null && typeof config === 'object' && typeof config.name === 'string' && typeof config.submit !== 'function') {
      const { name: _name, ...unnamed } = config;
      return super.query(unnamed, values, callback);
    }
    return super.query(config, values, callback);
  }
}

/** Runs one statement with its values bound and answers its rows. */
export type DirectQuery = (sql: string, parameters: unknown[]) => Promise<unknown[]>;

const directQueries = new WeakMap<Kysely<Database>, DirectQuery>();

/**
 * How to run a statement on `db` straight on its PostgreSQL pool, without Kysely's executor, or
 * undefined (PGlite; a transaction, which is another object and must run on its own connection). For
 * statements compiled once (statement.ts): the executor's connection provider, its connection wrapper
 * and its result mapping were 2.5% of the service's on-CPU samples in the login bench, for nothing a
 * compiled statement needs. The pool is the same, so its deadline bounds (boundPoolWaits) apply.
 */
export function directQuery(db: Kysely<Database>): DirectQuery | undefined {
  return directQueries.get(db);
}

/** Opens the database named by the options: PostgreSQL when a URL is given, PGlite otherwise. */
export async function openStore(options: StoreOptions): Promise<Store> {
  let db: Kysely<Database>;
  let kind: Store['kind'];
  let pgPool: pg.Pool | undefined;
  if (options.databaseUrl) {
    kind = 'postgres';
    if (options.schema) await ensureSchema(options.databaseUrl, options.schema, options.connectTimeoutMs);
    const pool = new pg.Pool({
      ...(options.preparedStatements === false ? { Client: UnpreparedClient } : { Client: PreparingClient }),
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs, guardMs: options.statementTimeoutMs + GUARD_MARGIN_MS } : {}),
      ...(options.schema ? { options: `-c search_path="${options.schema}"` } : {}),
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client that loses its server must not crash the process; the pool replaces it.
    pool.on('error', () => {});
    boundPoolWaits(pool);
    pgPool = pool;
    db = new Kysely<Database>({ dialect: withOwnSchemaIntrospection(new PostgresDialect({ pool })) });
    directQueries.set(db, async (text, parameters) => {
      const client = await pool.connect();
      try {
        return (await client.query(text, parameters)).rows;
      } finally {
        // A client whose connection broke is not queryable any more, and the pool discards it.
        client.release();
      }
    });
  } else {
    kind = 'pglite';
    const dir = options.dataDir ?? './data';
    if (dir !== 'memory://') mkdirSync(dir, { recursive: true });
    const pglite = new PGlite(dir === 'memory://' ? undefined : dir, {
      parsers: { [INT8]: (v: string) => Number(v) },
    });
    await pglite.waitReady;
    db = new Kysely<Database>({ dialect: withOwnSchemaIntrospection(createPGliteDialect(pglite)) });
  }
  return {
    db,
    kind,
    schema: options.databaseUrl ? options.schema : undefined,
    pgPool,
    async ping() {
      await sql`select 1`.execute(db);
    },
    async close() {
      await db.destroy();
    },
  };
}
