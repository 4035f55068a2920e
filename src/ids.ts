import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/**
 * Random bytes for ids, challenges and tokens, drawn from the CSPRNG a pool at a time. The login's
 * profile showed the ulid package drawing one byte per character (16 calls into node:crypto per id) and
 * every challenge and token its own call. Each byte is handed out once; what a caller gets is a copy.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let used = POOL_BYTES;

function refillFor(n: number): void {
  if (used + n <= POOL_BYTES) return;
  randomFillSync(pool);
  used = 0;
}

/** `n` (at most 4096) cryptographically random bytes, in a buffer of their own. */
export function randomBytesPooled(n: number): Buffer {
  refillFor(n);
  const out = Buffer.allocUnsafe(n);
  pool.copy(out, 0, used, used + n);
  used += n;
  return out;
}

/** One random byte from the pool as a fraction in [0, 1), which is what ulid asks its PRNG for (256 / 32 = 8: unbiased). */
function pooledFraction(): number {
  refillFor(1);
  return pool[used++]! / 256;
}

const next = monotonicFactory(pooledFraction);

/** A new opaque id that sorts by creation time (a ULID). */
export function newId(): string {
  return next().toLowerCase();
}
