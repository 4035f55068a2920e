import { LRUCache } from 'lru-cache';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

/** A part of a key's shared budget that this process took ahead and spends without asking the store. */
interface Lease {
  left: number;
  /** When the store's window (and with it the lease) ends, ms since the epoch. */
  until: number;
  /** What the key had left in the store after the lease was taken. */
  remaining: number;
  /** The store refused a single call: the window is spent, and every call is refused until it ends. */
  refused?: RateLimiterRes;
}

/** Largest lease, so a process that dies strands at most this many calls of a key's window. */
const MAX_LEASE = 1000;
/** A lease is at most this share of what the key had left: near the limit, leases shrink to one call. */
const LEASE_SHARE = 8;

/**
 * A shared limiter (PostgreSQL: one row per key every instance counts in) that needs no round trip for
 * most calls of a busy key: after the store answers, the process takes a lease of up to 1/8 of what
 * the key has left in its window (at most {@link MAX_LEASE}) in the same update, and spends it locally
 * until it runs out or the window ends.
 *
 * The limit still holds across instances, exactly: every call spends a point the store counted, so the
 * total never exceeds it. The price is the other way round: points leased by one process and not spent
 * there are unusable elsewhere until the window ends, and a lease the store refuses (others spent the
 * rest meanwhile) stays counted, so near the limit a key may be refused some calls early (at most 1/8
 * of what it had left when the lease was asked for, per process). A key's first call in a window, and
 * every call once little is left, asks the store, as without leases. Once the store refused a key, the
 * process refuses it by itself until the window ends (a spent window stays spent).
 */
export class LeasedLimiter {
  private readonly leases = new LRUCache<string, Lease>({ max: 50_000 });

  constructor(private readonly store: RateLimiterAbstract) {}

  /** A refill of a key's lease in flight: other calls of that key wait for it instead of asking too. */
  private readonly refills = new Map<string, Promise<void>>();

  /** Spends one call; rejects with the store's RateLimiterRes when the budget is gone. */
  async consume(key: string): Promise<void> {
    for (;;) {
      const lease = this.leases.get(key);
      const now = Date.now();
      if (lease && lease.until > now) {
        if (lease.refused) throw new RateLimiterRes(0, lease.until - now, lease.refused.consumedPoints, false);
        if (lease.left > 0) {
          lease.left--;
          return;
        }
      }
      const refill = this.refills.get(key);
      if (!refill) break;
      await refill.catch(() => {});
    }
    const ask = this.ask(key);
    this.refills.set(key, ask);
    try {
      await ask;
    } finally {
      this.refills.delete(key);
    }
  }

  /** Asks the store for this call plus, when the key is known to have room, a lease for later ones. */
  private async ask(key: string): Promise<void> {
    const now = Date.now();
    const lease = this.leases.get(key);
    // A key's first call in a window takes no lease: it learns what is left.
    const size = lease && lease.until > now ? Math.max(1, Math.min(MAX_LEASE, Math.floor(lease.remaining / LEASE_SHARE))) : 1;
    let res: RateLimiterRes;
    try {
      res = await this.store.consume(key, size);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      // Spent for this window, in the store: refuse here until it ends. A refused lease stays counted
      // (giving it back could land in the next window and lift that one over the limit), so the few
      // calls it would have left are lost for this window: an early refusal, never an excess.
      this.leases.set(key, { left: 0, until: now + err.msBeforeNext, remaining: 0, refused: err });
      throw err;
    }
    this.leases.set(key, { left: size - 1, until: now + res.msBeforeNext, remaining: res.remainingPoints });
  }
}
