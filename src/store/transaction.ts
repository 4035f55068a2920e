import type { Kysely, Transaction } from 'kysely';
import { DomainError } from '../domain/errors.js';
import type { Database } from './schema.js';

const RETRYABLE = new Set(['40001', '40P01']);

/**
 * Runs one command in one transaction. A serialization failure or deadlock (another writer won) is
 * retried a few times with jitter; if it keeps losing, the caller gets ABORTED and nothing is written.
 */
export async function inTransaction<T>(db: Kysely<Database>, fn: (trx: Transaction<Database>) => Promise<T>, attempts = 5): Promise<T> {
  return retryingConflicts(() => db.transaction().execute(fn), attempts);
}

/**
 * Runs a command (one transaction, or one statement) again when it lost to a concurrent writer
 * (serialization failure or deadlock), a few times with jitter; then ABORTED, with nothing written.
 */
export async function retryingConflicts<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !RETRYABLE.has(code)) throw err;
      if (attempt >= attempts) throw new DomainError('aborted', 'the change conflicted with concurrent changes; retry');
      await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
    }
  }
}

/** True when a database error is a unique violation of the named constraint (or any, without a name). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string; message?: string };
  if (e?.code !== '23505') return false;
  if (!constraint) return true;
  return e.constraint === constraint || (e.message ?? '').includes(constraint);
}

/** The SQLSTATE `passkeyd_refuse()` raises (migration 005). */
const REFUSED = 'PK001';

/** The reason a one-statement command refused itself with `passkeyd_refuse(reason)`, else undefined. */
export function refusal(err: unknown): string | undefined {
  const e = err as { code?: string; message?: string };
  return e?.code === REFUSED ? e.message : undefined;
}
