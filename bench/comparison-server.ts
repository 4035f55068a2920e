import type http from 'node:http';
import pg from 'pg';

/**
 * How the bench's comparison servers (bench/baseline-server.ts, bench/null-server.ts) start and stop:
 * `setUp` first, then listen on PORT (0: any) and tell the parent bench/run.ts which port; on SIGTERM
 * close the connections and the pool, and exit.
 */
export function runComparisonServer(server: http.Server, pool: pg.Pool, setUp: () => Promise<void>): void {
  const start = async () => {
    await setUp();
    server.keepAliveTimeout = 30_000;
    server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => process.send?.({ type: 'listening', port: (server.address() as { port: number }).port }));
  };
  start().catch((err) => {
    console.error(err);
    process.exit(1);
  });
  process.on('SIGTERM', () => {
    server.close(() => void pool.end().then(() => process.exit(0)));
    server.closeAllConnections();
  });
}

/**
 * A comparison server's database pool: ten connections to DATABASE_URL in the bench's schema, kept open
 * for the run even when idle, as passkeyd's are in the bench (see run.ts: the servers take turns, and a
 * pool closing its idle connections stalled the next server's open-loop phase).
 */
export function comparisonPool(): pg.Pool {
  const schema = process.env.PASSKEYD_DATABASE_SCHEMA ?? 'public';
  return new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10, idleTimeoutMillis: 0, options: `-c search_path=${schema}` });
}
