import { type ChildProcess, execFileSync, spawn } from 'node:child_process';

/**
 * `npm run bench -- --perf`: where the service's CPU goes, sampled by Linux perf only while the process
 * runs on a core (`perf record -e cpu-clock -g`). V8's profiler (`--profile`) samples by the clock and
 * charges the time the main thread waits for a core to whatever it was doing (mostly a socket write
 * that woke the process at the other end), so it overstates those. The server runs under
 * `--perf-basic-prof`, so perf can name its JavaScript frames.
 */

function requirePerf(): void {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('--perf and --perf-database need Linux perf on the PATH (Debian: apt-get install linux-perf)');
  }
}

/** Starts perf on a process; the profile lands in `out`. Throws a clear error when perf is missing. */
export function startPerf(pid: number, out: string): ChildProcess {
  requirePerf();
  return spawn('perf', ['record', '-e', 'cpu-clock', '-F', '999', '-g', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'ignore'] });
}

/**
 * Starts perf on PostgreSQL's processes (the bench's database on this machine). PostgreSQL is built
 * without frame pointers, so perf unwinds its stacks from a copy of each sample's stack with the
 * binary's unwind tables (`--call-graph dwarf`): heavier to record, so at half the service's rate.
 */
export function startDatabasePerf(pids: number[], out: string): ChildProcess {
  requirePerf();
  return spawn('perf', ['record', '-e', 'cpu-clock', '-F', '499', '--call-graph', 'dwarf,16384', '-p', pids.join(','), '-o', out], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
}

/** Stops perf and waits until it has written its file. */
export async function stopPerf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return; // ended already (perf exits on SIGINT)
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  await exited;
}

/**
 * A `--perf-basic-prof` map (read at the end of the sampled phase) without its stale lines. V8 appends
 * a line for each piece of code it makes, and never takes one out: when code is collected and its
 * addresses are used again, the map holds both, and perf charged samples of the newer code to the older
 * name (in one login phase, 1.6% went to `insertSession` instead of 0.6%). A later line wins: each
 * earlier one that overlaps it is dropped.
 */
export function latestPerfMap(text: string): string {
  // Addresses are 47 bits at most: exact as numbers.
  const entries: { start: number; end: number; line: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) /.exec(line);
    if (m) entries.push({ start: parseInt(m[1]!, 16), end: parseInt(m[1]!, 16) + parseInt(m[2]!, 16), line });
  }
  // Latest first, each kept unless it overlaps one kept already (kept: sorted by start, never overlapping).
  const kept: typeof entries = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    let lo = 0;
    let hi = kept.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (kept[mid]!.start < e.start) lo = mid + 1;
      else hi = mid;
    }
    if ((lo > 0 && kept[lo - 1]!.end > e.start) || (lo < kept.length && kept[lo]!.start < e.end)) continue;
    kept.splice(lo, 0, e);
  }
  return kept.map((e) => `${e.line}\n`).join('');
}

/** The stacks of a recording, innermost frame first (`perf script -F ip,sym,dso`). */
export function readStacks(file: string): Frame[][] {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'ip,sym,dso'], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  return parseStacks(text);
}

export interface Frame {
  symbol: string;
  dso: string;
}

/** Parses `perf script -F ip,sym,dso` output: samples separated by blank lines, one frame per line. */
export function parseStacks(text: string): Frame[][] {
  const stacks: Frame[][] = [];
  let current: Frame[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s+[0-9a-f]+ (.*) \((.*)\)$/.exec(line);
    if (m) current.push({ symbol: m[1]!, dso: m[2]! });
    else if (line.trim() === '' && current.length) {
      stacks.push(current);
      current = [];
    }
  }
  if (current.length) stacks.push(current);
  return stacks;
}

const GC = /Scaveng|Heap::|ConcurrentMarking|MarkCompact|Sweep|MinorMC|IncrementalMarking/;
const CRYPTO = /ecp_nistz|ecdsa|ECDSA|sha256|SHA256|sha512|SHA512|^BN_|^bn_|OPENSSL_|^EVP_|^ossl_|^ec_|^EC_/;

