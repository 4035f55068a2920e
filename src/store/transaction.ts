import type { Kysely, Transaction } from 'kysely';
import { aborted } from '../errors.js';
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
      if (attempt >= attempts) throw aborted('the change conflicted with concurrent changes; retry');
      await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
    }
  }
}

/**
 * Runs `fn`; a unique violation of one of the named constraints becomes that constraint's error (the
 * store's one mapping from "the database said: duplicate" to an answer the caller understands).
 * `'*'` stands for any unique violation.
 */
export async function mappingDuplicates<T>(fn: () => Promise<T>, errors: Record<string, () => Error>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err as { code?: string; constraint?: string; message?: string };
    if (e?.code === '23505') {
      for (const [constraint, error] of Object.entries(errors)) {
        if (constraint === '*' || e.constraint === constraint || (e.message ?? '').includes(constraint)) throw error();
      }
    }
    throw err;
  }
}
