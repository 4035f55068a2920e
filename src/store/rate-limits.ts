import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config/config.js';
import { exhausted } from '../errors.js';
import type { Store } from './db.js';
import { LeasedLimiter } from './leased-limiter.js';

/**
 * Which budget a call spends: CheckPasskeyAvailability has its own, lower one; the OAuth endpoints
 * (token, introspection) theirs, counted per client address and per machine user.
 */
type RateLimitGroup = 'general' | 'availability' | 'oauth';

/** Budgets for calls made without a token (per client address), and for the OAuth endpoints. */
export interface RateLimits {
  /** Spends one call of the group's budget for `key` (a client address, or a client), or throws RESOURCE_EXHAUSTED with the seconds to wait. */
  consume(group: RateLimitGroup, key: string): Promise<void>;
  /** Where the counters live: 'postgres' (shared by every instance on the database) or 'memory'. */
  readonly store: 'postgres' | 'memory';
  /** Deletes PostgreSQL counters whose window ended over an hour ago (run by the app's sweeper). */
  sweep(): Promise<void>;
}

/** The table the PostgreSQL counters live in (created on first start, in the store's schema). */
const RATE_LIMIT_TABLE = 'rate_limits';

function postgresLimiter(store: Store, keyPrefix: string, points: number, duration: number, insurance: RateLimiterMemory): Promise<RateLimiterPostgres> {
  return new Promise((resolve, reject) => {
    const limiter: RateLimiterPostgres = new RateLimiterPostgres(
      {
        storeClient: store.pgPool,
        storeType: 'pool',
        tableName: RATE_LIMIT_TABLE,
        ...(store.schema ? { schemaName: store.schema } : {}),
        keyPrefix,
        points,
        duration,
        // If the database hiccups, count in this process rather than refuse every login.
        insuranceLimiter: insurance,
        // Expired rows are swept by the app's own timer, which stops with the app.
        clearExpiredByTimeout: false,
      },
      (err?: Error) => (err ? reject(err) : resolve(limiter)),
    );
  });
}

/**
 * The rate limits: on PostgreSQL the counters are rows in one table every instance shares, so a limit
 * holds across instances and worker processes (a busy key spends leased parts of its budget without a
 * round trip each: see LeasedLimiter); on PGlite (one process by construction) they are kept
 * in memory. Resolves once the table exists.
 */
export async function createRateLimits(
  store: Store,
  config: Pick<Config, 'rateLimitPerMinute' | 'availabilityRateLimitPerMinute' | 'oauthRateLimitPerMinute' | 'rateLimitWindowSeconds'>,
): Promise<RateLimits> {
  const duration = config.rateLimitWindowSeconds;
  const budgets: Record<RateLimitGroup, number> = {
    general: config.rateLimitPerMinute,
    availability: config.availabilityRateLimitPerMinute,
    oauth: config.oauthRateLimitPerMinute,
  };
  const limiters = {} as Record<RateLimitGroup, { consume(key: string): Promise<unknown> }>;
  const shared = store.kind === 'postgres' && store.pgPool !== undefined;
  for (const group of Object.keys(budgets) as RateLimitGroup[]) {
    const memory = new RateLimiterMemory({ keyPrefix: group, points: budgets[group], duration });
    // Sequential: the first creates the table, the second finds it.
    limiters[group] = shared ? new LeasedLimiter(await postgresLimiter(store, group, budgets[group], duration, memory)) : memory;
  }
  return {
    store: shared ? 'postgres' : 'memory',
    async sweep() {
      // One table (in the pool's search path) holds every group's rows; `expire` is in ms.
      if (shared) await store.pgPool!.query(`delete from ${RATE_LIMIT_TABLE} where expire < $1`, [Date.now() - 3600 * 1000]);
    },
    async consume(group, key) {
      try {
        await limiters[group].consume(key);
      } catch (err) {
        if (err instanceof RateLimiterRes) {
          const seconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
          throw exhausted(`too many requests${group === 'oauth' ? '' : ' from this address'}; retry in ${seconds}s`, seconds);
        }
        throw err;
      }
    },
  };
}
