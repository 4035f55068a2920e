/**
 * `npm run bench`: starts the compiled passkeyd against PostgreSQL (or PGlite with --pglite), provisions
 * users with passkeys, then drives registrations and full logins from a separate load-generator process
 * over gRPC (or Connect JSON on HTTP/1.1 with --protocol connect). Prints throughput, latency, errors,
 * the service's CPU per login and, measured in the same run, the crypto floor; writes JSON for comparing runs.
 *
 *   npm run bench -- [--pglite] [--protocol grpc|connect] [--client lean|connect] [--concurrency 64] [--duration 20] [--warmup 5]
 *                    [--users 500] [--registration-duration 10] [--registration-concurrency 16] [--workers 0]
 *                    [--database-url URL] [--out bench/results/latest.json] [--no-build] [--profile] [--perf] [--perf-database] [--perf-phase registration]
 *                    [--baseline] [--ceiling] [--rounds 2] [--open-rate 0] [--open-duration 10]
 *
 * --baseline also starts bench/baseline-server.ts (a hand-rolled login server on the same database) and
 * drives it and passkeyd in turns, A B A B, printing the ratio. After the closed-loop phases, logins
 * arrive at a steady rate (--open-rate, default half the closed-loop rate) and p50/p99 are printed; with
 * --baseline the same rate also goes to bench/null-server.ts (one committed INSERT per call, nothing
 * else), whose p99 is the tail the machine itself adds to a login's two calls at that rate.
 * --ceiling (with --baseline) gives the null server closed-loop turns too, A B C A B C: its logins/s is
 * the most any server reaches on this machine with these two calls, two commits and this load generator,
 * and the bench prints passkeyd's and the baseline's as shares of it.
 * --perf samples the service (one worker) on the CPU with Linux perf during the login phase and prints
 * where its CPU goes (bench/perf.ts); --perf-database does the same for the PostgreSQL server on this
 * machine (heavier to record: the run's figures drop with it).
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseArgs } from '../src/cli/args.js';
import { treeCpuSeconds, treePids } from './cpu.js';
import { measureFloor } from './floor.js';
import { formatDatabaseSummary, formatSummary, latestPerfMap, readStacks, startDatabasePerf, startPerf, stopPerf, summarize, summarizeDatabase, type PerfSummary } from './perf.js';
import { startFlags } from './start-flags.js';
import type { LoadParams, OpenLoopStats, PhaseStats } from './load.js';

const { flags } = parseArgs(process.argv.slice(2));
const num = (name: string, dflt: number) => (flags[name] !== undefined ? Number(flags[name]) : dflt);
const embedded = flags.pglite === 'true';
const protocol = (flags.protocol ?? 'grpc') as 'grpc' | 'connect';
const databaseUrl = flags['database-url'] ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const out = flags.out ?? 'bench/results/latest.json';
const baseline = flags.baseline === 'true';
if (baseline && embedded) throw new Error('--baseline needs PostgreSQL (the hand-rolled server uses pg)');
const ceiling = flags.ceiling === 'true';
if (ceiling && !baseline) throw new Error('--ceiling drives the null server, which only --baseline starts');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('passkeyd did not become ready');
}

const us = (seconds: number) => Math.round(seconds * 1e6);

/** The PostgreSQL server's main process on this machine (its backends are its children), if found. */
function postmasterPid(): number | undefined {
  try {
    const out = execFileSync('pgrep', ['-o', '-x', 'postgres']).toString().trim();
    return out ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

async function main() {
  if (flags['no-build'] !== 'true') execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const origin = 'http://localhost:8080';
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const dataDir = embedded ? mkdtempSync(path.join(os.tmpdir(), 'passkeyd-bench-')) : undefined;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'production',
    PASSKEYD_PORT: String(port),
    PASSKEYD_ORIGINS: origin,
    PASSKEYD_LOG_LEVEL: flags['log-level'] ?? 'info',
    // One load generator is one client address: lift the anonymous-endpoint limits for the run.
    PASSKEYD_RATE_LIMIT: '1000000000',
    PASSKEYD_WORKERS: flags.workers ?? '0',
    // Each server keeps its idle database connections for the whole run (so do the baseline and null
    // servers): the servers take turns, and one closing its idle pool 10 s after its turn (ten
    // PostgreSQL backends exiting at once) stalled the next one's open-loop phase in its 7th second.
    PASSKEYD_DATABASE_IDLE_TIMEOUT: '0',
    ...(embedded ? { PASSKEYD_DATA_DIR: dataDir } : { DATABASE_URL: databaseUrl, PASSKEYD_DATABASE_SCHEMA: schema }),
  };
  delete (embedded ? env : {}).DATABASE_URL;

  const floor = measureFloor();
  mkdirSync('bench/results', { recursive: true });
  // --profile: one worker under the V8 profiler; the .cpuprofile files land in bench/results/profiles.
  const profile = flags.profile === 'true';
  // --perf: one worker, sampled on the CPU by Linux perf during the (first) login phase; V8 writes
  // /tmp/perf-<pid>.map so perf can name the JavaScript frames.
  const perf = flags.perf === 'true';
  // --perf-database: PostgreSQL's processes on this machine, sampled in the same phase.
  const perfDatabase = flags['perf-database'] === 'true';
  // The PostgreSQL server on this machine (its backends are its children), whose CPU the bench reads.
  const postmaster = embedded ? undefined : postmasterPid();
  if (perfDatabase && !postmaster) {
    throw new Error('--perf-database samples a PostgreSQL server on this machine, and none was found (PGlite runs inside the service: --perf samples it)');
  }
  // --perf-phase registration samples the registration phase instead.
  const perfPhase = flags['perf-phase'] === 'registration' ? 'registration' : 'login';
  if (profile || perf) env.PASSKEYD_WORKERS = '1';
  const nodeArgs = [
    ...startFlags(),
    ...(profile ? ['--cpu-prof', '--cpu-prof-dir', 'bench/results/profiles'] : []),
    // Code that never moves keeps its entry in the map true (V8 compacts code space otherwise).
    ...(perf ? ['--perf-basic-prof', '--no-compact-code-space'] : []),
  ];
  const perfFile = 'bench/results/perf.data';
  let perfRecording: ChildProcess | undefined;
  let perfSummary: PerfSummary | undefined;
  let perfMap: string | undefined;
  // PostgreSQL on this machine is sampled beside the service (its processes as the phase starts).
  const databasePerfFile = 'bench/results/perf-database.data';
  let databasePerfRecording: ChildProcess | undefined;
  let databasePerfSummary: PerfSummary | undefined;
  // The first phase named perfPhase is sampled, and only that one (with --baseline it comes once per round).
  let sampling: 'waiting' | 'recording' | 'done' = perf || perfDatabase ? 'waiting' : 'done';
  const server = spawn(process.execPath, [...nodeArgs, 'bin/passkeyd.js', 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  // Where V8 names the server's JavaScript code for perf (--perf-basic-prof).
  const perfMapFile = `/tmp/perf-${server.pid}.map`;
  const readPerfMap = () => (existsSync(perfMapFile) ? readFileSync(perfMapFile, 'utf8') : undefined);
  let result: LoadResult | undefined;
  let baselineServer: ChildProcess | undefined;
  let nullServer: ChildProcess | undefined;
  // CPU seconds and operations per phase, summed over its rounds.
  const spent: Record<string, { service: number; database: number; load: number; ops: number }> = {};
  try {
    await waitReady(url);
    const adminToken = execFileSync(process.execPath, ['bin/passkeyd.js', 'admin', 'token', '--role', 'instance_admin', '--ttl', '2h'], { env }).toString().trim();
    const params: LoadParams = {
      url,
      origin,
      adminToken,
      protocol,
      client: flags.client === 'connect' ? 'connect' : 'lean',
      users: num('users', 500),
      concurrency: num('concurrency', 64),
      warmupSeconds: num('warmup', 5),
      durationSeconds: num('duration', 20),
      registrationSeconds: num('registration-duration', 10),
      registrationConcurrency: num('registration-concurrency', 16),
      baseline,
      rounds: num('rounds', baseline ? 2 : 1),
      ceiling,
      openRate: num('open-rate', 0),
      openSeconds: num('open-duration', 10),
    };
    const load = fork('bench/load.ts', [], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
    // Where the machine's CPU goes during a phase: the service, the database server, the load generator.
    // The baseline's phases count the baseline server's CPU as the service's.
    const sample = (phase: string) => ({
      service: treeCpuSeconds((phase.endsWith('baseline') ? baselineServer! : phase.endsWith('null') ? nullServer! : server).pid!),
      database: postmaster ? treeCpuSeconds(postmaster) : 0,
      load: treeCpuSeconds(load.pid!),
    });
    const marks: Record<string, ReturnType<typeof sample>> = {};
    result = await new Promise((resolve, reject) => {
      load.on('message', (m: any) => {
        if (m.type === 'phase-start') {
          marks[m.phase] = sample(m.phase);
          if (m.phase === perfPhase && sampling === 'waiting') {
            sampling = 'recording';
            if (perf) perfRecording = startPerf(server.pid!, perfFile);
            if (perfDatabase) databasePerfRecording = startDatabasePerf(treePids(postmaster!), databasePerfFile);
          }
          load.send({ ack: m.type });
        } else if (m.type === 'phase-end') {
          const now = sample(m.phase);
          const s = (spent[m.phase] ??= { service: 0, database: 0, load: 0, ops: 0 });
          for (const k of ['service', 'database', 'load'] as const) s[k] += now[k] - marks[m.phase]![k];
          s.ops += m.ops;
          if (m.phase === perfPhase && sampling === 'recording') {
            sampling = 'done';
            Promise.all([perfRecording && stopPerf(perfRecording), databasePerfRecording && stopPerf(databasePerfRecording)]).then(() => {
              // The map as the sampled phase left it: code made after it cannot take the phase's addresses.
              perfMap = readPerfMap();
              load.send({ ack: m.type });
            }, reject);
            return;
          }
          load.send({ ack: m.type });
        } else if (m.type === 'provisioned') {
          const serverEnv = { ...env, DATABASE_URL: databaseUrl, PASSKEYD_DATABASE_SCHEMA: schema, PORT: '0', ORIGIN: origin, RP_ID: 'localhost' };
          Promise.all([startServer('bench/baseline-server.ts', serverEnv), startServer('bench/null-server.ts', serverEnv)]).then(([b, f]) => {
            baselineServer = b.child;
            nullServer = f.child;
            load.send({ ack: m.type, baselineUrl: b.url, nullUrl: f.url });
          }, reject);
        } else if (m.type === 'result') resolve(m);
        else if (m.type === 'error') reject(new Error(m.message));
      });
      load.on('exit', (code) => code && reject(new Error(`load generator exited with ${code}`)));
      load.send(params);
    });
  } finally {
    baselineServer?.kill('SIGTERM');
    nullServer?.kill('SIGTERM');
    if (perfRecording) await stopPerf(perfRecording);
    if (databasePerfRecording) await stopPerf(databasePerfRecording);
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    if (perfRecording) {
      const map = perfMap ?? readPerfMap();
      if (map !== undefined) writeFileSync(perfMapFile, latestPerfMap(map));
      perfSummary = summarize(readStacks(perfFile));
      // The JavaScript frames' map, and the log V8 writes beside it into the working directory.
      rmSync(perfMapFile, { force: true });
      for (const f of readdirSync('.')) if (new RegExp(`^isolate-0x[0-9a-f]+-${server.pid}-v8\\.log$`).test(f)) rmSync(f, { force: true });
    }
    if (databasePerfRecording) {
      databasePerfSummary = summarizeDatabase(readStacks(databasePerfFile));
      // Each sample carries a copy of its stack (16 KB): about 100 MB for a 20 s phase, read once.
      rmSync(databasePerfFile, { force: true });
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (!embedded) {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
    }
  }

  const per = (phase: string) => {
    const s = spent[phase];
    if (!s) return undefined;
    const ops = Math.max(1, s.ops);
    return { service: us(s.service / ops), database: us(s.database / ops), loadGenerator: us(s.load / ops) };
  };
  const split = { login: per('login'), registration: per('registration'), baseline: per('baseline'), null: per('null') };
  const loginCpuMicros = split.login?.service ?? 0;
  const r = result!;
  // One rate over another, to two places; a CPU time over the floor, to one.
  const share = (a: number, b: number) => Math.round((a / Math.max(0.01, b)) * 100) / 100;
  const timesFloor = (micros: number) => Math.round((micros / floor.floorMicros) * 10) / 10;
  const withCpu = <T extends object>(stats: T, phase: string) => ({ ...stats, serviceCpuMicrosPerOp: per(phase)?.service ?? 0, cpuMicrosPerOp: per(phase) });
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    backend: embedded ? 'pglite' : 'postgres',
    protocol,
    client:
      flags.client === 'connect'
        ? `connect-node ${protocol === 'grpc' ? 'gRPC' : 'Connect (JSON, HTTP/1.1)'} transport`
        : protocol === 'grpc'
          ? 'lean gRPC client (bench/grpc-client.ts)'
          : 'lean Connect JSON client on HTTP/1.1 (bench/connect-client.ts)',
    workers: flags.workers ?? 'all cores',
    login: withCpu(r.login, 'login'),
    registration: withCpu(r.registration, 'registration'),
    ...(r.baseline
      ? {
          baseline: {
            ...withCpu(r.baseline, 'baseline'),
            server: 'bench/baseline-server.ts: node:http, SimpleWebAuthn, pg, jose; one process; Connect JSON over HTTP/1.1',
            ratio: share(r.login.perSecond, r.baseline.perSecond),
          },
        }
      : {}),
    ...(r.null
      ? {
          ceiling: {
            ...withCpu(r.null, 'null'),
            server: 'bench/null-server.ts, closed loop: each call commits one INSERT and answers a fixed shape',
            passkeydShare: share(r.login.perSecond, r.null.perSecond),
            ...(r.baseline ? { baselineShare: share(r.baseline.perSecond, r.null.perSecond) } : {}),
            floorRatio: timesFloor(split.null?.service ?? 0),
          },
        }
      : {}),
    openLoop: Object.fromEntries(Object.entries(r.open).map(([phase, stats]) => [phase, withCpu(stats, phase)])),
    ...(r.open['open-loop-null'] ? { nullServer: 'bench/null-server.ts: node:http and pg; each call commits one INSERT and answers a fixed shape' } : {}),
    floor: { ...floor, ratio: timesFloor(loginCpuMicros) },
    ...(perfSummary ? { perf: { phase: perfPhase, ...perfSummary } } : {}),
    ...(databasePerfSummary ? { perfDatabase: { phase: perfPhase, ...databasePerfSummary } } : {}),
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const row = (name: string, s: PhaseStats & { serviceCpuMicrosPerOp: number }) =>
    `| ${name} | ${s.perSecond} | ${s.p50} | ${s.p95} | ${s.p99} | ${s.errors} | ${s.serviceCpuMicrosPerOp} |`;
  const rows = [row('login', report.login), row('registration', report.registration)];
  if (report.baseline) rows.push(row('login, hand-rolled baseline', report.baseline));
  if (report.ceiling) rows.push(row('login, null server (the ceiling)', report.ceiling));
  for (const [phase, stats] of Object.entries(report.openLoop)) rows.push(row(`${phase} at ${stats.rate}/s`, stats));
  const bySecond = Object.entries(r.open)
    .map(([phase, s]) => `${phase}: p99 ms in each second ${s.p99BySecond.join(' ')}; longest stall ${s.longestStall} ms, ${s.stalls} of 30 ms or more\n`)
    .join('');
  const firstErrors = [['login', r.login], ['registration', r.registration], ['baseline', r.baseline], ...Object.entries(r.open)]
    .filter(([, s]) => (s as PhaseStats | undefined)?.firstError)
    .map(([name, s]) => `first ${name} error: ${(s as PhaseStats).firstError}\n`)
    .join('');
  console.log(`
passkeyd bench: ${report.backend}, ${protocol} (${report.client}), ${report.machine.cpus} cores (${report.machine.model}), node ${process.version}
| phase | per second | p50 ms | p95 ms | p99 ms | errors | service CPU µs/op |
|---|---|---|---|---|---|---|
${rows.join('\n')}
floor (ES256 verify ${floor.verifyMicros} µs + JWT sign ${floor.jwtSignMicros} µs) = ${floor.floorMicros} µs; login CPU = ${report.floor.ratio}× floor
CPU per login: service ${split.login?.service} µs, database ${split.login?.database} µs, load generator ${split.login?.loadGenerator} µs (registration: ${split.registration?.service} / ${split.registration?.database} / ${split.registration?.loadGenerator} µs)
${
  report.baseline
    ? `baseline: logins/s per round passkeyd ${r.login.rounds.join(', ')} / baseline ${r.baseline!.rounds.join(', ')}; passkeyd = ${report.baseline.ratio}× the baseline; baseline CPU per login: server ${split.baseline?.service} µs, database ${split.baseline?.database} µs\n`
    : ''
}${
  report.ceiling
    ? `ceiling: logins/s per round null server ${r.null!.rounds.join(', ')}; passkeyd = ${report.ceiling.passkeydShare} of the null server's, the baseline ${report.ceiling.baselineShare}; null server CPU per login: server ${split.null?.service} µs (${report.ceiling.floorRatio}× floor), database ${split.null?.database} µs\n`
    : ''
}${bySecond}${
  r.open['open-loop-null'] ? 'open-loop-null: bench/null-server.ts, each call commits one INSERT and nothing else: the tail the machine adds at this rate\n' : ''
}${firstErrors}${perfSummary ? `${formatSummary(perfSummary, perfPhase)}\n` : ''}${
  databasePerfSummary ? `${formatDatabaseSummary(databasePerfSummary, perfPhase)}\n` : ''
}written to ${out}`);
}

interface LoadResult {
  registration: PhaseStats;
  login: PhaseStats & { rounds: number[] };
  baseline?: PhaseStats & { rounds: number[] };
  null?: PhaseStats & { rounds: number[] };
  open: Record<string, OpenLoopStats>;
}

/** Starts one of the comparison servers (the hand-rolled baseline, the null server) on the bench's database and schema; resolves with its URL. */
async function startServer(script: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = fork(script, [], { execArgv: ['--import', 'tsx'], env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (m: any) => m.type === 'listening' && resolve(m.port));
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
