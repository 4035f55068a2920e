import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import { notFound } from '../errors.js';
import type { Database } from './schema.js';
import type { Step } from './statement.js';

/** The kinds of aggregate events are appended to; each has one current-state table keyed by `id`. */
export type AggregateType = 'user' | 'session' | 'org' | 'signingkey';

/**
 * The current-state table whose row carries an aggregate's sequence and change date; a signing key's
 * row (signing_keys, keyed by kid) keeps no sequence, its events are its only history.
 */
const ROW_TABLE: Readonly<Record<AggregateType, 'users' | 'sessions' | 'orgs' | undefined>> = { user: 'users', session: 'sessions', org: 'orgs', signingkey: undefined };

/**
 * A session keeps no row in `aggregates`: its own row carries its sequence and takes its lock. Sessions
 * are the most numerous aggregates and the shortest-lived (a login opens one), and the second row was
 * two of a login's seven row changes; its events outlive the row as every aggregate's do. An append to a
 * session whose row is gone (ended, expired) appends nothing.
 */
const OWN_ROW: ReadonlySet<AggregateType> = new Set(['session']);

/** An event about to be appended (the domain's catalogue types them; src/domain/events.ts). */
export interface NewEvent {
  type: string;
  payload: object;
}

export interface AggregateRef {
  type: AggregateType;
  id: string;
  /** The owning organization (resource_owner). */
  owner: string;
}

/** What an append leaves behind: the source of every response's `details`. */
export interface AppendResult {
  sequence: number;
  changeDate: Date;
  creationDate: Date;
  resourceOwner: string;
}

/** The aggregate row as an append leaves it (what the append step returns). */
export interface AppendedRow {
  sequence: number | string;
  created_at: Date;
  updated_at: Date;
  resource_owner: string;
}

/** Maps an appended aggregate row to the `details` source. */
export function appendResultOf(row: AppendedRow): AppendResult {
  return { sequence: Number(row.sequence), changeDate: row.updated_at, creationDate: row.created_at, resourceOwner: row.resource_owner };
}

/** A new current-state row's bookkeeping columns, from the append that created its aggregate. */
export function stampOf(details: AppendResult): { sequence: number; created_at: Date; updated_at: Date } {
  return { sequence: details.sequence, created_at: details.creationDate, updated_at: details.changeDate };
}

export interface AppendOptions {
  /** A boolean SQL expression: append only when it holds (typically `exists (select 1 from <earlier step>)`). */
  when?: RawBuilder<boolean> | undefined;
  /** A jsonb SQL expression merged into every payload: values the statement itself finds (a user's id). */
  patch?: RawBuilder<unknown> | undefined;
  /**
   * The current-state row: by default its `sequence` and `updated_at` follow the aggregate's (the one
   * place that bookkeeping is written). `set` adds columns to that same update and `where` a condition
   * (PostgreSQL updates a row once per statement, so a command's own change to the row goes here);
   * `name`/`refusal` make the row update a named step that refuses the statement when it finds no row;
   * `returning` adds columns of the updated row to what that step returns (its `id` always).
   * `false`: the statement inserts the row itself (a new aggregate), from the append's RETURNING.
   */
  row?: false | { set?: RawBuilder<unknown>; where?: RawBuilder<boolean>; name?: string; refusal?: () => Error; returning?: RawBuilder<unknown> } | undefined;
  /** Refuse the statement when the append did not happen (its `when` was false). */
  refusal?: (() => Error) | undefined;
  /** The events' payloads as one jsonb[] value (a compiled statement's placeholder); by default, from `events`. */
  payloads?: unknown;
  /**
   * The owner as an SQL expression, for a statement that finds it itself (in place of `agg.owner`).
   * Only a new aggregate's row takes it: an existing one keeps the owner it has.
   */
  owner?: RawBuilder<unknown> | undefined;
}

/** Events' payloads as the one jsonb[] value an append binds. */
export function payloadsOf(events: readonly NewEvent[]): string[] {
  return events.map((e) => JSON.stringify(e.payload));
}

