import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { afterAll, describe, expect, it } from 'vitest';
import { LeasedLimiter } from '../src/store/leased-limiter.js';
import { createRateLimits } from '../src/store/rate-limits.js';
import type { Store } from '../src/store/db.js';
import { BACKEND, openTestStore } from './helpers/server.js';

/** A store shared by several "processes", counting how often they asked it. */
function countingStore(points: number, duration = 30): { store: RateLimiterAbstract; asked: () => number } {
  const store = new RateLimiterMemory({ points, duration });
  let asked = 0;
  const consume = store.consume.bind(store);
  store.consume = (key, n, options) => {
    asked++;
    return consume(key, n, options);
  };
  return { store, asked: () => asked };
}

/** Spends `calls` calls on the limiters in turn, `parallel` at a time; counts what was allowed. */
async function spend(
  limiters: { consume(key: string): Promise<void> }[],
  key: string,
  calls: number,
  parallel: number,
): Promise<{ allowed: number; refused: number; order: boolean[] }> {
  const order: boolean[] = [];
  for (let i = 0; i < calls; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, calls - i) }, (_, j) =>
      limiters[(i + j) % limiters.length]!.consume(key).then(
        () => true,
        (err) => {
          if (!(err instanceof RateLimiterRes)) throw err;
          return false;
        },
      ),
    );
    order.push(...(await Promise.all(batch)));
  }
  return { allowed: order.filter(Boolean).length, refused: order.filter((x) => !x).length, order };
}

describe('leased rate limits: a busy key spends leased budget without asking the store each time', () => {
  it('two processes on one store never allow more than the limit together, and ask the store far less often than they are called', async () => {
    const limit = 400;
    const { store, asked } = countingStore(limit);
    const a = new LeasedLimiter(store);
    const b = new LeasedLimiter(store);
    const r = await spend([a, b], '203.0.113.7', 600, 8);
    expect(r.allowed).toBeLessThanOrEqual(limit);
    // Leases left unspent in the other process are the only calls refused early: at most 1/8 of what
    // was left per lease, and leases shrink as the budget does.
    expect(r.allowed).toBeGreaterThanOrEqual(limit * 0.75);
    expect(r.refused).toBe(600 - r.allowed);
    expect(asked()).toBeLessThan(r.allowed / 3);
  });

  it('a small limit is exact: each allowed call asks the store, and a refused process stops asking until the window ends', async () => {
    const { store, asked } = countingStore(4);
    const r = await spend([new LeasedLimiter(store), new LeasedLimiter(store)], 'k', 10, 1);
    expect(r.order).toEqual([true, true, true, true, false, false, false, false, false, false]);
    // Four allowed calls, then one refusal per process; the other refusals are answered locally.
    expect(asked()).toBe(6);
  });

  it('concurrent calls of one key wait for one refill instead of each asking the store', async () => {
    const { store, asked } = countingStore(1_000_000);
    const limiter = new LeasedLimiter(store);
    await limiter.consume('k'); // learns what is left
    const before = asked();
    await Promise.all(Array.from({ length: 64 }, () => limiter.consume('k')));
    expect(asked() - before).toBe(1);
  });

  it('separate keys have separate budgets and leases', async () => {
    const { store } = countingStore(3);
    const limiter = new LeasedLimiter(store);
    const one = await spend([limiter], 'one', 5, 1);
    const two = await spend([limiter], 'two', 5, 1);
    expect(one.allowed).toBe(3);
    expect(two.allowed).toBe(3);
  });
});

describe.skipIf(BACKEND !== 'postgres')('leased rate limits on PostgreSQL', () => {
  const opened: { store: Store; cleanup(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const o of opened) {
      await o.store.close();
      await o.cleanup();
    }
  });

  it('two instances on one database share the budget: together never more than the limit', async () => {
    const first = await openTestStore();
    opened.push(first);
    const second = await openTestStore({ schema: first.schema! });
    opened.push(second);
    const limit = 300;
    const config = { rateLimitPerMinute: limit, availabilityRateLimitPerMinute: 10, oauthRateLimitPerMinute: 120, rateLimitWindowSeconds: 60 };
    const a = await createRateLimits(first.store, config);
    const b = await createRateLimits(second.store, config);
    expect(a.store).toBe('postgres');
    const each = (limits: typeof a) => ({
      consume: (key: string) => limits.consume('general', key).catch((err) => Promise.reject(err.kind === 'resource_exhausted' ? new RateLimiterRes() : err)),
    });
    const r = await spend([each(a), each(b)], '198.51.100.9', 450, 8);
    expect(r.allowed).toBeLessThanOrEqual(limit);
    expect(r.allowed).toBeGreaterThanOrEqual(limit * 0.75);
    // What the shared row counted: every allowed call, plus leased points not spent yet, never more than the limit.
    const { rows } = await first.store.pgPool!.query(`select points from rate_limits where key = $1`, ['general:198.51.100.9']);
    expect(Number(rows[0].points)).toBeGreaterThanOrEqual(r.allowed);

    // The sweep deletes counters whose window ended over an hour ago, and only those.
    await first.store.pgPool!.query(`insert into rate_limits (key, points, expire) values ('general:old', 1, $1)`, [Date.now() - 2 * 3600 * 1000]);
    await a.sweep();
    const keys = (await first.store.pgPool!.query(`select key from rate_limits order by key`)).rows.map((row) => row.key);
    expect(keys).toEqual(['general:198.51.100.9']);
  });
});
