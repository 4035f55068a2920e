import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { createSchema, TEST_DATABASE_URL } from './helpers/server.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const running: ServeProcess[] = [];
const proxies: TcpProxy[] = [];
afterAll(async () => {
  for (const s of running) s.child.kill('SIGKILL');
  for (const p of proxies) await p.close();
});

/** The pids of a process's children (the cluster's workers). */
function childrenOf(pid: number): number[] {
  return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)])
    .toString()
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => n > 0);
}

// `serve --workers` runs on PostgreSQL only (PGlite is one process).
describe.skipIf(!TEST_DATABASE_URL)('a cluster worker that starts while the database is away', () => {
  it.each(['refused', 'silent'] as const)(
    '(%s) waits for the database instead of dying, and serves once it is back',
    async (outage) => {
      const { schema } = await createSchema(TEST_DATABASE_URL!);
      const target = new URL(TEST_DATABASE_URL!);
      const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
      proxies.push(proxy);
      const viaProxy = new URL(TEST_DATABASE_URL!);
      viaProxy.hostname = '127.0.0.1';
      viaProxy.port = String(proxy.port);
      const env = { DATABASE_URL: viaProxy.toString(), PASSKEYD_DATABASE_SCHEMA: schema, PASSKEYD_WORKERS: '2', PASSKEYD_DATABASE_CONNECT_TIMEOUT: '1s' };
      const srv = await startServe(env, 2);
      running.push(srv);

      if (outage === 'refused') await proxy.cut();
      else proxy.blackhole();
      // A worker dies (any reason); its replacement starts during the outage.
      const [victim] = childrenOf(srv.child.pid!);
      process.kill(victim!, 'SIGKILL');
      await srv.waitFor((e) => e.msg === 'worker died; starting another' && e.signal === 'SIGKILL');
      // The replacement tries the database and says it waits (before this fix it exited with code 1).
      await srv.waitFor((e) => e.msg === 'database unavailable at start; retrying' || (e.msg === 'worker died; starting another' && e.code === 1), 1, 90_000);
      expect(srv.entries.filter((e) => e.msg === 'worker died; starting another' && e.code === 1)).toEqual([]);

      if (outage === 'refused') await proxy.restore();
      else proxy.heal();
      await srv.waitFor((e) => e.msg === 'passkeyd listening', 3, 90_000);
      expect(srv.entries.filter((e) => e.msg === 'worker died; starting another' && e.code === 1)).toEqual([]);
      expect((await fetch(`http://127.0.0.1:${srv.port}/readyz`)).status).toBe(200);

      srv.child.kill('SIGTERM');
      expect(await srv.exited).toBe(0);
    },
    240_000,
  );
});
