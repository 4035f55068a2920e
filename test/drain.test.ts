import { selfSignedCertificate } from './helpers/tls.js';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { createSchema, TEST_DATABASE_URL } from './helpers/server.js';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const running: ServeProcess[] = [];
afterAll(() => running.forEach((s) => s.child.kill('SIGKILL')));

/** How a stream of requests on one keep-alive connection ended, and what it saw after the signal. */
interface LoopResult {
  answered: number;
  /** Whether the last response said `Connection: close` (HTTP/1.1) / a GOAWAY came (HTTP/2). */
  told: boolean;
  /** The error that ended it: a refusal (ECONNREFUSED, GOAWAY) is fine; a reset is not. */
  end: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Requests back to back on one HTTP/1.1 keep-alive connection (a fresh one when told to close), until one fails. */
async function h1Loop(base: string, stop: () => boolean, ca?: Buffer): Promise<LoopResult> {
  const agent = ca ? new https.Agent({ keepAlive: true, maxSockets: 1, ca }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = ca ? https.get : http.get;
  const result: LoopResult = { answered: 0, told: false, end: 'stopped' };
  while (!stop()) {
    try {
      const closeHeader = await new Promise<string | undefined>((resolve, reject) => {
        get(`${base}/healthz`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.headers.connection));
        }).on('error', reject);
      });
      result.answered++;
      result.told = closeHeader === 'close';
    } catch (err) {
      result.end = (err as NodeJS.ErrnoException).code ?? String(err);
      break;
    }
  }
  agent.destroy();
  return result;
}

/** Requests back to back on one HTTP/2 session until one fails. */
async function h2Loop(base: string, stop: () => boolean, ca?: Buffer): Promise<LoopResult> {
  const session = http2.connect(base, ca ? { ca } : {});
  const result: LoopResult = { answered: 0, told: false, end: 'stopped' };
  session.on('goaway', () => (result.told = true));
  session.on('error', () => {});
  while (!stop()) {
    try {
      await new Promise<void>((resolve, reject) => {
        const req = session.request({ ':path': '/healthz' });
        req.on('response', () => req.resume());
        req.on('end', () => resolve());
        req.on('error', reject);
        req.end();
      });
      result.answered++;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      result.end = e.code === 'ERR_HTTP2_STREAM_ERROR' ? e.message : (e.code ?? String(err));
      break;
    }
  }
  session.destroy();
  return result;
}

/** An HTTP/1.1 request whose body is half sent: the rest goes when `finish()` is called. Resolves with the raw answer. */
function slowH1(port: number, ca?: Buffer): { finish(): void; answer: Promise<string> } {
  const body = '{                  }';
  const socket = ca ? tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] }) : net.connect(port, '127.0.0.1');
  socket.write(`POST /passkeyd.user.v2.UserService/ListUsers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
  let text = '';
  socket.on('data', (d) => (text += d));
  const answer = new Promise<string>((resolve) => {
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
  return { finish: () => socket.write(body.slice(5)), answer };
}

async function drainScenario(env: NodeJS.ProcessEnv, workers: number, signalGroup: boolean, ca?: Buffer) {
  const srv = await startServe({ PASSKEYD_SHUTDOWN_GRACE: '10s', ...env }, workers, { detached: signalGroup });
  running.push(srv);
  const base = `${ca ? 'https' : 'http'}://127.0.0.1:${srv.port}`;
  let stopped = false;
  const stop = () => stopped;
  const h1 = Array.from({ length: 3 }, () => h1Loop(base, stop, ca));
  const h2 = Array.from({ length: 2 }, () => h2Loop(base, stop, ca));
  const slow = slowH1(srv.port, ca);
  await sleep(500);
  if (signalGroup) process.kill(-srv.child.pid!, 'SIGTERM');
  else srv.child.kill('SIGTERM');
  await srv.waitFor((e) => e.msg === 'shutting down');
  // The request in flight at the signal is finished, and answered.
  await sleep(300);
  slow.finish();
  const timer = setTimeout(() => (stopped = true), 20_000);
  const [h1Results, h2Results, slowAnswer, code] = await Promise.all([Promise.all(h1), Promise.all(h2), slow.answer, srv.exited]);
  clearTimeout(timer);
  return { h1Results, h2Results, slowAnswer, code, logs: srv.logs };
}

function expectDrained(r: Awaited<ReturnType<typeof drainScenario>>) {
  const context = JSON.stringify({ h1: r.h1Results, h2: r.h2Results }, null, 1);
  expect(r.code, r.logs.join('\n')).toBe(0);
  expect(r.slowAnswer).toMatch(/^HTTP\/1\.1 401/);
  expect(r.slowAnswer.toLowerCase()).toContain('connection: close');
  for (const l of r.h1Results) {
    expect(l.answered, context).toBeGreaterThan(0);
    // Told to close on its last answer, then refused a new connection: never reset mid-request.
    expect(l.told, context).toBe(true);
    expect(l.end, context).toBe('ECONNREFUSED');
  }
  for (const l of r.h2Results) {
    expect(l.answered, context).toBeGreaterThan(0);
    expect(l.told, context).toBe(true);
    expect(l.end, context).toMatch(/ERR_HTTP2_GOAWAY_SESSION|ERR_HTTP2_INVALID_SESSION|NGHTTP2_REFUSED_STREAM|ECONNREFUSED/);
  }
}

/** The environment of a one-process server on the test backend. */
async function oneProcessEnv(): Promise<NodeJS.ProcessEnv> {
  return TEST_DATABASE_URL
    ? { DATABASE_URL: TEST_DATABASE_URL, PASSKEYD_DATABASE_SCHEMA: (await createSchema(TEST_DATABASE_URL)).schema, PASSKEYD_WORKERS: '1' }
    : { DATABASE_URL: '', PASSKEYD_DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'passkeyd-drain-')) };
}

describe('SIGTERM drains live keep-alive connections', () => {
  it('one process: HTTP/1.1 answers carry Connection: close, HTTP/2 sessions get GOAWAY, in-flight requests finish, nothing is reset', async () => {
    expectDrained(await drainScenario(await oneProcessEnv(), 1, false));
  }, 240_000);

  it('TLS (ALPN h2 and http/1.1): the same', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-drain-tls-'));
    const { cert, key } = selfSignedCertificate(dir);
    const env = { ...(await oneProcessEnv()), PASSKEYD_TLS_CERT: cert, PASSKEYD_TLS_KEY: key };
    expectDrained(await drainScenario(env, 1, false, readFileSync(cert)));
  }, 240_000);

  it.skipIf(!TEST_DATABASE_URL)(
    'a cluster, signalled as a process group (as systemd does): the same',
    async () => {
      const env = { DATABASE_URL: TEST_DATABASE_URL, PASSKEYD_DATABASE_SCHEMA: (await createSchema(TEST_DATABASE_URL!)).schema, PASSKEYD_WORKERS: '2' };
      expectDrained(await drainScenario(env, 2, true));
    },
    240_000,
  );
});
