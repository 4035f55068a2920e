#!/usr/bin/env node
// Bundles the hosted pages (web/) into dist/pages/: minified ES modules, CSS and a favicon under
// content-hashed names in assets/, and the HTML pages pointing at them. Everything the pages need is in
// the output; nothing is fetched from elsewhere at run time. passkeyd serves the result (src/server/pages.ts).
//
//   node scripts/build-pages.mjs            (npm run build:pages; also part of npm run build and npm start)
//
// Safe to run while a server or another build runs: output is deterministic, a file is only written
// when its bytes change, and each write is a rename of a complete temporary file.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const WEB = join(ROOT, 'web');
const OUT = join(ROOT, 'dist', 'pages');

/** Script entry points, by the name the HTML uses (/assets/<name>.js). */
const SCRIPTS = ['sign-in', 'register', 'account'];
/** The HTML pages (web/<name>); the server maps its routes to them. */
const PAGES = ['index.html', 'register.html', 'account.html'];
/** Browsers the pages are written for: all of them have WebAuthn and ES modules. */
const TARGET = ['chrome109', 'edge109', 'firefox115', 'safari16'];

const short = (bytes) => createHash('sha256').update(bytes).digest('base64url').slice(0, 10).replace(/[-_]/g, 'x');

/**
 * Checks an HTML page against the Content-Security-Policy it is served with (no inline script, style or
 * event handler) and against fetching from elsewhere (no absolute URLs in src/href).
 */
function checkHtml(name, html) {
  const problems = [];
  if (/<script(?![^>]*\bsrc=)[^>]*>/i.test(html)) problems.push('an inline <script>');
  if (/<style[\s>]/i.test(html)) problems.push('a <style> element');
  if (/\sstyle\s*=/i.test(html)) problems.push('a style attribute');
  if (/\son[a-z]+\s*=/i.test(html)) problems.push('an inline event handler');
  if (/\s(?:src|href)\s*=\s*["']?(?:[a-z][a-z0-9+.-]*:)?\/\//i.test(html)) problems.push('a URL on another host');
  if (problems.length) throw new Error(`web/${name}: ${problems.join(', ')} (the pages are served with a strict CSP and fetch nothing from elsewhere)`);
}

/** Writes a file only when its content differs, through a temporary file and a rename. */
function writeIfChanged(path, bytes) {
  if (existsSync(path) && readFileSync(path).equals(bytes)) return false;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return true;
}

/**
 * Builds the pages into `outDir` (default dist/pages). Returns the files written, with their sizes.
 * @param {{ outDir?: string }} [options]
 */
export async function buildPages(options = {}) {
  const outDir = options.outDir ?? OUT;
  const started = performance.now();
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [...SCRIPTS.map((s) => ({ in: `web/src/${s}.ts`, out: s })), { in: 'web/styles.css', out: 'styles' }],
    outdir: 'assets',
    write: false,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: TARGET,
    minify: true,
    charset: 'utf8',
    legalComments: 'none',
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    metafile: true,
    logLevel: 'warning',
  });

  /** @type {Map<string, Uint8Array>} assets/<file> → bytes */
  const assets = new Map();
  /** @type {Map<string, string>} logical name (sign-in.js, styles.css, favicon.svg) → hashed file name */
  const names = new Map();
  /** @type {Map<string, string[]>} logical script name → the chunks it imports (modulepreload) */
  const preloads = new Map();
  const outBase = join(ROOT, 'assets');
  for (const file of result.outputFiles) assets.set(relative(outBase, file.path), file.contents);
  for (const [out, meta] of Object.entries(result.metafile.outputs)) {
    if (!meta.entryPoint) continue;
    const file = relative('assets', out);
    const logical = meta.entryPoint === 'web/styles.css' ? 'styles.css' : `${meta.entryPoint.replace(/^web\/src\//, '').replace(/\.ts$/, '')}.js`;
    names.set(logical, file);
    preloads.set(
      logical,
      meta.imports.filter((i) => i.kind === 'import-statement').map((i) => relative('assets', i.path)),
    );
  }
  const favicon = readFileSync(join(WEB, 'favicon.svg'));
  const faviconName = `favicon-${short(favicon)}.svg`;
  assets.set(faviconName, favicon);
  names.set('favicon.svg', faviconName);

  /** @type {Map<string, Uint8Array>} */
  const pages = new Map();
  for (const page of PAGES) {
    const source = readFileSync(join(WEB, page), 'utf8');
    checkHtml(page, source);
    const preload = new Set();
    let html = source.replace(/\/assets\/([A-Za-z0-9._-]+)/g, (_, logical) => {
      const file = names.get(logical);
      if (!file) throw new Error(`web/${page}: /assets/${logical} is not something the build produces (${[...names.keys()].join(', ')})`);
      for (const chunk of preloads.get(logical) ?? []) preload.add(chunk);
      return `/assets/${file}`;
    });
    // The shared chunk is requested with the entry, not after it was parsed: one round trip less.
    const links = [...preload].map((c) => `  <link rel="modulepreload" href="/assets/${c}">\n`).join('');
    html = html.replace('</head>', `${links}</head>`);
    pages.set(page, Buffer.from(html));
  }

  const written = [];
  for (const [file, bytes] of assets) {
    writeIfChanged(join(outDir, 'assets', file), Buffer.from(bytes));
    written.push({ file: `assets/${file}`, bytes: bytes.length, gzip: gzipSync(bytes).length });
  }
  for (const [file, bytes] of pages) {
    writeIfChanged(join(outDir, file), bytes);
    written.push({ file, bytes: bytes.length, gzip: gzipSync(bytes).length });
  }
  // Assets of earlier builds (other hashes) go; a running server holds what it serves in memory.
  for (const file of readdirSync(join(outDir, 'assets'))) {
    if (!assets.has(file) && !file.endsWith('.tmp')) rmSync(join(outDir, 'assets', file), { force: true });
  }
  return { outDir, files: written, ms: Math.round(performance.now() - started) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const { outDir, files, ms } = await buildPages();
    const kb = (n) => `${(n / 1024).toFixed(1)} kB`;
    for (const f of files) console.log(`  ${f.file.padEnd(36)} ${kb(f.bytes).padStart(9)}  ${kb(f.gzip).padStart(9)} gzip`);
    const total = files.reduce((a, f) => a + f.bytes, 0);
    const gz = files.reduce((a, f) => a + f.gzip, 0);
    console.log(`pages built into ${relative(process.cwd(), outDir) || '.'} in ${ms} ms: ${kb(total)} (${kb(gz)} gzip)`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
