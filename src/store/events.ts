import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { Database } from './schema.js';
import type { Step } from './statement.js';

/** The kinds of aggregate events are appended to; each has one current-state table keyed by `id`. */
export type AggregateType = 'user' | 'session' | 'org' | 'signingkey';

/**
 * The current-state table whose row carries an aggregate's sequence and change date; a signing key's
 * row (signing_keys, keyed by kid) keeps no sequence, its events are its only history.
 */
const ROW_TABLE: Readonly<Record<AggregateType, 'users' | 'sessions' | 'orgs' | undefined>> = { user: 'users', session: 'sessions', org: 'orgs', signingkey: undefined };

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
 * The unique key on (aggregate, sequence) stays the last line of defence. `when` also orders the
 * append after the step it names, which is how commands fix the order one statement takes its locks in.
 */
export function appendSteps(name: string, agg: AggregateRef, events: readonly NewEvent[], creator: string, options: AppendOptions = {}): Step[] {
  const n = events.length;
  const types = events.map((e) => e.type);
  const payloads = options.payloads ?? payloadsOf(events);
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
    {
      name: `${name}_events`,
      body: sql`insert into events (aggregate_type, aggregate_id, sequence, event_type, payload, resource_owner, creator)
        select ${agg.type}::text, ${agg.id}::text, x.sequence - ${n}::bigint + e.ord, e.type, ${options.patch ? sql`e.payload || ${options.patch}` : sql`e.payload`}, x.resource_owner, ${creator}::text
        from ${self} x, unnest(${types}::text[], ${payloads}::jsonb[]) with ordinality as e(type, payload, ord)`,
    },
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

/**
 * Appends events to one aggregate in a transaction (one statement: see {@link appendSteps}), keeps its
 * current-state row in step, and returns the aggregate's sequence and dates after the change.
 */
export async function appendEvents(trx: Transaction<Database>, agg: AggregateRef, events: readonly NewEvent[], creator: string): Promise<AppendResult> {
  const steps = appendSteps('agg', agg, events, creator);
  const ctes = sql.join(steps.map((s) => sql`${sql.id(s.name)} as (${s.body})`));
  const { rows } = await sql<AppendedRow>`with ${ctes} select sequence, created_at, updated_at, resource_owner from agg`.execute(trx);
  return appendResultOf(rows[0]!);
}

/** True when an aggregate with this type and id was ever created (its events outlive its rows). */
export async function aggregateExists(db: Kysely<Database> | Transaction<Database>, type: AggregateType, id: string): Promise<boolean> {
  const row = await db.selectFrom('aggregates').select('aggregate_id').where('aggregate_type', '=', type).where('aggregate_id', '=', id).executeTakeFirst();
  return row !== undefined;
}

/**
 * Locks an aggregate's row for the rest of the transaction: the lock every change to it takes first
 * (the append's upsert), taken early so a decision read after it (counting passkeys, reading the
 * user) cannot be invalidated by a concurrent change. Returns the aggregate's owner, if it exists.
 */
export async function lockAggregate(trx: Transaction<Database>, type: AggregateType, id: string): Promise<string | undefined> {
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