/**
 * Placeholder events of the given types (comma-separated), for building a compiled append: the types
 * fix the statement's text, the payloads are bound at each run (`AppendOptions.payloads`).
 */
export function eventsOfShape(types: string): NewEvent[] {
  return (types ? types.split(',') : []).map((type) => ({ type, payload: {} }));
}

/**
 * The steps of one statement that append events to one aggregate (every round trip costs more client
 * CPU than the SQL, so commands do their whole change in one statement where they can):
 * - `<name>` bumps the aggregate row with an upsert, which takes its row lock, so concurrent writers to
 *   one aggregate queue behind each other and get consecutive sequences; it returns the row
 *   ({@link AppendedRow}), or nothing when `when` is false;
 * - `<name>_events` inserts the events at the sequences just reserved;
 * - `<name>_row` (or `row.name`) keeps the aggregate's current-state row in step (sequence, change date).
 * A session's steps have the same names and rows, with its own row in place of `aggregates`
 * ({@link OWN_ROW}). The unique key on (aggregate, sequence) stays the last line of defence. `when` also orders the
 * append after the step it names, which is how commands fix the order one statement takes its locks in.
 */
export function appendSteps(name: string, agg: AggregateRef, events: readonly NewEvent[], creator: string, options: AppendOptions = {}): Step[] {
  if (OWN_ROW.has(agg.type)) return ownRowAppendSteps(name, agg, events, creator, options);
  const n = events.length;
  const self = sql.id(name);
  const steps: Step[] = [
    {
      name,
      refusal: options.refusal,
      // INSERT ... SELECT (not VALUES) so the append can be conditional; the WHERE is always written, as
      // a SELECT without it would let the parser read ON CONFLICT as a join condition.
      body: sql`insert into aggregates as a (aggregate_type, aggregate_id, sequence, resource_owner)
        select ${agg.type}::text, ${agg.id}::text, ${n}::bigint, ${options.owner ?? sql`${agg.owner}::text`}
        where ${options.when ?? sql`true`}
        on conflict (aggregate_type, aggregate_id)
        do update set sequence = a.sequence + ${n}::bigint, updated_at = now()
        returning a.sequence, a.created_at, a.updated_at, a.resource_owner`,
    },
    eventsStep(name, agg, events, creator, options),
  ];
  const row = options.row;
  const rowTable = ROW_TABLE[agg.type];
  if (row !== false && rowTable) {
    const table = sql.table(rowTable);
    steps.push({
      name: row?.name ?? `${name}_row`,
      refusal: row?.refusal,
      body: sql`update ${table} r set ${row?.set ? sql`${row.set}, ` : sql``}sequence = x.sequence, updated_at = x.updated_at
        from ${self} x where r.id = ${agg.id}::text${row?.where ? sql` and ${row.where}` : sql``}
        returning r.id${row?.returning ? sql`, ${row.returning}` : sql``}`,
    });
  }
  return steps;
}

/** `<name>_events`: inserts the events at the sequences the step `<name>` reserved (its row: sequence, resource_owner). */
function eventsStep(name: string, agg: AggregateRef, events: readonly NewEvent[], creator: string, options: AppendOptions): Step {
  const n = events.length;
  const types = events.map((e) => e.type);
  const payloads = options.payloads ?? payloadsOf(events);
  return {
    name: `${name}_events`,
    body: sql`insert into events (aggregate_type, aggregate_id, sequence, event_type, payload, resource_owner, creator)
      select ${agg.type}::text, ${agg.id}::text, x.sequence - ${n}::bigint + e.ord, e.type, ${options.patch ? sql`e.payload || ${options.patch}` : sql`e.payload`}, x.resource_owner, ${creator}::text
      from ${sql.id(name)} x, unnest(${types}::text[], ${payloads}::jsonb[]) with ordinality as e(type, payload, ord)`,
  };
}

