import type { AppendResult } from '../store/events.js';

/** What every mutation reports: the aggregate's sequence and dates after the change. */
export type ChangeDetails = AppendResult;

/** Paging for list reads (ListQuery). */
export interface Page {
  offset: number;
  limit: number;
  asc: boolean;
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** Applies ListQuery defaults: limit 0 means 100. */
export function pageFrom(q: { offset?: bigint | number; limit?: number; asc?: boolean } | undefined): Page {
  const limit = q?.limit ? Math.min(q.limit, MAX_LIMIT) : DEFAULT_LIMIT;
  return { offset: Number(q?.offset ?? 0), limit, asc: q?.asc ?? false };
}

/** A list read: the page, the total, and the event position it reflects. */
export interface ListResult<T> {
  total: number;
  processedPosition: number;
  timestamp: Date;
  items: T[];
}
