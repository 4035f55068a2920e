import cluster from 'node:cluster';
import os from 'node:os';
import { parse as parseConnectionString } from 'pg-connection-string';
import type { Logger } from '../log.js';

/**
 * How many processes `serve` runs: PGlite (no database URL) is single-process by nature. 0 means one
 * per core, less one when PostgreSQL runs on this machine (a loopback host or a Unix socket), since it
 * needs a core of its own: on two cores shared with PostgreSQL, one worker spent about a quarter less
 * CPU per login than two, with a shorter tail at a steady rate (README, Performance).
 */
export function workerCount(requested: number, databaseUrl: string | undefined, cores = os.availableParallelism()): number {
  if (!databaseUrl) return 1;
  if (requested > 0) return requested;
  return databaseIsLocal(databaseUrl) ? Math.max(1, cores - 1) : cores;
}

/** True when the URL names this machine: localhost, a loopback address, or a Unix socket (as pg reads the URL). */
function databaseIsLocal(databaseUrl: string): boolean {
  let host: string;
  try {
    // No host in the URL: pg takes PGHOST, else localhost.
    host = (parseConnectionString(databaseUrl).host || process.env.PGHOST || 'localhost').toLowerCase();
  } catch {
    return false;
  }
  return host.startsWith('/') || host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * Runs the primary of `serve --workers N`: forks the workers (which share the listening port through
 * node:cluster), replaces a worker that dies, and on SIGTERM/SIGINT asks every worker to drain and
 * waits for them before exiting.
 */
export function runPrimary(count: number, log: Logger, graceSeconds: number): void {
  let stopping = false;
  let deaths: number[] = [];
  // Workers that have stopped accepting. The shared port closes once every live worker has let go of it;
  // then (and only then) the workers may tell their clients to reconnect, and a reconnect is refused.
  const letGo = new Set<number>();
  const releaseIfPortClosed = () => {
    const live = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    if (live.length === 0 || live.some((w) => !letGo.has(w.id))) return;
    // A worker that exits meanwhile cannot take the message (EPIPE): it needs none, so the error goes to
    // the callback, not to an 'error' event that nothing listens for, which would end the primary.
    for (const w of live) if (w.isConnected()) w.send(PORT_CLOSED, () => {});
  };
  cluster.on('message', (worker, message) => {
    if (message !== LISTENER_CLOSED) return;
    letGo.add(worker.id);
    releaseIfPortClosed();
  });
  // Any other failed message to a worker (its channel closing as it exits) is logged, never fatal.
  cluster.on('fork', (worker) => worker.on('error', (err: Error) => log.warn({ pid: worker.process.pid, err: err.message }, 'worker channel error')));
  for (let i = 0; i < count; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    letGo.delete(worker.id);
    releaseIfPortClosed();
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        log.info('all workers stopped');
        process.exit(0);
      }
      return;
    }
    // A worker that cannot start (bad certificate, port taken) would die again at once: back off, and
    // give up when workers keep dying, instead of a fork storm.
    const now = Date.now();
    deaths = deaths.filter((t) => now - t < 60_000);
    deaths.push(now);
    if (deaths.length > count * 5) {
      log.fatal({ deaths: deaths.length }, 'workers keep dying; stopping');
      process.exit(1);
    }
    const delay = Math.min(30_000, 250 * 2 ** (deaths.length - 1));
    log.error({ pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died; starting another');
    setTimeout(() => {
      if (!stopping) cluster.fork();
    }, delay);
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, workers: count }, 'shutting down workers');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    // Each worker bounds its drain by the grace period; one that is still there well after it is stuck.
    setTimeout(
      () => {
        log.error('workers did not stop within the grace period; killing them');
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
        process.exit(1);
      },
      (graceSeconds + 5) * 1000,
    ).unref();
  };
  // Repeated signals (a process manager signalling the whole group, an impatient operator) change
  // nothing: with `once`, the second would kill the primary mid-drain and orphan its workers.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  log.info({ workers: count }, 'passkeyd primary started');
}

const LISTENER_CLOSED = 'passkeyd:listener-closed';
const PORT_CLOSED = 'passkeyd:port-closed';

/**
 * In a worker that has stopped accepting: tells the primary, and resolves once every worker has (node's
 * primary closes the shared port when the last one lets go), or after `maxWaitMs` when only this worker
 * is stopping. Until then, a client told to reconnect could be accepted by the port and cut off when it
 * closes; after, its reconnect is refused, which a client understands.
 */
export function portClosed(maxWaitMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve();
    };
    const onMessage = (message: unknown) => {
      if (message === PORT_CLOSED) done();
    };
    const timer = setTimeout(done, maxWaitMs);
    process.on('message', onMessage);
    try {
      process.send?.(LISTENER_CLOSED, (err: Error | null) => err && done()) ?? done();
    } catch {
      done();
    }
  });
}

export { cluster };
