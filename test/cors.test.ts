/**
 * CORS for the configured origins on every browser-reachable path: REST, Connect, gRPC-web and the public
 * JSON routes. Checked at the header level with fetch, then end to end in a real browser (Debian's
 * chromium through playwright-core), where the browser itself enforces the policy.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS } from '../src/server/cors.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
let allowedPage: { server: http.Server; origin: string };
let otherPage: { server: http.Server; origin: string };

/** A tiny site on its own origin: the page a browser script runs in. */
async function startPage(): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>cors</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  allowedPage = await startPage();
  otherPage = await startPage();
});
afterAll(async () => {
  for (const p of [allowedPage, otherPage]) p?.server.close();
});
const srv = useTestServer(() => ({ config: { origins: `http://localhost:8080,${allowedPage.origin}`, 'availability-rate-limit': '1' } }));

const PATHS: [string, string][] = [
  ['REST', '/v2/users/someone'],
  ['Connect / gRPC-web', '/passkeyd.user.v2.UserService/GetUserByID'],
  ['public JSON', '/.well-known/jwks.json'],
];

const list = (h: string | null) =>
  (h ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);

describe(`CORS headers (${BACKEND})`, () => {
  it.each(PATHS)('%s: a preflight from an allowed origin is answered 204 with methods, headers and max-age', async (_name, path) => {
    const res = await fetch(srv.url + path, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:8080', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization,x-grpc-web' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:8080');
    expect(list(res.headers.get('access-control-allow-methods'))).toEqual(expect.arrayContaining(['get', 'post', 'put', 'patch', 'delete']));
    expect(list(res.headers.get('access-control-allow-headers'))).toEqual(expect.arrayContaining(CORS_ALLOWED_HEADERS));
    expect(list(res.headers.get('access-control-allow-headers'))).toEqual(
      expect.arrayContaining(['content-type', 'connect-protocol-version', 'connect-timeout-ms', 'grpc-timeout', 'x-grpc-web', 'x-user-agent', 'authorization']),
    );
    expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
    expect(res.headers.get('vary')).toMatch(/origin/i);
    expect(await res.text()).toBe('');
  });

  it.each(PATHS)('%s: a preflight from another origin gets no CORS headers', async (_name, path) => {
    const res = await fetch(srv.url + path, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    const cors: string[] = [];
    res.headers.forEach((_v, k) => k.startsWith('access-control-') && cors.push(k));
    expect(cors).toEqual([]);
    expect(res.headers.get('vary')).toMatch(/origin/i);
  });

  it('actual responses (success and error, every protocol) carry the origin and expose the gRPC status headers', async () => {
    const origin = allowedPage.origin;
    const responses = [
      await fetch(`${srv.url}/v2/users/someone`, { headers: { origin } }),
      await fetch(`${srv.url}/passkeyd.user.v2.UserService/GetUserByID`, { method: 'POST', headers: { origin, 'content-type': 'application/json' }, body: '{"userId":"x"}' }),
      await fetch(`${srv.url}/grpc.health.v1.Health/Check`, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
        body: new Uint8Array(5),
      }),
      await fetch(`${srv.url}/.well-known/openid-configuration`, { headers: { origin } }),
    ];
    expect(responses.map((r) => r.status)).toEqual([401, 401, 200, 200]);
    for (const res of responses) {
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(list(res.headers.get('access-control-expose-headers'))).toEqual(expect.arrayContaining(CORS_EXPOSED_HEADERS));
      expect(list(res.headers.get('access-control-expose-headers'))).toEqual(expect.arrayContaining(['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'retry-after']));
      expect(res.headers.get('vary')).toMatch(/origin/i);
      await res.arrayBuffer();
    }
    // Non-browser callers (no Origin) and other origins are served, just without CORS headers.
    for (const headers of [{}, { origin: otherPage.origin }] as Record<string, string>[]) {
      const res = await fetch(`${srv.url}/v2/users/someone`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      await res.arrayBuffer();
    }
  });
});

describe.skipIf(!existsSync(CHROMIUM))(`CORS in a real browser (${BACKEND})`, () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 60_000);
  afterAll(() => browser?.close());

  /**
   * Runs fetch calls from a page on `origin` against passkeyd; what the script could read, or the error.
   * `corsRefusals`: how many CORS refusals the browser's network log should report. Its events travel
   * apart from the script's result and can come after it (the last request's did, in one CI run), so
   * the page stays open until that many arrived or 5 s passed.
   */
  async function fromPage(origin: string, admin: string, corsRefusals = 0) {
    const page = await browser.newPage();
    // Why each request failed, as the browser's network log says: a CORS refusal carries a
    // corsErrorStatus, a server that never answered does not.
    const cdp = await page.context().newCDPSession(page);
    const corsFailures: string[] = [];
    cdp.on('Network.loadingFailed', (e: { corsErrorStatus?: { corsError: string } }) => {
      if (e.corsErrorStatus) corsFailures.push(e.corsErrorStatus.corsError);
    });
    await cdp.send('Network.enable');
    try {
      await page.goto(origin);
      const outcomes = await page.evaluate(
        async ({ api, admin }) => {
          const attempt = async (f: () => Promise<Response>) => {
            try {
              const r = await f();
              return { status: r.status, body: await r.text(), retryAfter: r.headers.get('retry-after'), grpcStatus: r.headers.get('grpc-status') };
            } catch (err) {
              return { error: String(err) };
            }
          };
          return {
            rest: await attempt(() => fetch(`${api}/v2/users`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{}' })),
            restError: await attempt(() => fetch(`${api}/v2/users/nobody`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })),
            connect: await attempt(() =>
              fetch(`${api}/passkeyd.user.v2.UserService/ListUsers`, {
                method: 'POST',
                headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'connect-protocol-version': '1' },
                body: '{}',
              }),
            ),
            // A rate-limited call: the script can read Retry-After only because it is exposed.
            limited: await (async () => {
              const call = () => fetch(`${api}/v2/passkeys/availability`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"loginName":"somebody"}' });
              await attempt(call);
              return attempt(call);
            })(),
            // gRPC-web: Connect sends the status in the trailer frame of the body, which the script can read.
            grpcWeb: await attempt(() =>
              fetch(`${api}/passkeyd.user.v2.UserService/ListUsers`, {
                method: 'POST',
                headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', 'x-user-agent': 'test' },
                body: new Uint8Array(5),
              }),
            ),
            jwks: await attempt(() => fetch(`${api}/.well-known/jwks.json`)),
          };
        },
        { api: srv.url, admin },
      );
      for (const until = Date.now() + 5000; corsFailures.length < corsRefusals && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
      return Object.assign(outcomes, { corsFailures });
    } finally {
      await page.close();
    }
  }

  it('an allowed origin can call REST, Connect, gRPC-web and the public routes, and read statuses', async () => {
    const admin = await srv.adminToken();
    const r = await fromPage(allowedPage.origin, admin);
    expect(r.rest).toMatchObject({ status: 200 });
    expect(JSON.parse((r.rest as { body: string }).body).details).toBeDefined();
    expect(r.restError).toMatchObject({ status: 404 });
    expect(JSON.parse((r.restError as { body: string }).body)).toMatchObject({ code: 5 });
    expect(r.connect).toMatchObject({ status: 200 });
    expect(r.grpcWeb).toMatchObject({ status: 200, body: expect.stringContaining('grpc-status: 16') });
    expect(r.limited).toMatchObject({ status: 429, retryAfter: expect.stringMatching(/^\d+$/) });
    expect(JSON.parse((r.limited as { body: string }).body)).toMatchObject({ code: 8 });
    expect(r.jwks).toMatchObject({ status: 200 });
  });

  it('another origin is blocked by the browser on every path', async () => {
    const admin = await srv.adminToken();
    const { corsFailures, ...r } = await fromPage(otherPage.origin, admin, 7);
    for (const [name, outcome] of Object.entries(r)) expect(outcome, name).toMatchObject({ error: expect.stringMatching(/Failed to fetch/) });
    // Each of the 7 requests (the rate-limited call is made twice) was refused by CORS, not lost:
    // a server that never answered would fail the fetches without a CORS error status.
    expect(corsFailures, corsFailures.join(', ')).toHaveLength(7);
  });
});
