import { describe, expect, it } from 'vitest';
import { formatSummary, latestPerfMap, ownerOf, parseStacks, summarize } from '../bench/perf.js';

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
