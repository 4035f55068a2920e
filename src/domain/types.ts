import type { AppendResult } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';

/** What every mutation reports: the aggregate's sequence and dates after the change. */
export type ChangeDetails = AppendResult;

export type { ListResult, Page };

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/** Applies ListQuery defaults: limit 0 means 100, at most 1000. */
export function pageFrom(q: { offset?: bigint | number; limit?: number; asc?: boolean } | undefined): Page {
  const limit = q?.limit ? Math.min(q.limit, MAX_LIMIT) : DEFAULT_LIMIT;
  return { offset: Number(q?.offset ?? 0), limit, asc: q?.asc ?? false };
}
