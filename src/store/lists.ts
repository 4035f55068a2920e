import { sql, type SelectQueryBuilder, type Transaction } from 'kysely';
import { latestPosition } from './events.js';
import type { Database } from './schema.js';

/** Paging for list reads (ListQuery). */
export interface Page {
  offset: number;
  limit: number;
  asc: boolean;
}

/** A list read: the page, the total, and the event position it reflects. */
export interface ListResult<T> {
  total: number;
  processedPosition: number;
  timestamp: Date;
  items: T[];
}

/**
 * One page of a filtered query, its total and the event position, read in one transaction so the three
 * agree. `filtered` has its FROM and WHERE; `select` adds the columns of an item; `order` names the
 * sort column (ties broken by `tiebreak`, the id).
 */
export async function listPage<DB extends Database, TB extends keyof DB, Item>(
  trx: Transaction<Database>,
  filtered: SelectQueryBuilder<DB, TB, object>,
  select: (q: SelectQueryBuilder<DB, TB, object>) => SelectQueryBuilder<DB, TB, Item>,
  order: { column: string; tiebreak: string },
  page: Page,
): Promise<ListResult<Item>> {
  const dir = page.asc ? sql`asc` : sql`desc`;
  const [items, total, position] = await Promise.all([
    select(filtered)
      .orderBy(sql`${sql.ref(order.column)} ${dir}`)
      .orderBy(sql`${sql.ref(order.tiebreak)} ${dir}`)
      .offset(page.offset)
      .limit(page.limit)
      .execute() as Promise<Item[]>,
    filtered.select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow() as Promise<{ n: number | string }>,
    latestPosition(trx),
  ]);
  return { items, total: Number(total.n), processedPosition: position, timestamp: new Date() };
}
