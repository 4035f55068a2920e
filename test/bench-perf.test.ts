import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { treePids } from '../bench/cpu.js';
import { databasePartOf, formatDatabaseSummary, formatSummary, latestPerfMap, ownerOf, parseStacks, summarize, summarizeDatabase } from '../bench/perf.js';

// Eight samples in the shape `perf script -F ip,sym,dso` prints them: innermost frame first, blank lines between.
const SCRIPT = `
	         14c46d8 Builtins_RecordWriteSaveFP (/usr/bin/node)
	    7f6866af033d JS:*mergeBuffer /work/main/node_modules/pg-protocol/dist/parser.js:57:16 (/tmp/perf-1.map)
	    7f6866a7adb2 JS:*callbackTrampoline node:internal/async_hooks:118:28 (/tmp/perf-1.map)
	         14ce0dc Builtins_JSEntryTrampoline (/usr/bin/node)

	ffffffff8100b2c1 pvm_irq_enable ([kernel.kallsyms])
	ffffffff81a0c9d2 __sys_sendmsg ([kernel.kallsyms])
	    7f6866a99c10 JS:*clearBuffer node:internal/streams/writable:744:21 (/tmp/perf-1.map)

	          d2a1f0 v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot> (/usr/bin/node)
	          d2b000 v8::internal::ScavengerCollector::JobTask::Run (/usr/bin/node)
	          a0b0c0 start_thread (/usr/lib/x86_64-linux-gnu/libc.so.6)

	    7f6866b01234 JS:*serve file:///work/main/dist/src/api/transport/unary-fast-path.js:154:25 (/tmp/perf-1.map)
	    7f6866a7adb2 JS:*callbackTrampoline node:internal/async_hooks:118:28 (/tmp/perf-1.map)

	    7f6866b05678 JS:~serve file:///work/main/dist/src/api/transport/unary-fast-path.js:154:25 (/tmp/perf-1.map)

	ffffffff81001000 do_epoll_wait ([kernel.kallsyms])
	          14b8b90 uv__io_poll (/usr/bin/node)

	          f1e2d3 __ecp_nistz256_mul_montx (/usr/bin/node)
	          f1e400 ecp_nistz256_point_add (/usr/bin/node)

	          abcdef malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)
`;

describe('bench --perf: where the service CPU goes, from perf script', () => {
  it('parses the stacks and charges each sample to its innermost JavaScript frame, else the collector, the kernel or native code', () => {
    const stacks = parseStacks(SCRIPT);
    expect(stacks).toHaveLength(8);
    expect(stacks[1]![0]).toEqual({ symbol: 'pvm_irq_enable', dso: '[kernel.kallsyms]' });
    expect(stacks.map(ownerOf)).toEqual([
      'mergeBuffer /work/main/node_modules/pg-protocol/dist/parser.js:57:16',
      'clearBuffer node:internal/streams/writable:744:21',
      '(garbage collection)',
      'serve file:///work/main/dist/src/api/transport/unary-fast-path.js:154:25',
      'serve file:///work/main/dist/src/api/transport/unary-fast-path.js:154:25',
      '(kernel)',
      '(OpenSSL)',
      '(native)',
    ]);
  });

  it('adds the samples up by part and by function, as shares', () => {
    const s = summarize(parseStacks(SCRIPT), 2);
    expect(s.samples).toBe(8);
    expect(s.parts).toEqual([
      { part: "passkeyd's own code", share: 2 / 8 },
      { part: 'pg, its protocol and types, Kysely', share: 1 / 8 },
      { part: 'socket writes (writev, with the kernel under it)', share: 1 / 8 },
      { part: 'garbage collection', share: 1 / 8 },
      { part: 'kernel, other (reads, polling)', share: 1 / 8 },
      { part: 'crypto (ES256 verify, JWT signature; OpenSSL)', share: 1 / 8 },
      { part: 'other native code (malloc, V8 runtime)', share: 1 / 8 },
    ]);
    expect(s.top).toEqual([
      { owner: 'serve file:///work/main/dist/src/api/transport/unary-fast-path.js:154:25', share: 2 / 8 },
      { owner: 'mergeBuffer /work/main/node_modules/pg-protocol/dist/parser.js:57:16', share: 1 / 8 },
    ]);
  });

  it('prints the table under the phase it sampled (--perf-phase), the login phase unless told', () => {
    const s = summarize(parseStacks(SCRIPT), 2);
    const [first, , , row] = formatSummary(s, 'registration').split('\n');
    expect(first).toBe('on-CPU samples of the service in the registration phase (perf, 8 samples):');
    expect(row).toBe("| passkeyd's own code | 25.0% |");
    expect(formatSummary(s).split('\n')[0]).toBe('on-CPU samples of the service in the login phase (perf, 8 samples):');
  });
});

