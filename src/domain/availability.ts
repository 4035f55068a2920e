import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { hasReadyPasskey } from '../store/users.js';

/**
 * Runs `fn` and answers no sooner than `minMs` after the start, whatever the outcome, so the time an
 * answer takes does not tell a known name from an unknown one (or a database hit from a miss).
 */
async function withMinimumLatency<T>(minMs: number, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    const left = minMs - (performance.now() - started);
    if (left > 0) await sleep(left);
  }
}

/**
 * CheckPasskeyAvailability: whether an active user with this login name has a READY passkey, answered
 * no sooner than `minLatencyMs` whatever the name.
 */
export function passkeyAvailability(db: Kysely<Database>, loginName: string, minLatencyMs: number): Promise<boolean> {
  return withMinimumLatency(minLatencyMs, () => hasReadyPasskey(db, loginName));
}
