import { decodeTime } from 'ulid';
import { describe, expect, it } from 'vitest';
import { newId, randomBytesPooled } from '../src/ids.js';

describe('ids and pooled random bytes', () => {
  it('ids are ULIDs that sort by creation time and never repeat, also within one millisecond', () => {
    const before = Date.now();
    const ids = Array.from({ length: 100_000 }, () => newId());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of [ids[0]!, ids.at(-1)!]) {
      expect(id).toMatch(/^[0-7][0-9a-hjkmnp-tv-z]{25}$/);
      expect(decodeTime(id.toUpperCase())).toBeGreaterThanOrEqual(before);
      expect(decodeTime(id.toUpperCase())).toBeLessThanOrEqual(after);
    }
    // The random part is random: ids of different milliseconds share no 16-character tail.
    const tails = new Set(ids.filter((_, i) => i % 1000 === 0).map((id) => id.slice(10)));
    expect(tails.size).toBe(100);
  });

  it('pooled bytes are handed out once, across refills, in buffers of their own', () => {
    const draws = Array.from({ length: 2000 }, () => randomBytesPooled(32));
    expect(new Set(draws.map((b) => b.toString('hex'))).size).toBe(draws.length);
    const first = Buffer.from(draws[0]!);
    draws[1]!.fill(0);
    randomBytesPooled(4096);
    expect(draws[0]).toEqual(first);
    // Every byte value turns up in 64 KiB (a constant or counting source would not).
    const seen = new Set<number>();
    for (let i = 0; i < 16; i++) for (const b of randomBytesPooled(4096)) seen.add(b);
    expect(seen.size).toBe(256);
  });
});
