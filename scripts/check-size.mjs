#!/usr/bin/env node
// Checks that no hand-written source file is over 400 lines (npm run lint:size; part of npm run lint and CI).
// Prints the offenders, longest first, and exits 1 when there is one.
//
//   node scripts/check-size.mjs                 all hand-written code: src/ test/ bench/ web/src/ scripts/ bin/ and top-level config files
//   node scripts/check-size.mjs --max 300 src   another limit, or only some folders
//
// Tests count: a test file is read and kept up like any other (split one by what it tests, its helpers
// into test/helpers/). Generated and output folders are not hand-written and are skipped: gen/, dist/,
// node_modules/, bench/results/, test-artifacts/, data/, scratch/, .ci/out/.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DEFAULT_ROOTS = ['src', 'test', 'bench', 'web/src', 'scripts', 'bin', '.'];
const EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx', '.js', '.mjs', '.cjs', '.jsx', '.sh']);
const SKIP = new Set(['gen', 'dist', 'node_modules', 'bench/results', 'test-artifacts', 'data', 'scratch', '.ci/out', '.git']);

const args = process.argv.slice(2);
let max = 400;
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--max') max = Number(args[++i]);
  else if (args[i]?.startsWith('--max=')) max = Number(args[i].slice('--max='.length));
  else roots.push(args[i]);
}
if (!Number.isInteger(max) || max < 1) {
  console.error('usage: node scripts/check-size.mjs [--max N] [folder...]');
  process.exit(2);
}

const posix = (p) => p.split(sep).join('/');

/** The source files under `dir` (relative to the repository root); `shallow` lists `dir` only, not its folders. */
function sourceFiles(dir, shallow) {
  const out = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = posix(join(dir, entry.name));
    if (SKIP.has(rel)) continue;
    if (entry.isDirectory()) {
      if (!shallow) out.push(...sourceFiles(rel, false));
    } else if (entry.isFile() && EXTENSIONS.has(extname(entry.name))) out.push(rel);
  }
  return out;
}

/** Lines as `wc -l` counts them, plus a last line without a newline. */
function lineCount(path) {
  const text = readFileSync(join(ROOT, path), 'utf8');
  if (text.length === 0) return 0;
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return text.endsWith('\n') ? n : n + 1;
}

const files = new Set();
for (const root of roots.length ? roots : DEFAULT_ROOTS) {
  const rel = posix(relative(ROOT, join(ROOT, root))) || '.';
  let stat;
  try {
    stat = statSync(join(ROOT, rel));
  } catch {
    if (roots.length) {
      console.error(`check-size: no such file or folder: ${root}`);
      process.exit(2);
    }
    continue;
  }
  if (stat.isFile()) files.add(rel);
  // The repository root itself: only its own files (vitest.config.ts, .dependency-cruiser.cjs, ...).
  else for (const f of sourceFiles(rel, rel === '.')) files.add(f);
}

const offenders = [...files]
  .map((path) => ({ path: path.replace(/^\.\//, ''), lines: lineCount(path) }))
  .filter((f) => f.lines > max)
  .sort((a, b) => b.lines - a.lines || a.path.localeCompare(b.path));

if (offenders.length === 0) {
  console.log(`check-size: ${files.size} hand-written source files, none over ${max} lines`);
  process.exit(0);
}
console.error(`check-size: ${offenders.length} of ${files.size} hand-written source files are over ${max} lines (split them by responsibility):`);
const width = Math.max(...offenders.map((f) => f.path.length));
for (const f of offenders) console.error(`  ${f.path.padEnd(width)}  ${String(f.lines).padStart(5)} lines  (${f.lines - max} over)`);
process.exit(1);
