import { sql, type RawBuilder, type Transaction } from 'kysely';
import type { Database } from './schema.js';

/** An event about to be appended. */
export interface NewEvent {
  type: string;
  payload: Record<string, unknown>;
}

export interface AggregateRef {
  type: string;
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

/** The aggregate row as an append leaves it (what `appendCtes`' first CTE returns). */
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

/**
 * SQL for two entries of a WITH list that append events to one aggregate, for commands that do their
 * whole change in one statement (every round trip to the database costs more client CPU than the SQL):
 * - `<name>` bumps the aggregate row with an upsert, which takes its row lock, so concurrent writers to
 *   one aggregate queue behind each other and get consecutive sequences; it returns the row
 *   (`sequence, created_at, updated_at, resource_owner`, see {@link AppendedRow}) or nothing when `when`
 *   is false;
 * - `<name>_events` inserts the events at the sequences just reserved (nothing when `<name>` is empty).
 * The unique key on (aggregate, sequence) stays the last line of defence. `when` is a boolean SQL
 * expression, typically `exists (select 1 from <earlier cte>)`: it also makes the append run after that
 * CTE, which is how callers fix the order in which one statement takes its locks. `patch`, a jsonb SQL
 * expression, is merged into every payload: for values the statement itself finds (a user's id).
 */
export function appendCtes(name: string, agg: AggregateRef, events: NewEvent[], creator: string, when?: RawBuilder<boolean>, patch?: RawBuilder<unknown>): RawBuilder<unknown> {
  const n = events.length;
  const types = events.map((e) => e.type);
  const payloads = events.map((e) => JSON.stringify(e.payload));
  const self = sql.id(name);
  // INSERT ... SELECT (not VALUES) so the append can be conditional; the WHERE is always written, as a
  // SELECT without it would let the parser read ON CONFLICT as a join condition.
  return sql`${self} as (
      insert into aggregates as a (aggregate_type, aggregate_id, sequence, resource_owner)
      select ${agg.type}::text, ${agg.id}::text, ${n}::bigint, ${agg.owner}::text
      where ${when ?? sql`true`}
      on conflict (aggregate_type, aggregate_id)
      do update set sequence = a.sequence + ${n}::bigint, updated_at = now()
      returning a.sequence, a.created_at, a.updated_at, a.resource_owner
    ), ${sql.id(`${name}_events`)} as (
      insert into events (aggregate_type, aggregate_id, sequence, event_type, payload, resource_owner, creator)
      select ${agg.type}::text, ${agg.id}::text, x.sequence - ${n}::bigint + e.ord, e.type, ${patch ? sql`e.payload || ${patch}` : sql`e.payload`}, x.resource_owner, ${creator}::text
      from ${self} x, unnest(${types}::text[], ${payloads}::jsonb[]) with ordinality as e(type, payload, ord)
    )`;
}

/**
 * Appends events to one aggregate in a single statement (see {@link appendCtes}) and returns the
 * aggregate's sequence and dates after the change.
 */
export async function appendEvents(trx: Transaction<Database>, agg: AggregateRef, events: NewEvent[], creator: string): Promise<AppendResult> {
  const { rows } = await sql<AppendedRow>`with ${appendCtes('agg', agg, events, creator)} select sequence, created_at, updated_at, resource_owner from agg`.execute(trx);
  return appendResultOf(rows[0]!);
}

/** The highest global event position (ListDetails.processed_sequence). */
export async function latestPosition(db: { selectFrom: Transaction<Database>['selectFrom'] }): Promise<number> {
  const row = await db.selectFrom('events').select((eb) => eb.fn.max('position').as('p')).executeTakeFirst();
  return Number(row?.p ?? 0);
}
