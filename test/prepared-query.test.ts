import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../src/store/db.js';
import { withDeadline } from '../src/store/deadline.js';
import { compiledStatement } from '../src/store/statement.js';
import { BACKEND, createSchema, TEST_DATABASE_URL } from './helpers/server.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});

/** A store on one connection, and a count of the RowDescription messages that connection receives. */
async function oneConnection(): Promise<{ store: Store; descriptions: () => number }> {
  const { schema } = await createSchema(TEST_DATABASE_URL!);
  const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, poolSize: 1 });
  opened.push(store);
  const client = await store.pgPool!.connect();
  let n = 0;
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.on('rowDescription', () => n++);
  client.release();
  return { store, descriptions: () => n };
}

interface Row {
  n: number;
  big: number;
  at: Date;
  bytes: Uint8Array;
  doc: { k: string };
  list: string[];
  nothing: string | null;
}

const echo = compiledStatement<{ n: number; at: Date; bytes: Buffer; doc: string; list: string[] }, Row>(
  (v) => sql<Row>`select ${v.n}::int as n, ${v.n}::bigint * 1000000000 as big, ${v.at}::timestamptz as at, ${v.bytes}::bytea as bytes,
    ${v.doc}::jsonb as doc, ${v.list}::text[] as list, null::text as nothing`,
);

describe.skipIf(BACKEND !== 'postgres')('prepared statements answered without Describe (src/store/prepared-query.ts)', () => {
  it('describes a statement once per connection and parses later answers alike, every type as before', async () => {
    const { store, descriptions } = await oneConnection();
    const runs = [1, 2, 3].map((n) => ({
      n,
      at: new Date(Date.UTC(2026, 11, 2, 8, n, 1, 123)),
      bytes: Buffer.from([n, 0, 255]),
      doc: JSON.stringify({ k: `v${n}` }),
      list: [`a${n}`, 'with "quotes", commas'],
    }));
    for (const v of runs) {
      expect(await echo(store.db, v)).toEqual([{ n: v.n, big: v.n * 1e9, at: v.at, bytes: Buffer.from(v.bytes), doc: JSON.parse(v.doc), list: v.list, nothing: null }]);
    }
    expect(descriptions()).toBe(1);
    // Kysely's own queries with values take the same path.
    const read = () => sql<{ x: string }>`select ${'y'}::text as x`.execute(store.db);
    for (let i = 0; i < 3; i++) expect((await read()).rows).toEqual([{ x: 'y' }]);
    expect(descriptions()).toBe(2);
  });

  it('binds a timestamp the ISO form cannot write (past the year 9999) as pg does', async () => {
    const { store } = await oneConnection();
    const far = new Date(Date.UTC(12000, 0, 1, 0, 0, 0));
    const near = new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999));
    for (const at of [near, far, near, far]) {
      const [row] = await echo(store.db, { n: 1, at, bytes: Buffer.alloc(0), doc: '{}', list: [] });
      expect(row!.at.getTime()).toBe(at.getTime());
    }
  });

  it('fails a run whose value cannot be written, alone: the connection and the prepared statement go on', async () => {
    const { store, descriptions } = await oneConnection();
    const v = { n: 1, at: new Date(), bytes: Buffer.from([1]), doc: '{"k":"v"}', list: ['a'] };
    await echo(store.db, v);
    await echo(store.db, v);
    // pg refuses to write an object whose toPostgres() returns itself.
    const circular: { toPostgres(): unknown } = { toPostgres: () => circular };
    await expect(echo(store.db, { ...v, doc: circular as unknown as string })).rejects.toThrow(/circular/);
    expect((await echo(store.db, { ...v, n: 7 }))[0]!.n).toBe(7);
    expect(descriptions()).toBe(1);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_prepared_statements`.execute(store.db);
    expect(rows[0]!.n).toBe(1);
  });

  it('a run without Describe is bounded by the deadline: a silent server gives the connection up instead of waiting', async () => {
    const target = new URL(TEST_DATABASE_URL!);
    const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
    try {
      const url = new URL(TEST_DATABASE_URL!);
      url.port = String(proxy.port);
      const { schema } = await createSchema(TEST_DATABASE_URL!);
      const store = await openStore({ databaseUrl: url.toString(), schema, poolSize: 1 });
      opened.push(store);
      const v = { n: 1, at: new Date(), bytes: Buffer.from([1]), doc: '{}', list: [] };
      await echo(store.db, v);
      await echo(store.db, v); // described and prepared: this statement now runs as Bind, Execute, Sync
      proxy.blackhole();
      const start = Date.now();
      await expect(withDeadline(300, () => echo(store.db, v))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect(Date.now() - start).toBeLessThan(2000);
      proxy.heal();
      // The connection given up is replaced: the statement is prepared (and described) again on the new one.
      expect((await echo(store.db, { ...v, n: 9 }))[0]!.n).toBe(9);
    } finally {
      await proxy.close();
    }
  });

  it("inside a transaction a compiled statement runs on the transaction's connection (through Kysely)", async () => {
    const { store } = await oneConnection();
    await sql`create temporary table seen (id int primary key)`.execute(store.db);
    const count = compiledStatement<{ min: number }, { n: number }>((v) => sql<{ n: number }>`select count(*)::int as n from seen where id >= ${v.min}::int`);
    const inside = await store.db.transaction().execute(async (trx) => {
      await sql`insert into seen values (1), (2)`.execute(trx);
      return (await count(trx, { min: 0 }))[0]!.n;
    });
    // Another connection would not see the uncommitted rows (and with one connection in the pool, would wait for ever).
    expect(inside).toBe(2);
  });

  it('an error the statement raises after the first run reaches the caller, and the next run works', async () => {
    const { store, descriptions } = await oneConnection();
    const divide = compiledStatement<{ d: number }, { q: number }>((v) => sql<{ q: number }>`select 10 / ${v.d}::int as q`);
    expect(await divide(store.db, { d: 2 })).toEqual([{ q: 5 }]);
    await expect(divide(store.db, { d: 0 })).rejects.toMatchObject({ code: '22012' });
    expect(await divide(store.db, { d: 5 })).toEqual([{ q: 2 }]);
    expect(descriptions()).toBe(1);
  });
});
