/**
 * How passkeyd serves the hosted pages, over plain HTTP (no browser): routes, content types, caching,
 * compression, the Content-Security-Policy, 404/405, no path traversal, HTTP/1.1 and h2c alike, and that
 * the page routes shadow none of the API's.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { createPages, defaultPagesDir, PAGES_CSP } from '../src/server/pages.js';
import { buildPages } from './helpers/pages.js';
import { BACKEND, useTestServer } from './helpers/server.js';

interface RawResponse {
  status: number;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP/1.1 request with the path sent exactly as given (no URL normalization, unlike fetch). */
function raw(base: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, httpVersion: res.httpVersion, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** The assets an HTML page references. */
function assetsOf(html: string): string[] {
  return [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
}

beforeAll(() => buildPages());
const srv = useTestServer();

describe(`hosted pages over HTTP (${BACKEND})`, () => {
  it.each([
    ['/', 'Sign in'],
    ['/register', 'Create your passkey'],
    ['/account', 'Your account'],
  ])('%s is its page, over HTTP/1.1, with a strict CSP and revalidated caching', async (path, heading) => {
    const r = await raw(srv.url, `${path}?user=u&code_id=c&code=x`);
    expect(r.status).toBe(200);
    expect(r.httpVersion).toBe('1.1');
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cache-control']).toBe('no-cache');
    expect(r.headers['content-security-policy']).toBe(PAGES_CSP);
    expect(PAGES_CSP).toContain("script-src 'self'");
    expect(PAGES_CSP).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*/);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('DENY');
    const html = r.body.toString('utf8');
    expect(html).toContain(`<h1>${heading}</h1>`);
    // No inline script or style, nothing from another host: everything is a same-origin asset.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i);
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    const assets = assetsOf(html);
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);

    // Revalidation by ETag; HEAD answers the headers alone.
    const again = await raw(srv.url, path, { headers: { 'if-none-match': r.headers.etag! } });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    const head = await raw(srv.url, path, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(r.body.length));
    expect(head.body.length).toBe(0);
  });

  it('serves every referenced asset with its type, immutable caching and compression', async () => {
    const seen = new Set<string>();
    for (const page of ['/', '/register', '/account']) {
      for (const a of assetsOf((await raw(srv.url, page)).body.toString())) seen.add(a);
    }
    const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' };
    for (const asset of seen) {
      const r = await raw(srv.url, asset);
      expect(r.status, asset).toBe(200);
      expect(r.headers['content-type'], asset).toBe(types[asset.split('.').pop()!]);
      expect(r.headers['cache-control'], asset).toBe('public, max-age=31536000, immutable');
      expect(r.headers['content-security-policy'], asset).toBe(PAGES_CSP);
      const file = readFileSync(join(defaultPagesDir(), asset));
      expect(r.body.equals(file), asset).toBe(true);
    }
    // The largest asset (the shared chunk) goes compressed to clients that accept it, and decodes to the file.
    const big = [...seen].sort((x, y) => readFileSync(join(defaultPagesDir(), y)).length - readFileSync(join(defaultPagesDir(), x)).length)[0]!;
    const file = readFileSync(join(defaultPagesDir(), big));
    const br = await raw(srv.url, big, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers.vary).toMatch(/Accept-Encoding/);
    expect(br.headers.vary).toMatch(/Origin/); // CORS's Vary is kept
    expect(br.body.length).toBeLessThan(file.length / 2);
    expect(brotliDecompressSync(br.body).equals(file)).toBe(true);
    const gz = await raw(srv.url, big, { headers: { 'accept-encoding': 'gzip;q=1, br;q=0' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).equals(file)).toBe(true);
  });

  it('answers 404 for unknown assets and never reaches outside the built files', async () => {
    const probes = [
      '/assets/nope.js',
      '/assets/',
      '/assets/../index.html',
      '/assets/../../package.json',
      '/assets/%2e%2e/index.html',
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2e%2e%2f%2e%2e%2fpackage.json',
      '/assets//etc/passwd',
      '/assets/..\\..\\package.json',
    ];
    for (const path of probes) {
      const r = await raw(srv.url, path);
      expect(r.status, path).toBe(404);
      expect(r.headers['content-type'], path).toBe('text/plain; charset=utf-8');
      expect(r.body.toString(), path).not.toContain('"name": "passkeyd"');
    }
    // Paths near the page routes are not pages either (they fall through to the API's 404).
    for (const path of ['/index.html', '/register.html', '/account/', '/dist/pages/index.html', '/web/index.html']) {
      const r = await raw(srv.url, path);
      expect(r.status, path).toBe(404);
      expect(r.body.toString(), path).not.toContain('<html');
    }
  });

  it('refuses other methods on page routes', async () => {
    for (const path of ['/', '/register', '/assets/x.js']) {
      const r = await raw(srv.url, path, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
      expect(r.status, path).toBe(405);
      expect(r.headers.allow, path).toBe('GET, HEAD');
    }
  });

  it('shadows none of the API routes', async () => {
    const rpc = await raw(srv.url, '/passkeyd.user.v2.UserService/GetUserByID', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"userId":"x"}' });
    expect(rpc.status).toBe(401);
    expect(rpc.headers['content-type']).toBe('application/json');
    const rest = await raw(srv.url, '/v2/users/x');
    expect(rest.status).toBe(401);
    expect((await raw(srv.url, '/.well-known/jwks.json')).headers['content-type']).toBe('application/json');
    expect((await raw(srv.url, '/healthz')).status).toBe(200);
    expect((await raw(srv.url, '/readyz')).status).toBe(200);
    expect((await raw(srv.url, '/metrics')).status).toBe(200);
  });

  it('serves the pages over h2c as well (prior knowledge), though browsers use HTTP/1.1 in cleartext', async () => {
    const session = http2.connect(srv.url);
    try {
      const { status, type, body } = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
        const req = session.request({ ':path': '/', ':method': 'GET' });
        let status = 0;
        let type = '';
        let body = '';
        req.on('response', (h) => {
          status = Number(h[':status']);
          type = String(h['content-type']);
        });
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => resolve({ status, type, body }));
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(200);
      expect(type).toBe('text/html; charset=utf-8');
      expect(body).toContain('<h1>Sign in</h1>');
    } finally {
      session.close();
    }
  });

  it('answers 503 with how to build them when the pages are not built', () => {
    const empty = mkdtempSync(join(tmpdir(), 'passkeyd-pages-'));
    try {
      const warnings: unknown[] = [];
      const pages = createPages({ dir: empty, log: { warn: (o: unknown) => warnings.push(o) } as any });
      expect(pages.available).toBe(false);
      expect(warnings).toHaveLength(1);
      let status = 0;
      let body = '';
      const res = {
        setHeader() {},
        getHeader() {
          return undefined;
        },
        writeHead(s: number) {
          status = s;
        },
        end(b?: Buffer) {
          body = b?.toString() ?? '';
        },
      };
      expect(pages.handle({ method: 'GET', headers: {} } as any, res as any, '/')).toBe(true);
      expect(status).toBe(503);
      expect(body).toContain('npm run build:pages');
      expect(pages.handle({ method: 'GET', headers: {} } as any, res as any, '/v2/users')).toBe(false);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
