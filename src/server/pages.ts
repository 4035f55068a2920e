import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';
import type { NodeRequest, NodeResponse } from '../api/transport/http.js';
import type { Logger } from '../log.js';

/** The hosted pages: URL path → file in the pages directory. */
const PAGE_ROUTES: ReadonlyMap<string, string> = new Map([
  ['/', 'index.html'],
  ['/register', 'register.html'],
  ['/account', 'account.html'],
]);

/** Where the built assets are served from; their names carry a content hash. */
const ASSETS_PREFIX = '/assets/';

/**
 * The pages' Content-Security-Policy: scripts, styles and images only from this origin, no inline code
 * of any kind (the build refuses HTML with some), API calls only to this origin, no framing, and DOM
 * sinks that could turn text into script are closed by Trusted Types.
 */
export const PAGES_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Headers every pages response carries, the 404 included. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': PAGES_CSP,
  'x-content-type-options': 'nosniff',
  // The registration link carries a one-time code in its query: no Referer may take it elsewhere.
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Worth compressing: text, and more than a packet's worth. */
const COMPRESS_MIN_BYTES = 1024;

interface StaticFile {
  body: Buffer;
  gzip: Buffer | undefined;
  br: Buffer | undefined;
  contentType: string;
  etag: string;
  cacheControl: string;
}

/** The directory `npm run build:pages` writes: dist/pages at the package root (the same from src/ and dist/src/). */
export function defaultPagesDir(from = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'pages');
    const up = dirname(dir);
    if (up === dir) return join(from, 'pages');
    dir = up;
  }
}

function load(path: string, cacheControl: string): StaticFile {
  const body = readFileSync(path);
  const ext = path.slice(path.lastIndexOf('.'));
  const contentType = CONTENT_TYPES[ext] ?? 'application/octet-stream';
  const compressible = body.length >= COMPRESS_MIN_BYTES && (contentType.startsWith('text/') || contentType === 'image/svg+xml' || contentType === 'application/json');
  return {
    body,
    // Compressed once at start-up, at the highest levels: the files never change while serving.
    gzip: compressible ? gzipSync(body, { level: 9 }) : undefined,
    br: compressible ? brotliCompressSync(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } }) : undefined,
    contentType,
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    cacheControl,
  };
}

/** Which encoding to send for an Accept-Encoding header (brotli, then gzip; q=0 excludes). */
function pickEncoding(header: string | string[] | undefined, file: StaticFile): 'br' | 'gzip' | undefined {
  if (!header || (!file.br && !file.gzip)) return undefined;
  const accepted = new Map<string, number>();
  for (const part of String(header).split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    accepted.set(name!, q ? Number(q.slice(2)) : 1);
  }
  const ok = (enc: string) => (accepted.get(enc) ?? accepted.get('*') ?? 0) > 0;
  if (file.br && ok('br')) return 'br';
  if (file.gzip && ok('gzip')) return 'gzip';
  return undefined;
}

function etagMatches(header: string | string[] | undefined, etag: string): boolean {
  if (!header) return false;
  return String(header)
    .split(',')
    .some((t) => {
      const tag = t.trim().replace(/^W\//, '');
      return tag === etag || tag === '*';
    });
}

function send(req: NodeRequest, res: NodeResponse, status: number, headers: Record<string, string>, body: Buffer): void {
  const out = res as ServerResponse;
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) out.setHeader(k, v);
  out.writeHead(status, { ...headers, 'content-length': String(body.length) });
  out.end(req.method === 'HEAD' ? undefined : body);
}

function sendText(req: NodeRequest, res: NodeResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  send(req, res, status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra }, Buffer.from(text));
}

/** Adds a token to Vary without dropping what is there (CORS already varies on Origin). */
function addVary(res: NodeResponse, token: string): void {
  const out = res as ServerResponse;
  const existing = out.getHeader('vary');
  const list = existing
    ? String(existing)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
  if (!list.some((v) => v.toLowerCase() === token.toLowerCase())) list.push(token);
  out.setHeader('vary', list.join(', '));
}

export interface PagesOptions {
  /** The built pages (default: dist/pages at the package root). */
  dir?: string;
  log?: Logger;
}

/** Serves the hosted pages; see {@link createPages}. */
export interface Pages {
  /** Whether the built pages were found (otherwise page routes answer 503 saying how to build them). */
  readonly available: boolean;
  /** Answers the request when it is for a page or an asset and returns true; false leaves it to others. */
  handle(req: NodeRequest, res: NodeResponse, path: string): boolean;
}

/**
 * The hosted sign-in, registration and account pages, on the API's port. The built files are read
 * into memory once, here: a request can only ever get one of them (no file-system path is built from a
 * URL, so there is nothing to traverse), with its precomputed ETag and compressed forms. Only `/`,
 * `/register`, `/account` and `/assets/...` are claimed, so RPC paths (`/passkeyd.*`, `/grpc.*`), REST
 * (`/v2/...`), `/.well-known/...` and the health and metrics routes are never shadowed.
 */
export function createPages(options: PagesOptions = {}): Pages {
  const dir = options.dir ?? defaultPagesDir();
  const pages = new Map<string, StaticFile>();
  const assets = new Map<string, StaticFile>();
  try {
    // HTML is revalidated on every load (cheap with the ETag), so a new build is picked up at once;
    // assets are named by their content hash and never change under a name.
    for (const [route, file] of PAGE_ROUTES) pages.set(route, load(join(dir, file), 'no-cache'));
    for (const name of readdirSync(join(dir, 'assets'))) {
      if (name.endsWith('.tmp')) continue;
      assets.set(name, load(join(dir, 'assets', name), 'public, max-age=31536000, immutable'));
    }
  } catch (err) {
    pages.clear();
    assets.clear();
    options.log?.warn({ dir, err: (err as Error).message }, 'hosted pages not found: run `npm run build:pages` (or `npm run build`); page routes answer 503 until then');
  }
  const available = pages.size > 0;

  return {
    available,
    handle(req, res, path) {
      const page = PAGE_ROUTES.has(path);
      const asset = path.startsWith(ASSETS_PREFIX);
      if (!page && !asset) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendText(req, res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
        return true;
      }
      if (!available) {
        sendText(req, res, 503, 'The passkeyd pages are not built. Run `npm run build:pages` (or `npm run build`) and restart.\n');
        return true;
      }
      const file = page ? pages.get(path) : assets.get(path.slice(ASSETS_PREFIX.length));
      if (!file) {
        sendText(req, res, 404, 'not found\n');
        return true;
      }
      addVary(res, 'Accept-Encoding');
      const common = { 'content-type': file.contentType, 'cache-control': file.cacheControl, etag: file.etag };
      if (etagMatches(req.headers['if-none-match'], file.etag)) {
        const out = res as ServerResponse;
        for (const [k, v] of Object.entries(SECURITY_HEADERS)) out.setHeader(k, v);
        out.writeHead(304, common);
        out.end();
        return true;
      }
      const encoding = pickEncoding(req.headers['accept-encoding'], file);
      const body = encoding === 'br' ? file.br! : encoding === 'gzip' ? file.gzip! : file.body;
      send(req, res, 200, encoding ? { ...common, 'content-encoding': encoding } : common, body);
      return true;
    },
  };
}