/**
 * {@link appendSteps} for an aggregate whose row is its own aggregate row ({@link OWN_ROW}), with the
 * same step names and rows:
 * - a new one (`row: false`): `<name>` only computes the first sequences and the owner, and the
 *   statement inserts the row (whose primary key refuses a second aggregate with the id);
 * - an existing one: `<name>` is the ONE update of its row (PostgreSQL updates a row once per
 *   statement): the sequence bump, `row.set` and `row.where` together, which takes the row's lock; the
 *   row step (`row.name`, or `<name>_row`) is that update's result under the row step's name, with its
 *   refusal, so commands name and refuse it as they do for other aggregates.
 */
function ownRowAppendSteps(name: string, agg: AggregateRef, events: readonly NewEvent[], creator: string, options: AppendOptions): Step[] {
  const n = events.length;
  const owner = options.owner ?? sql`${agg.owner}::text`;
  const when = options.when ?? sql`true`;
  const row = options.row;
  const table = sql.table(ROW_TABLE[agg.type]!);
  if (row === false) {
    return [
      { name, refusal: options.refusal, body: sql`select ${n}::bigint as sequence, now() as created_at, now() as updated_at, ${owner} as resource_owner where ${when}` },
      eventsStep(name, agg, events, creator, options),
    ];
  }
  return [
    {
      name,
      refusal: options.refusal,
      body: sql`update ${table} r set ${row?.set ? sql`${row.set}, ` : sql``}sequence = r.sequence + ${n}::bigint, updated_at = now()
        where r.id = ${agg.id}::text and ${when}${row?.where ? sql` and ${row.where}` : sql``}
        returning r.id, r.sequence, r.created_at, r.updated_at, ${owner} as resource_owner${row?.returning ? sql`, ${row.returning}` : sql``}`,
    },
    eventsStep(name, agg, events, creator, options),
    { name: row?.name ?? `${name}_row`, refusal: row?.refusal, body: sql`select * from ${sql.id(name)}` },
  ];
}

/**
 * Appends events to one aggregate in a transaction (one statement: see {@link appendSteps}), keeps its
 * current-state row in step, and returns the aggregate's sequence and dates after the change.
 */
export async function appendEvents(
  trx: Transaction<Database>,
  agg: AggregateRef,
  events: readonly NewEvent[],
  creator: string,
  options: { created?: boolean } = {},
): Promise<AppendResult> {
  // `created`: a new aggregate whose row the caller inserts next, from the result.
  const steps = appendSteps('agg', agg, events, creator, options.created ? { row: false } : {});
  const ctes = sql.join(steps.map((s) => sql`${sql.id(s.name)} as (${s.body})`));
  const { rows } = await sql<AppendedRow>`with ${ctes} select sequence, created_at, updated_at, resource_owner from agg`.execute(trx);
  const row = rows[0];
  // Only an aggregate that is its own row can be missing (a session that ended meanwhile): nothing was appended.
  if (!row) throw notFound(`${agg.type} ${agg.id}`);
  return appendResultOf(row);
}

/** True when an aggregate with this type and id was ever created (its events outlive its rows). */
export async function aggregateExists(db: Kysely<Database> | Transaction<Database>, type: Exclude<AggregateType, 'session'>, id: string): Promise<boolean> {
  const row = await db.selectFrom('aggregates').select('aggregate_id').where('aggregate_type', '=', type).where('aggregate_id', '=', id).executeTakeFirst();
  return row !== undefined;
}

/**
 * Locks an aggregate's row for the rest of the transaction: the lock every change to it takes first
 * (the append's upsert), taken early so a decision read after it (counting passkeys, reading the
 * user) cannot be invalidated by a concurrent change. Returns the aggregate's owner, if it exists.
 */
export async function lockAggregate(trx: Transaction<Database>, type: Exclude<AggregateType, 'session'>, id: string): Promise<string | undefined> {
  const row = await trx.selectFrom('aggregates').select('resource_owner').where('aggregate_type', '=', type).where('aggregate_id', '=', id).forUpdate().executeTakeFirst();
  return row?.resource_owner;
}

/** The highest global event position (ListDetails.processed_sequence). */
export async function latestPosition(db: Kysely<Database> | Transaction<Database>): Promise<number> {
  const row = await db
    .selectFrom('events')
    .select((eb) => eb.fn.max('position').as('p'))
    .executeTakeFirst();
  return Number(row?.p ?? 0);
}
