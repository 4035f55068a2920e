import { selfSignedCertificate } from './helpers/tls.js';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../gen/health/v1/health_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { startTestServer, useTestServer } from './helpers/server.js';

const exec = promisify(execFile);

const srv = useTestServer();

describe('one port for every protocol', () => {
  it('curl without HTTP/2 flags reaches Connect JSON, and with prior knowledge reaches it over h2c', async () => {
    const args = [
      '-s',
      '-X',
      'POST',
      `${srv.url}/passkeyd.user.v2.UserService/ListUsers`,
      '-H',
      'content-type: application/json',
      '-H',
      `authorization: Bearer ${srv.admin}`,
      '-d',
      '{}',
      '-w',
      '\\n%{http_version}',
    ];
    const h1 = await exec('curl', args);
    const [body1, version1] = h1.stdout.trim().split('\n');
    expect(version1).toBe('1.1');
    const h2 = await exec('curl', ['--http2-prior-knowledge', ...args]);
    const [body2, version2] = h2.stdout.trim().split('\n');
    expect(version2).toBe('2');
    for (const body of [body1, body2]) {
      const json = JSON.parse(body!);
      // Proto3 JSON leaves out zeros: no users yet means no totalResult and no result.
      expect(json.details.timestamp).toMatch(/^\d{4}-/);
      expect(json.result).toBeUndefined();
    }
  });

  it('gRPC (h2c), health check and public HTTP routes share the port', async () => {
    const health = clientFor(Health, 'grpc', srv.url);
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: 'passkeyd.user.v2.UserService' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const discovery = (await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string };
    expect(discovery.issuer).toBe(srv.config.issuer);
    expect(discovery.jwks_uri).toBe(`${srv.config.issuer}/.well-known/jwks.json`);
    await clientFor(UserService, 'connect', srv.url).listUsers({}, bearer(srv.admin));
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toContain('passkeyd_rpc_requests_total{procedure="passkeyd.user.v2.UserService/ListUsers",protocol="connect",code="ok"}');
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
  });

  it('a bogus first line on a fresh connection is not taken for HTTP/2 and gets an HTTP/1 error', async () => {
    const { createConnection } = await import('node:net');
    const answer = await new Promise<string>((resolve) => {
      const s = createConnection(srv.server.port, '127.0.0.1', () => s.write('PRX garbage\r\n\r\n'));
      let data = '';
      s.on('data', (d) => (data += d));
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
    });
    expect(answer === '' || answer.startsWith('HTTP/1.1 400')).toBe(true);
  });

  it('SIGTERM-style close lets an in-flight request finish, then refuses new connections', async () => {
    const own = await startTestServer();
    const token = await own.adminToken();
    const body = JSON.stringify({ username: 'late', profile: { givenName: 'L', familyName: 'L' }, email: { email: 'late@example.com' } });
    const half = Math.floor(body.length / 2);
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${own.url}/passkeyd.user.v2.UserService/AddHumanUser`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on('error', reject);
      req.write(body.slice(0, half));
      setTimeout(() => req.end(body.slice(half)), 300);
    });
    await new Promise((r) => setTimeout(r, 100));
    const closing = own.close();
    const done = await response;
    expect(done.status).toBe(200);
    expect(JSON.parse(done.body).userId).toBeTruthy();
    await closing;
    await expect(fetch(`${own.url}/healthz`)).rejects.toThrow();
  });
});

describe('TLS with ALPN serves every protocol on one port', () => {
  it('HTTP/1.1 (curl, browsers) and HTTP/2 (gRPC) both work', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-tls-'));
    const { cert, key } = selfSignedCertificate(dir);
    const tls = await startTestServer({ config: { 'tls-cert': cert, 'tls-key': key } });
    try {
      const ca = execFileSync('cat', [cert]);
      const base = `https://127.0.0.1:${tls.server.port}`;
      const h1 = await new Promise<{ version: string; status: number }>((resolve, reject) =>
        https
          .get(`${base}/healthz`, { ca, ALPNProtocols: ['http/1.1'] } as https.RequestOptions, (res) => {
            res.resume();
            resolve({ version: res.httpVersion, status: res.statusCode! });
          })
          .on('error', reject),
      );
      expect(h1).toEqual({ version: '1.1', status: 200 });
      const session = http2.connect(base, { ca });
      const h2status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ':path': '/healthz' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.end();
      });
      session.close();
      expect(h2status).toBe(200);
      const users = createClient(UserService, createGrpcTransport({ baseUrl: base, nodeOptions: { ca } } as any));
      const token = await tls.adminToken();
      expect((await users.listUsers({}, bearer(token))).details?.totalResult).toBe(0n);
    } finally {
      await tls.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
