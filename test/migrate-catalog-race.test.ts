import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../src/store/migrate.js';
import { BACKEND, openTestStore, TEST_DATABASE_URL } from './helpers/server.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

describe.skipIf(BACKEND !== 'postgres')('migrations while other schemas come and go', () => {
  it('succeed although the catalog they list changes under them (another application, or a test file, dropping its schema)', async () => {
    // Another client creates and drops schemas with tables as fast as it can, the way finished test
    // files and the bench drop theirs while other files migrate.
    const churn = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await churn.connect();
    let stop = false;
    let dropped = 0;
    const churning = (async () => {
      while (!stop) {
        const name = `churn_${process.pid}_${dropped}`;
        await churn.query(`create schema ${name}; create table ${name}.t (id serial primary key, a text, b text, c text)`);
        await churn.query(`drop schema ${name} cascade`);
        dropped++;
      }
    })();
    try {
      for (let i = 0; i < 12; i++) {
        const { store, schema, cleanup } = await openTestStore();
        cleanups.push(async () => {
          await store.close();
          await cleanup();
        });
        expect((await migrateToLatest(store.db, schema)).length).toBeGreaterThan(0);
      }
    } finally {
      stop = true;
      await churning;
      await churn.end();
    }
    expect(dropped).toBeGreaterThan(0);
  }, 120_000);
});
