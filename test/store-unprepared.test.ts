import { describe, expect, it } from 'vitest';
import { openStore } from '../src/store/db.js';
import { BACKEND, createSchema, TEST_DATABASE_URL } from './helpers/server.js';

// Behind PgBouncer in transaction mode a statement prepared on one server connection is missing on the
// next: PASSKEYD_DATABASE_PREPARED_STATEMENTS=false must prepare nothing, a library's named queries too
// (the PostgreSQL rate limiter names its own; through PgBouncer they failed and limits fell back to
// counting per process).
describe.skipIf(BACKEND !== 'postgres')('preparedStatements=false on PostgreSQL', () => {
  it('prepares no statement, not even a named one', async () => {
    const { schema } = await createSchema(TEST_DATABASE_URL!);
    const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, poolSize: 1, preparedStatements: false });
    try {
      const pool = store.pgPool!;
      const named = await pool.query({ name: 'rlflx-like', text: 'select $1::int as v', values: [7] });
      expect(named.rows).toEqual([{ v: 7 }]);
      await pool.query('select $1::text as t', ['x']);
      const { rows } = await pool.query('select count(*)::int as n from pg_prepared_statements');
      expect(rows[0].n).toBe(0);
    } finally {
      await store.close();
    }
  });
});
