import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKEND, TEST_DATABASE_URL } from './helpers/server.js';

const run = promisify(execFile);
const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe(`npm run bench, in miniature (${BACKEND})`, () => {
  it('drives registrations and logins through a real server and writes the figures: no errors, CPU and floor measured', async () => {
    const out = path.join(dir, 'result.json');
    const backend = TEST_DATABASE_URL ? ['--database-url', TEST_DATABASE_URL] : ['--pglite'];
    // 96 users. The open loop gives each arrival a user who is not mid-login; when a slow stretch (on
    // PGlite under CI's parallel test files) has them all mid-login, arrivals wait for one (it used to
    // be an error: 8 users ran out once, 32 once, 96 once with 40 arrivals refused).
    const tiny = ['--users', '96', '--concurrency', '4', '--registration-concurrency', '2', '--warmup', '0', '--duration', '1', '--registration-duration', '1'];
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--no-build', ...backend, ...tiny, '--out', out], {
      timeout: 150_000,
      // The server from the sources in this tree, not a build that may be older.
      env: { ...process.env, PASSKEYD_FROM_SOURCE: '1' },
    });
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.backend).toBe(BACKEND);
    for (const phase of [report.login, report.registration]) {
      expect(phase.ops).toBeGreaterThan(0);
      expect(phase.errors).toBe(0);
      expect(phase.perSecond).toBeGreaterThan(0);
      expect(phase.p99).toBeGreaterThanOrEqual(phase.p50);
      expect(phase.serviceCpuMicrosPerOp).toBeGreaterThan(0);
    }
    expect(report.floor.floorMicros).toBeGreaterThan(0);
    expect(report.floor.ratio).toBeGreaterThan(0);
    expect(stdout).toMatch(/\| login \| [\d.]+ \|/);
    expect(stdout).toMatch(/login CPU = [\d.]+× floor/);
    // The open-loop phase ran at half the closed-loop rate and counted its latencies.
    const open = report.openLoop['open-loop'];
    expect(open.rate).toBe(Math.max(1, Math.round(report.login.perSecond / 2)));
    expect(open.ops).toBeGreaterThan(0);
    expect(open.errors, open.firstError).toBe(0);
    expect(stdout).toMatch(/\| open-loop at \d+\/s \| [\d.]+ \|/);
    // And the p99 of each second of it (10 s by default), to place a tail in time.
    expect(open.p99BySecond).toHaveLength(10);
    expect(open.p99BySecond.every((ms: number) => Number.isFinite(ms) && ms >= 0)).toBe(true);
    expect(stdout).toMatch(/open-loop: p99 ms in each second( \d+){10}; longest stall \d+ ms, \d+ of 30 ms or more\n/);
    // Its stalls are reported (how they are counted is test/open-loop.test.ts's).
    expect(open.longestStall).toEqual(expect.any(Number));
    expect(open.stalls).toEqual(expect.any(Number));
  }, 180_000);

  it.skipIf(!TEST_DATABASE_URL)(
    '--baseline measures the hand-rolled login server in turns with passkeyd and prints the ratio; --ceiling adds the null server to the turns',
    async () => {
      const out = path.join(dir, 'baseline.json');
      const tiny = [
        '--users',
        '32',
        '--concurrency',
        '4',
        '--registration-concurrency',
        '2',
        '--warmup',
        '0',
        '--duration',
        '1',
        '--registration-duration',
        '1',
        '--open-duration',
        '1',
      ];
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'bench/run.ts', '--no-build', '--database-url', TEST_DATABASE_URL!, '--baseline', '--ceiling', '--protocol', 'connect', ...tiny, '--out', out],
        { timeout: 150_000, env: { ...process.env, PASSKEYD_FROM_SOURCE: '1' } },
      );
      const report = JSON.parse(readFileSync(out, 'utf8'));
      expect(report.baseline.ops).toBeGreaterThan(0);
      expect(report.baseline.errors).toBe(0);
      expect(report.baseline.serviceCpuMicrosPerOp).toBeGreaterThan(0);
      // A B C A B C: two closed-loop rounds each.
      expect(report.login.rounds).toHaveLength(2);
      expect(report.baseline.rounds).toHaveLength(2);
      expect(report.ceiling.rounds).toHaveLength(2);
      expect(report.baseline.ratio).toBeCloseTo(report.login.perSecond / report.baseline.perSecond, 1);
      expect(report.openLoop['open-loop-baseline'].errors).toBe(0);
      expect(stdout).toMatch(/passkeyd = [\d.]+× the baseline/);
      // The null server took the same arrival rate in the open loop, and its CPU is its own process's.
      const nil = report.openLoop['open-loop-null'];
      expect(nil.rate).toBe(report.openLoop['open-loop'].rate);
      expect(nil.ops).toBeGreaterThan(0);
      expect(nil.errors).toBe(0);
      expect(nil.serviceCpuMicrosPerOp).toBeGreaterThan(0);
      expect(report.nullServer).toMatch(/null-server\.ts/);
      expect(stdout).toMatch(/\| open-loop-null at \d+\/s \| [\d.]+ \|/);
      // --ceiling: the null server's closed-loop logins/s, with its own CPU, and the others as shares of it.
      expect(report.ceiling.ops).toBeGreaterThan(0);
      expect(report.ceiling.errors).toBe(0);
      expect(report.ceiling.serviceCpuMicrosPerOp).toBeGreaterThan(0);
      expect(report.ceiling.passkeydShare).toBeCloseTo(report.login.perSecond / report.ceiling.perSecond, 1);
      expect(report.ceiling.baselineShare).toBeCloseTo(report.baseline.perSecond / report.ceiling.perSecond, 1);
      expect(report.ceiling.floorRatio).toBeCloseTo(report.ceiling.serviceCpuMicrosPerOp / report.floor.floorMicros, 0);
      expect(stdout).toMatch(/\| login, null server \(the ceiling\) \| [\d.]+ \|/);
      expect(stdout).toMatch(/passkeyd = [\d.]+ of the null server's, the baseline [\d.]+; null server CPU per login: server \d+ µs/);
    },
    180_000,
  );

  it('refuses --ceiling without --baseline, which starts the null server, before building or starting anything', async () => {
    const refused = run(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--no-build', '--ceiling', '--out', path.join(dir, 'never.json')], { timeout: 60_000 });
    await expect(refused).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('--ceiling drives the null server, which only --baseline starts') });
  }, 60_000);
});
