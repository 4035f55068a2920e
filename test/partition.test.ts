import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../gen/health/v1/health_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor, type Protocol } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { startServerBehindProxy, TEST_DATABASE_URL } from './helpers/server.js';

/** Resolves with what `work` gave and how long it took, in ms. */
async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await work;
  return { value, ms: performance.now() - start };
}

/** Polls `check` until it is true or `ms` pass. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

// A network partition: PostgreSQL's sockets stay open and go silent (nothing refused, nothing reset).
// Needs PostgreSQL; PGlite has no network to lose.
describe.skipIf(!TEST_DATABASE_URL)('a silent partition from PostgreSQL', () => {
  it('fails calls with UNAVAILABLE/DEADLINE_EXCEEDED in bounded time, readyz 503 within a second, and recovers after it heals', async () => {
    // A short default deadline keeps the test quick; the client's own deadline wins where it sends one.
    const srv = await startServerBehindProxy({ 'call-timeout': '2s', 'database-connect-timeout': '1s' });
    // A signal per call: one shared by the 12 concurrent calls below collects more abort listeners than
    // Node's warning limit (MaxListenersExceededWarning).
    const never = () => AbortSignal.timeout(30_000);
    try {
      const token = await srv.adminToken();
      const call = (protocol: Protocol, timeoutMs?: number) => codeOf(clientFor(UserService, protocol, srv.url).listUsers({}, { ...bearer(token), timeoutMs, signal: never() }));
      const readyz = async () => (await fetch(`${srv.url}/readyz`, { signal: AbortSignal.timeout(30_000) })).status;
      for (const p of ['grpc', 'grpc-web', 'connect'] as const) expect(await call(p)).toBe('ok');
      expect(await readyz()).toBe(200);

      srv.proxy.blackhole();
      // Readiness answers within a second, whatever the pool holds.
      const ready = await timed(readyz());
      expect(ready.value).toBe(503);
      expect(ready.ms).toBeLessThan(1000);
      const health = await timed(clientFor(Health, 'grpc', srv.url).check({}, { signal: never() }));
      expect(health.value.status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      expect(health.ms).toBeLessThan(1000);

      // The client's deadline (grpc-timeout, connect-timeout-ms) is honoured: DEADLINE_EXCEEDED.
      for (const p of ['grpc', 'grpc-web', 'connect'] as const) {
        const r = await timed(call(p, 500));
        expect(r.value, p).toBe(Code.DeadlineExceeded);
        expect(r.ms, p).toBeLessThan(500 + 2000);
      }
      // Without one, the configured default bounds the call; more calls than the pool has connections.
      const many = await timed(Promise.all(Array.from({ length: 12 }, (_, i) => call((['grpc', 'grpc-web', 'connect'] as const)[i % 3]!))));
      for (const code of many.value) expect([Code.Unavailable, Code.DeadlineExceeded]).toContain(code);
      expect(many.ms).toBeLessThan(2000 + 3000);
      const rest = await timed(fetch(`${srv.url}/v2/users`, { method: 'POST', headers: bearer(token).headers, body: '{}', signal: never() }));
      expect([503, 504]).toContain(rest.value.status);
      expect(rest.ms).toBeLessThan(2000 + 3000);
      expect((await timed(readyz())).ms).toBeLessThan(1000);

      srv.proxy.heal();
      expect(await eventually(async () => (await readyz()) === 200, 15_000)).toBe(true);
      expect(await eventually(async () => (await call('connect')) === 'ok', 15_000)).toBe(true);
      for (const p of ['grpc', 'grpc-web', 'connect'] as const) expect(await call(p)).toBe('ok');
    } finally {
      srv.proxy.heal();
      await srv.close();
    }
  });
});
