import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The deadline of the work in progress (a call, a readiness check), carried through its async calls so
 * the database layer can bound what it waits for: a pool slot, a connection, a query's answer. Without
 * it, a PostgreSQL whose sockets stay open but silent (a network partition) holds every call for as
 * long as TCP takes to give up, which is many minutes.
 */
interface Limit {
  /** Date.now() by which the work must be done; Infinity for none. */
  at: number;
  /** Migrations and the lock that serializes them wait as long as they need: no statement timeout either. */
  unbounded?: boolean;
}

const current = new AsyncLocalStorage<Limit>();

/** Runs `fn` with a deadline `timeoutMs` from now, or the current one when that is earlier. */
export function withDeadline<T>(timeoutMs: number, fn: () => T): T {
  const at = Date.now() + timeoutMs;
  const outer = current.getStore();
  return current.run(outer && outer.at < at ? outer : { at }, fn);
}

/** Runs `fn` with no deadline and no statement timeout (migrations). */
export function withoutTimeouts<T>(fn: () => T): T {
  return current.run({ at: Number.POSITIVE_INFINITY, unbounded: true }, fn);
}

/**
 * How long a database wait may last from now: the time left before the current deadline, or
 * `fallbackMs` when that is shorter or there is none; undefined when nothing bounds it.
 */
export function waitLimitMs(fallbackMs: number | undefined): number | undefined {
  const limit = current.getStore();
  if (limit?.unbounded) return undefined;
  const left = limit && Number.isFinite(limit.at) ? limit.at - Date.now() : undefined;
  if (left === undefined) return fallbackMs;
  return fallbackMs === undefined ? left : Math.min(left, fallbackMs);
}

/**
 * Settles as `work` does, or rejects with `timeoutError()` after `ms`, whichever is first. A failure of
 * `work` after that is ignored: never an unhandled rejection.
 */
export function timeLimit<T>(work: Promise<T>, ms: number, timeoutError: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeoutError()), Math.max(0, ms));
  });
  work.catch(() => {});
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