/** The function a sample is charged to: its innermost JavaScript frame, else the collector, the kernel or native code. */
export function ownerOf(stack: Frame[]): string {
  for (const f of stack) {
    if (f.symbol.startsWith('JS:') && !f.symbol.includes('callbackTrampoline')) return f.symbol.replace(/^JS:[*^~]?/, '');
  }
  if (stack.slice(0, 8).some((f) => GC.test(f.symbol))) return '(garbage collection)';
  if (stack[0]?.dso.includes('kernel')) return '(kernel)';
  // OpenSSL's assembly has no frame pointers, so perf often cannot walk from it to the JavaScript caller.
  if (CRYPTO.test(stack[0]?.symbol ?? '')) return '(OpenSSL)';
  return '(native)';
}

/** The parts of a server a function belongs to, in the order the README's table names them. */
const PARTS: [string, (owner: string) => boolean][] = [
  ['socket writes (writev, with the kernel under it)', (o) => /clearBuffer node:internal\/streams\/writable|writevGeneric|writeGeneric/.test(o)],
  ['garbage collection', (o) => o === '(garbage collection)'],
  ['crypto (ES256 verify, JWT signature; OpenSSL)', (o) => o === '(OpenSSL)' || /(sign|verify)OneShot node:internal\/crypto\/sig/.test(o)],
  ['protobuf and Connect', (o) => /node_modules\/@(bufbuild|connectrpc)\//.test(o)],
  ['pg, its protocol and types, Kysely', (o) => /node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-date|postgres-array|postgres-bytea|postgres-interval|kysely)\//.test(o)],
  ['HTTP server, request streams, Headers', (o) => /node:_http_|node:internal\/streams\/readable|undici/.test(o)],
  [
    'promises, async hooks, timers, events',
    (o) => /node:internal\/process\/task_queues|node:internal\/async_hooks|node:internal\/timers|node:timers|node:events|abort_controller/.test(o),
  ],
  ["passkeyd's own code", (o) => /\/(dist\/)?src\/[\w/-]+\.[jt]s/.test(o) && !o.includes('node_modules')],
  ['kernel, other (reads, polling)', (o) => o === '(kernel)'],
  ['other native code (malloc, V8 runtime)', (o) => o === '(native)'],
];

export interface PerfSummary {
  samples: number;
  /** Share of the samples per part, largest first. */
  parts: { part: string; share: number }[];
  /** The functions with the most samples charged to them. */
  top: { owner: string; share: number }[];
}

/** Shares of the samples by part and by the function each is charged to (`classify` tells both). */
function tally(stacks: Frame[][], topN: number, classify: (stack: Frame[]) => { part: string; owner: string }): PerfSummary {
  const parts = new Map<string, number>();
  const owners = new Map<string, number>();
  for (const stack of stacks) {
    const { part, owner } = classify(stack);
    owners.set(owner, (owners.get(owner) ?? 0) + 1);
    parts.set(part, (parts.get(part) ?? 0) + 1);
  }
  const n = Math.max(1, stacks.length);
  const ranked = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    samples: stacks.length,
    parts: ranked(parts).map(([part, c]) => ({ part, share: c / n })),
    top: ranked(owners)
      .slice(0, topN)
      .map(([owner, c]) => ({ owner, share: c / n })),
  };
}

export function summarize(stacks: Frame[][], topN = 15): PerfSummary {
  return tally(stacks, topN, (stack) => {
    const owner = ownerOf(stack);
    return { owner, part: PARTS.find(([, test]) => test(owner))?.[0] ?? 'other JavaScript (Node, libraries)' };
  });
}

/** A summary as the bench prints it: the parts' table, then the functions. */
function formatTable(s: PerfSummary, title: string, functions: string, name: (owner: string) => string): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [`${title} (perf, ${s.samples} samples):`, '| part | share |', '|---|---|'];
  for (const p of s.parts) lines.push(`| ${p.part} | ${pct(p.share)} |`);
  lines.push(`${functions}:`);
  for (const t of s.top) lines.push(`  ${pct(t.share).padStart(6)} ${name(t.owner).slice(0, 140)}`);
  return lines.join('\n');
}