describe('latestPerfMap', () => {
  it('keeps the later of two entries that overlap, and every entry that overlaps none', () => {
    const map = [
      '1000 200 JS:*parseSource node:internal/deps/cjs-module-lexer/lexer:85:22', // start-up code, collected later
      '2000 10 Builtin:A',
      '1080 40 JS:*parse node_modules/pg-protocol/dist/parser.js:26:10', // new code inside the old range
      '1100 100 JS:*serve dist/src/api/transport/unary-fast-path.js:154:25', // and more, touching the first
      '3000 8 JS:~serve dist/src/api/transport/unary-fast-path.js:154:25',
      '2008 10 JS:*late', // overlaps Builtin:A's last bytes
      'not a map line',
      '',
    ].join('\n');
    expect(latestPerfMap(map).split('\n')).toEqual([
      '1080 40 JS:*parse node_modules/pg-protocol/dist/parser.js:26:10',
      '1100 100 JS:*serve dist/src/api/transport/unary-fast-path.js:154:25',
      '2008 10 JS:*late',
      '3000 8 JS:~serve dist/src/api/transport/unary-fast-path.js:154:25',
      '',
    ]);
  });

  it('keeps entries that only touch (one ends where the next starts)', () => {
    expect(latestPerfMap('10 10 a\n20 10 b\n')).toBe('10 10 a\n20 10 b\n');
  });
});

// Seven samples of PostgreSQL's backends as perf prints them with DWARF stacks (static functions unnamed).
const PG = '/usr/lib/postgresql/15/bin/postgres';
const DATABASE_SCRIPT = `
\tffffffff8100b2c1 pvm_irq_enable ([kernel.kallsyms])
\tffffffff81e00001 __schedule ([kernel.kallsyms])
\t          0a0001 __futex_abstimed_wait_common (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t          2a0001 PGSemaphoreLock (${PG})
\t          2a0002 LWLockAcquireOrWait (${PG})
\t          2a0003 XLogFlush (${PG})
\t          2a0004 CommitTransactionCommand (${PG})
\t          47e486 PostgresMain (${PG})

\t          16b551 AllocSetContextCreateInternal (${PG})
\t          30ec8b [unknown] (${PG})
\t          2b0001 ExecInitNode (${PG})
\t          3043a8 standard_ExecutorStart (${PG})
\t          4803ee PortalRun (${PG})
\t          47e486 PostgresMain (${PG})

\t          2c0001 _bt_compare (${PG})
\t          2c0002 ExecInsertIndexTuples (${PG})
\t          2c0003 standard_ExecutorRun (${PG})
\t          4803ee PortalRun (${PG})

\t          2d0001 XLogFlush (${PG})
\t          2d0002 FlushBuffer (${PG})
\t          2c0003 standard_ExecutorRun (${PG})

\t          2e0001 DecodeDateTime (${PG})
\t          2e0002 timestamptz_in (${PG})
\t          2e0003 OidInputFunctionCall (${PG})
\t          47e486 PostgresMain (${PG})

\t          2f0001 XLogWrite (${PG})
\t          2f0002 XLogBackgroundFlush (${PG})
\t          2f0003 WalWriterMain (${PG})

\t          30ec8b [unknown] (${PG})
\t          47e486 PostgresMain (${PG})
`;

describe("bench --perf-database: where PostgreSQL's CPU goes, from perf script", () => {
  it('puts each sample in the part its innermost named function marks; background processes by their main', () => {
    expect(parseStacks(DATABASE_SCRIPT).map(databasePartOf)).toEqual([
      'commit: WAL flush (write, fdatasync, waiting for the WAL lock)', // waiting for the WAL lock, a context switch
      'executor start (each run sets up its plan: relations, indexes, expressions)',
      'executor run (scans, rows and index entries written, triggers)',
      'commit: WAL flush (write, fdatasync, waiting for the WAL lock)', // a dirty page written out by the executor
      "bind: the parameters' values read from their text (timestamps, arrays, JSON)",
      'background processes (WAL writer, checkpointer, autovacuum)', // XLogWrite, but in the WAL writer
      'other (the backend between messages, locks, catalog caches)',
    ]);
  });

  it('adds up the parts and names the innermost function of each sample, the kernel marked', () => {
    const s = summarizeDatabase(parseStacks(DATABASE_SCRIPT), 3);
    expect(s.samples).toBe(7);
    expect(s.parts[0]).toEqual({ part: 'commit: WAL flush (write, fdatasync, waiting for the WAL lock)', share: 2 / 7 });
    expect(s.parts.reduce((sum, p) => sum + p.share, 0)).toBeCloseTo(1);
    expect(s.top).toEqual([
      { owner: '[kernel] pvm_irq_enable', share: 1 / 7 },
      { owner: 'AllocSetContextCreateInternal', share: 1 / 7 },
      { owner: '_bt_compare', share: 1 / 7 },
    ]);
    const [first, , , row] = formatDatabaseSummary(s).split('\n');
    expect(first).toBe('on-CPU samples of PostgreSQL in the login phase (perf, 7 samples):');
    expect(row).toBe('| commit: WAL flush (write, fdatasync, waiting for the WAL lock) | 28.6% |');
  });
});

describe('treePids', () => {
  it('lists a process and the children it has running, and nothing outside its tree', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const pids = treePids(process.pid);
      expect(pids).toContain(process.pid);
      expect(pids).toContain(child.pid);
      expect(pids).not.toContain(process.ppid);
      expect(treePids(child.pid!)).toEqual([child.pid]);
    } finally {
      child.kill();
    }
  });
});
