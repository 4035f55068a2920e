import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
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

/**
 * The final check of a command done in ONE statement of data-modifying CTEs, as a boolean column:
 * true when each named CTE found a row, else `passkeyd_refuse(<name of the first empty one>)`, whose
 * error aborts the statement and so undoes every step. {@link runStatement} turns it into the
 * caller's error.
 */
export function everyStepFound(ctes: readonly string[]): RawBuilder<boolean> {
  const steps = ctes.map((c) => sql`when not exists (select 1 from ${sql.id(c)}) then passkeyd_refuse(${c}::text)`);
  return sql<boolean>`case ${sql.join(steps, sql` `)} else true end`;
}

/**
 * Runs a one-statement command, again when it lost to a concurrent writer; when a step of its
 * {@link everyStepFound} check found nothing, throws the error `refused` names for that step.
 */
export async function runStatement<T>(run: () => Promise<T>, refused: Record<string, () => Error>): Promise<T> {
  try {
    return await retryingConflicts(run);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const step = e?.code === REFUSED && e.message !== undefined ? refused[e.message] : undefined;
    throw step ? step() : err;
  }
}
