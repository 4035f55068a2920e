/**
 * Open-loop load: operations start at a steady arrival rate whether or not earlier ones have finished,
 * as users arrive, and each latency is counted from the moment its operation was due, so a stalled
 * server shows up in the figures instead of slowing the arrivals (no coordinated omission).
 */
/** A stall at least this long is counted. */
const STALL_MS = 30;

export async function openLoop(
  perSecond: number,
  seconds: number,
  work: () => Promise<void>,
): Promise<{ latencies: number[]; bySecond: number[][]; errors: number; elapsed: number; longestStall: number; stalls: number; firstError?: string }> {
  const latencies: number[] = [];
  // The latencies of the arrivals due in each second of the phase, to tell a start-up transient from a
  // tail spread over the whole phase.
  const bySecond: number[][] = Array.from({ length: Math.ceil(seconds) }, () => []);
  let errors = 0;
  let firstError: string | undefined;
  const interval = 1000 / perSecond;
  const start = performance.now();
  const end = start + seconds * 1000;
  const running: Promise<void>[] = [];
  // Stalls: stretches in which logins were running and none finished. Each finishing login ends one: the
  // time since it started or since the login before it finished, whichever is later. In a steady phase
  // they are about as long as a login.
  let lastDone = start;
  let longestStall = 0;
  let stalls = 0;
  const finished = (launched: number) => {
    const now = performance.now();
    const stall = now - Math.max(lastDone, launched);
    longestStall = Math.max(longestStall, stall);
    if (stall >= STALL_MS) stalls++;
    lastDone = now;
  };
  const launch = (due: number) => {
    const launched = performance.now();
    const p = work().then(
      () => {
        finished(launched);
        const latency = performance.now() - due;
        latencies.push(latency);
        bySecond[Math.min(bySecond.length - 1, Math.floor((due - start) / 1000))]!.push(latency);
      },
      (err) => {
        finished(launched);
        errors++;
        firstError ??= String((err as Error).message ?? err);
      },
    );
    running.push(p);
  };
  for (let due = start; due < end; ) {
    const now = performance.now();
    while (due <= now && due < end) {
      launch(due);
      due += interval;
    }
    if (due < end) await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
  }
  await Promise.all(running);
  // The rate achieved is what completed over the arrival window.
  return { latencies, bySecond, errors, elapsed: seconds, longestStall, stalls, ...(firstError ? { firstError } : {}) };
}
