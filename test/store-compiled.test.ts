import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { compiledStatement, compiledSteps } from '../src/store/statement.js';
import { openTestStore } from './helpers/server.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

describe('statements compiled once per shape', () => {
  it('bind each run its own values, keep shapes apart, and map a refusal to the error of the run', async () => {
    const { store, schema, cleanup } = await openTestStore();
    cleanups.push(async () => {
      await store.close();
      await cleanup();
    });
    const db = store.db;
    // passkeyd_refuse() comes with the migrations.
    await migrateToLatest(db, schema);
    let builds = 0;
    const echo = compiledStatement<{ a: string; b: number }, { a: string; b: number; upper: string | null }, { upper: boolean }>((v, _db, shape) => {
      builds++;
      return sql<{ a: string; b: number; upper: string | null }>`select ${v.a}::text as a, ${v.b}::int as b, ${shape.upper ? sql`upper(${v.a}::text)` : sql`null::text`} as upper`;
    });
    expect(await echo(db, { a: 'x', b: 1 }, { upper: false })).toEqual([{ a: 'x', b: 1, upper: null }]);
    expect(await echo(db, { a: 'y', b: 2 }, { upper: false })).toEqual([{ a: 'y', b: 2, upper: null }]);
    expect(await echo(db, { a: 'z', b: 3 }, { upper: true })).toEqual([{ a: 'z', b: 3, upper: 'Z' }]);
    expect(await echo(db, { a: 'w', b: 4 }, { upper: true })).toEqual([{ a: 'w', b: 4, upper: 'W' }]);
    expect(builds).toBe(2);

    const pick = compiledSteps<{ n: number }, { ok: boolean; n: number }, { kind: string }>((v) => ({
      steps: [{ name: 'small', body: sql`select ${v.n}::int as n where ${v.n}::int < 10`, refusal: () => new Error('from the build') }],
      tail: sql`small.n from (select 1) one left join small on true`,
    }));
    expect((await pick(db, { n: 3 }, { kind: 'a' }))[0]!.n).toBe(3);
    await expect(pick(db, { n: 30 }, { kind: 'a' }, { small: () => new Error('from this run') })).rejects.toThrow('from this run');
    await expect(pick(db, { n: 31 }, { kind: 'a' })).rejects.toThrow('from the build');
    expect((await pick(db, { n: 4 }, { kind: 'a' }))[0]!.n).toBe(4);
  });
});
