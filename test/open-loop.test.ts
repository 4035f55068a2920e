import { describe, expect, it } from 'vitest';
import { openLoop } from '../bench/open-loop.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the bench's open loop", () => {
  it('counts a stall: logins running and none finishing, until the held ones are let go together', async () => {
    const start = performance.now();
    // Every login that starts between 400 and 600 ms is held until 600 ms; the others take 1 ms.
    const release = sleep(600);
    const r = await openLoop(100, 1, async () => {
      const t = performance.now() - start;
      await (t >= 400 && t < 600 ? release : sleep(1));
    });
    expect(r.errors).toBe(0);
    expect(r.latencies.length).toBe(100);
    // From the first held login's start at 400 ms to the release at 600 ms, nothing finished.
    expect(r.longestStall).toBeGreaterThanOrEqual(150);
    // Not the whole phase: the logins before and after the hold end stalls of their own.
    expect(r.longestStall).toBeLessThan(950);
    expect(r.stalls).toBeGreaterThanOrEqual(1);
    // The held logins count from their due time: the first of them waited about 200 ms.
    expect(Math.max(...r.latencies)).toBeGreaterThanOrEqual(150);
  });
});
