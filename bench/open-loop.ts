/**
 * Open-loop load: operations start at a steady arrival rate whether or not earlier ones have finished,
 * as users arrive, and each latency is counted from the moment its operation was due, so a stalled
 * server shows up in the figures instead of slowing the arrivals (no coordinated omission).
 */
export async function openLoop(
  perSecond: number,
  seconds: number,
  work: () => Promise<void>,
): Promise<{ latencies: number[]; bySecond: number[][]; errors: number; elapsed: number; firstError?: string }> {
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
  const launch = (due: number) => {
    const p = work().then(
      () => {
        const latency = performance.now() - due;
        latencies.push(latency);
        bySecond[Math.min(bySecond.length - 1, Math.floor((due - start) / 1000))]!.push(latency);
      },
      (err) => {
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
  return { latencies, bySecond, errors, elapsed: seconds, ...(firstError ? { firstError } : {}) };
}
