import { sql, type Transaction } from 'kysely';
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

/**
 * Appends events to one aggregate in a single statement. The aggregate's row is bumped with an upsert,
 * which takes its row lock, so concurrent writers to one aggregate queue behind each other and get
 * consecutive sequences; the unique key on (aggregate, sequence) stays the last line of defence.
 */
export async function appendEvents(trx: Transaction<Database>, agg: AggregateRef, events: NewEvent[], creator: string): Promise<AppendResult> {
  const n = events.length;
  const types = events.map((e) => e.type);
  const payloads = events.map((e) => JSON.stringify(e.payload));
  const { rows } = await sql<{ sequence: number; created_at: Date; updated_at: Date; resource_owner: string }>`
    with agg as (
      insert into aggregates as a (aggregate_type, aggregate_id, sequence, resource_owner)
      values (${agg.type}, ${agg.id}, ${n}, ${agg.owner})
      on conflict (aggregate_type, aggregate_id)
      do update set sequence = a.sequence + ${n}, updated_at = now()
      returning a.sequence, a.created_at, a.updated_at, a.resource_owner
    ), ins as (
      insert into events (aggregate_type, aggregate_id, sequence, event_type, payload, resource_owner, creator)
      select ${agg.type}, ${agg.id}, agg.sequence - ${n} + e.ord, e.type, e.payload, agg.resource_owner, ${creator}
      from agg, unnest(${types}::text[], ${payloads}::jsonb[]) with ordinality as e(type, payload, ord)
    )
    select sequence, created_at, updated_at, resource_owner from agg`.execute(trx);
  const row = rows[0]!;
  return { sequence: Number(row.sequence), changeDate: row.updated_at, creationDate: row.created_at, resourceOwner: row.resource_owner };
}

/** The highest global event position (ListDetails.processed_sequence). */
export async function latestPosition(db: { selectFrom: Transaction<Database>['selectFrom'] }): Promise<number> {
  const row = await db.selectFrom('events').select((eb) => eb.fn.max('position').as('p')).executeTakeFirst();
  return Number(row?.p ?? 0);
}
