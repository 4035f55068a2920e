import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';

/** True when an active user with this login name (case-insensitive) has at least one READY passkey. */
export async function hasReadyPasskey(db: Kysely<Database>, loginName: string): Promise<boolean> {
  const row = await db
    .selectFrom('users as u')
    .innerJoin('passkeys as p', 'p.user_id', 'u.id')
    .select('p.id')
    .where('u.username_lower', '=', loginName.toLowerCase())
    .where('u.state', '=', 'active')
    .where('p.state', '=', 'ready')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Runs `fn` and answers no sooner than `minMs` after the start, whatever the outcome, so the time an
 * answer takes does not tell a known name from an unknown one (or a database hit from a miss).
 */
export async function withMinimumLatency<T>(minMs: number, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    const left = minMs - (performance.now() - started);
    if (left > 0) await sleep(left);
  }
}