/** The service's summary as the bench prints it. */
export function formatSummary(s: PerfSummary, phase = 'login'): string {
  return formatTable(s, `on-CPU samples of the service in the ${phase} phase`, 'functions with the most samples', (o) =>
    o.replace(/file:\/\/\S*?\/(node_modules|dist|src)\//, '$1/'),
  );
}

/**
 * The parts of PostgreSQL's work, each named by the functions that mark it (PostgreSQL 15's names; its
 * static functions show as `[unknown]`). A sample belongs to the innermost frame that names a part: a
 * WAL flush inside the executor (a dirty page written out) is the flush's, and a palloc inside
 * ExecInitNode is the executor start's. Background processes go by the main function outside it all.
 */
const DATABASE_PARTS: [string, RegExp][] = [
  ['commit: WAL flush (write, fdatasync, waiting for the WAL lock)', /^(XLogFlush|XLogWrite|issue_xlog_fsync)$/],
  ['transaction start and commit, other than the WAL flush', /^(CommitTransactionCommand|StartTransactionCommand|AbortCurrentTransaction)$/],
  ['executor start (each run sets up its plan: relations, indexes, expressions)', /^(standard_ExecutorStart|ExecInitNode|PortalStart)$/],
  ['executor run (scans, rows and index entries written, triggers)', /^(standard_ExecutorRun|standard_ExecutorFinish|ExecutePlan)$/],
  ['executor end', /^(standard_ExecutorEnd|PortalDrop|FreeExecutorState)$/],
  ["bind: the parameters' values read from their text (timestamps, arrays, JSON)", /^(OidInputFunctionCall|OidReceiveFunctionCall|getTypeInputInfo|getTypeBinaryInputInfo)$/],
  ['plan cache (checking and choosing the prepared plan)', /^(GetCachedPlan|RevalidateCachedQuery|pg_plan_queries|pg_analyze_and_rewrite_fixedparams|raw_parser)$/],
  ["reading the client's messages", /^(pq_getbyte|pq_getmessage|pq_getbytes|secure_read)$/],
  ['sending answers (rows written as text, the socket)', /^(secure_write|socket_flush|internal_flush|printtup|OutputFunctionCall|SendRowDescriptionMessage)$/],
];

const DATABASE_BACKGROUND = /^(WalWriterMain|CheckpointerMain|BackgroundWriterMain|AuxiliaryProcessMain|AutoVacWorkerMain|AutoVacLauncherMain|do_autovacuum|PgArchiverMain)$/;

/** The part of PostgreSQL's work a sample belongs to (see DATABASE_PARTS). */
export function databasePartOf(stack: Frame[]): string {
  if (stack.some((f) => DATABASE_BACKGROUND.test(f.symbol))) return 'background processes (WAL writer, checkpointer, autovacuum)';
  for (const f of stack) {
    const part = DATABASE_PARTS.find(([, names]) => names.test(f.symbol));
    if (part) return part[0];
  }
  return 'other (the backend between messages, locks, catalog caches)';
}

/** PostgreSQL's samples by part, and the functions that ran (innermost named frame) with the most. */
export function summarizeDatabase(stacks: Frame[][], topN = 10): PerfSummary {
  return tally(stacks, topN, (stack) => {
    const named = stack.find((f) => f.symbol !== '[unknown]');
    return { part: databasePartOf(stack), owner: named ? (named.dso.includes('kernel') ? `[kernel] ${named.symbol}` : named.symbol) : '[unknown]' };
  });
}

/** The database's summary as the bench prints it. */
export function formatDatabaseSummary(s: PerfSummary, phase = 'login'): string {
  return formatTable(s, `on-CPU samples of PostgreSQL in the ${phase} phase`, 'functions with the most samples (innermost named frame)', (o) => o);
}
