import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from './schema.js';
import { retryingConflicts } from './transaction.js';

/**
 * One step of a command done in ONE statement of data-modifying CTEs: its name (the CTE's), its SQL,
 * and, when finding no row there means the command cannot go on, the error the caller gets. A step is
 * declared once, here, so its name, its SQL and its refusal cannot drift apart.
 */
export interface Step {
  name: string;
  body: RawBuilder<unknown>;
  /** Set when the step must find (or change) a row: otherwise the whole statement is refused. */
  refusal?: (() => Error) | undefined;
}

/** The SQLSTATE `passkeyd_refuse()` raises (migration 005). */
const REFUSED = 'PK001';

/**
 * Runs a command as ONE statement (atomic on its own, one round trip, no BEGIN/COMMIT): `with <steps>
 * select <ok>, <tail>`. When a step with a refusal found nothing, `<ok>` calls `passkeyd_refuse(<its
 * name>)`, whose error aborts the statement and so undoes every step; the caller gets that step's
 * refusal. `tail` is the rest of the final SELECT (columns, FROM ...); it must yield at least one row
 * for the check to run, typically `... from (select 1) one left join <step> on true`. A statement that
 * lost to a concurrent writer (serialization failure, deadlock) runs again, a few times.
 */
export async function runSteps<R>(db: Kysely<Database>, steps: readonly Step[], tail: RawBuilder<unknown>): Promise<R[]> {
  const refusals = new Map<string, () => Error>();
  for (const s of steps) if (s.refusal) refusals.set(s.name, s.refusal);
  const ctes = sql.join(steps.map((s) => sql`${sql.id(s.name)} as (${s.body})`));
  const checks = [...refusals.keys()].map((name) => sql`when not exists (select 1 from ${sql.id(name)}) then passkeyd_refuse(${name}::text)`);
  const ok = checks.length ? sql`case ${sql.join(checks, sql` `)} else true end as ok, ` : sql``;
  try {
    const { rows } = await retryingConflicts(() => sql<R>`with ${ctes} select ${ok}${tail}`.execute(db));
    return rows;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const refusal = e?.code === REFUSED && e.message !== undefined ? refusals.get(e.message) : undefined;
    throw refusal ? refusal() : err;
  }
}
