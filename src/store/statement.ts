import { CompiledQuery, sql, type Compilable, type Kysely, type RawBuilder } from 'kysely';
import { directQuery } from './db.js';
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

/** `with <steps> select <ok>, <tail>`, and the refusal of each step that has one (see {@link runSteps}). */
function stepsQuery<R>(steps: readonly Step[], tail: RawBuilder<unknown>): { query: RawBuilder<R>; refusals: Map<string, () => Error> } {
  const refusals = new Map<string, () => Error>();
  for (const s of steps) if (s.refusal) refusals.set(s.name, s.refusal);
  const ctes = sql.join(steps.map((s) => sql`${sql.id(s.name)} as (${s.body})`));
  const checks = [...refusals.keys()].map((name) => sql`when not exists (select 1 from ${sql.id(name)}) then passkeyd_refuse(${name}::text)`);
  const ok = checks.length ? sql`case ${sql.join(checks, sql` `)} else true end as ok, ` : sql``;
  return { query: sql<R>`with ${ctes} select ${ok}${tail}`, refusals };
}

/** Runs a steps statement, again after losing to a concurrent writer, and turns a step's refusal into its error. */
async function executeSteps<R>(run: () => Promise<{ rows: R[] }>, refusalOf: (step: string) => (() => Error) | undefined): Promise<R[]> {
  try {
    return (await retryingConflicts(run)).rows;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const refusal = e?.code === REFUSED && e.message !== undefined ? refusalOf(e.message) : undefined;
    throw refusal ? refusal() : err;
  }
}

/**
 * Runs a command as ONE statement (atomic on its own, one round trip, no BEGIN/COMMIT): `with <steps>
 * select <ok>, <tail>`. When a step with a refusal found nothing, `<ok>` calls `passkeyd_refuse(<its
 * name>)`, whose error aborts the statement and so undoes every step; the caller gets that step's
 * refusal. `tail` is the rest of the final SELECT (columns, FROM ...); it must yield at least one row
 * for the check to run, typically `... from (select 1) one left join <step> on true`. A statement that
 * lost to a concurrent writer (serialization failure, deadlock) runs again, a few times. `raised`: the
 * errors for reasons a step's own SQL may give passkeyd_refuse() (a check made on a row as updated).
 */
export async function runSteps<R>(db: Kysely<Database>, steps: readonly Step[], tail: RawBuilder<unknown>, raised: Readonly<Record<string, () => Error>> = {}): Promise<R[]> {
  const { query, refusals } = stepsQuery<R>(steps, tail);
  return executeSteps(
    () => query.execute(db),
    (name) => refusals.get(name) ?? raised[name],
  );
}

/** Where a value goes in a compiled statement: built into it in place of the value, bound at each run. */
class Slot {
  constructor(readonly key: string) {}
}

/** An object whose every property is the slot of that name: a statement built with it takes its values from the run's. */
function slots<V extends object>(): V {
  return new Proxy({}, { get: (_, key) => (typeof key === 'string' ? new Slot(key) : undefined) }) as V;
}

interface Compiled {
  sql: string;
  /** Per parameter: the key of its value, or the constant the build put there. */
  params: ({ key: string } | { constant: unknown })[];
}

function compiledOf(query: { sql: string; parameters: readonly unknown[] }): Compiled {
  return { sql: query.sql, params: query.parameters.map((p) => (p instanceof Slot ? { key: p.key } : { constant: p })) };
}

/** Runs a compiled statement with the run's values: straight on the pool where the store allows it (db.ts), else through Kysely. */
async function run<R>(db: Kysely<Database>, c: Compiled, values: object): Promise<R[]> {
  const v = values as Record<string, unknown>;
  const parameters = c.params.map((p) => ('key' in p ? v[p.key] : p.constant));
  const direct = directQuery(db);
  if (direct) return (await direct(c.sql, parameters)) as R[];
  return (await db.executeQuery<R>(CompiledQuery.raw(c.sql, parameters))).rows;
}

/** What decides a compiled statement's text: a few flags and names (never values). */
type Shape = Readonly<Record<string, string | number | boolean>>;

const keyOf = (shape: Shape): string => Object.values(shape).join('|');

/**
 * A statement built and compiled once per shape, then run with values bound: building the login's
 * statements through Kysely on every call was 9% of the service's samples in the bench's profile.
 * `build` gets an object standing for the values (each property a placeholder) and must take every
 * value that can change from it: what it computes itself is fixed into the statement; what changes
 * the text (which optional parts are there) comes in `shape`. Kysely compiles the same SQL for
 * PostgreSQL and PGlite (both use its PostgreSQL compiler), so one cache serves both.
 */
export function compiledStatement<V extends object, R, S extends Shape = Shape>(build: (v: V, db: Kysely<Database>, shape: S) => Compilable<R> | RawBuilder<R>) {
  const shapes = new Map<string, Compiled>();
  return async (db: Kysely<Database>, values: V, shape = {} as S): Promise<R[]> => {
    const key = keyOf(shape);
    let c = shapes.get(key);
    if (!c) {
      const built = build(slots<V>(), db, shape);
      // A raw builder compiles with the database it is given; a query builder with its own (and ignores the argument).
      c = compiledOf((built.compile as (db: Kysely<Database>) => CompiledQuery<R>).call(built, db));
      shapes.set(key, c);
    }
    return run<R>(db, c, values);
  };
}

/** The refusal of a compiled step whose error each run supplies (see {@link compiledSteps}). */
export function refusedByRun(): Error {
  return new Error('a compiled statement was refused by a step whose run supplied no refusal');
}

/**
 * {@link runSteps} for a command whose steps are compiled once per shape ({@link compiledStatement}).
 * A step's refusal is looked up by name in the run's `refusals`, else taken from the build.
 */
export function compiledSteps<V extends object, R, S extends Shape = Shape>(build: (v: V, shape: S) => { steps: readonly Step[]; tail: RawBuilder<unknown> }) {
  const shapes = new Map<string, { compiled: Compiled; refusals: Map<string, () => Error> }>();
  return (db: Kysely<Database>, values: V, shape: S, refusals: Readonly<Record<string, () => Error>> = {}): Promise<R[]> => {
    const key = keyOf(shape);
    let s = shapes.get(key);
    if (!s) {
      const { steps, tail } = build(slots<V>(), shape);
      const built = stepsQuery<R>(steps, tail);
      s = { compiled: compiledOf(built.query.compile(db)), refusals: built.refusals };
      shapes.set(key, s);
    }
    const { compiled, refusals: fromBuild } = s;
    return executeSteps(
      async () => ({ rows: await run<R>(db, compiled, values) }),
      (name) => refusals[name] ?? fromBuild.get(name),
    );
  };
}
