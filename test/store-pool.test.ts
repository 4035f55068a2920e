import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { openStore, storeOptions, type Store } from '../src/store/db.js';
import { BACKEND, createSchema, TEST_DATABASE_URL } from './helpers/server.js';

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});

describe('PASSKEYD_DATABASE_IDLE_TIMEOUT', () => {
  it('is 10 s unless set, and 0 keeps idle connections open', () => {
    expect(storeOptions(loadConfig({}, {})).idleTimeoutMs).toBe(10_000);
    expect(storeOptions(loadConfig({}, { PASSKEYD_DATABASE_IDLE_TIMEOUT: '0' })).idleTimeoutMs).toBe(0);
    expect(storeOptions(loadConfig({ 'database-idle-timeout': '90s' }, {})).idleTimeoutMs).toBe(90_000);
    expect(() => loadConfig({}, { PASSKEYD_DATABASE_IDLE_TIMEOUT: 'soon' })).toThrow(/invalid duration "soon"/);
  });
});

describe.skipIf(BACKEND !== 'postgres')('the pool on PostgreSQL', () => {
  /** Whether PostgreSQL still has a backend with this process id, asked over a connection of its own. */
  async function backendAlive(pid: number): Promise<boolean> {
    const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await c.connect();
    try {
      return (await c.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 1;
    } finally {
      await c.end();
    }
  }

  it.each([
    [200, false],
    [0, true],
  ])('idleTimeoutMs=%s: an idle connection is still open after 800 ms: %s', async (idleTimeoutMs, open) => {
    const { schema } = await createSchema(TEST_DATABASE_URL!);
    const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, poolSize: 1, idleTimeoutMs });
    opened.push(store);
    // 0 and pg-pool's own default (10 s) both keep the connection past 800 ms: the pool itself must hold 0.
    expect(store.pgPool!.options.idleTimeoutMillis).toBe(idleTimeoutMs);
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(store.db);
    const pid = rows[0]!.pid;
    expect(await backendAlive(pid)).toBe(true);
    await new Promise((r) => setTimeout(r, 800));
    // A closed connection's backend takes a moment to go; give it up to 2 s more.
    let alive = await backendAlive(pid);
    for (let i = 0; alive && !open && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      alive = await backendAlive(pid);
    }
    expect(alive).toBe(open);
    // Either way the pool serves the next query.
    expect((await sql<{ one: number }>`select 1 as one`.execute(store.db)).rows).toEqual([{ one: 1 }]);
  });
});
