/**
 * Open-loop load: operations start at a steady arrival rate whether or not earlier ones have finished,
 * as users arrive, and each latency is counted from the moment its operation was due, so a stalled
 * server shows up in the figures instead of slowing the arrivals (no coordinated omission).
 */
export async function openLoop(
  perSecond: number,
  seconds: number,
  work: () => Promise<void>,
): Promise<{ latencies: number[]; errors: number; elapsed: number; firstError?: string }> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const interval = 1000 / perSecond;
  const start = performance.now();
  const end = start + seconds * 1000;
  const running: Promise<void>[] = [];
  const launch = (due: number) => {
    const p = work().then(
      () => void latencies.push(performance.now() - due),
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
  return { latencies, errors, elapsed: seconds, ...(firstError ? { firstError } : {}) };
}
