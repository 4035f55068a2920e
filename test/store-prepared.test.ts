import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../src/store/db.js';
import { BACKEND, createSchema, TEST_DATABASE_URL } from './helpers/server.js';

const opened: Store[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});

describe.skipIf(BACKEND !== 'postgres')('prepared statements on PostgreSQL', () => {
  it.each([true, false])('preparedStatements=%s: a table changed under a prepared statement (another instance migrated) keeps working', async (preparedStatements) => {
    const { schema } = await createSchema(TEST_DATABASE_URL!);
    // One connection, so the statement prepared before the change is the one used after it.
    const store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, poolSize: 1, preparedStatements });
    opened.push(store);
    const db = store.db as any;
    // A temporary table (this connection's own): other test files' migrations introspect every
    // schema's tables, and altering one of those under them makes their catalog reads fail.
    await sql`create temporary table t (id int primary key, a text)`.execute(db);
    await sql`insert into t values (1, 'one')`.execute(db);
    const read = () => sql<Record<string, unknown>>`select * from t where id = ${1}`.execute(db).then((r) => r.rows[0]);
    for (let i = 0; i < 3; i++) expect(await read()).toEqual({ id: 1, a: 'one' });
    // What a migration by a newer instance does: the same text now has another result type.
    await sql`alter table t add column b text not null default 'bee'`.execute(db);
    expect(await read()).toEqual({ id: 1, a: 'one', b: 'bee' });
    expect(await read()).toEqual({ id: 1, a: 'one', b: 'bee' });
    await sql`alter table t drop column a`.execute(db);
    expect(await read()).toEqual({ id: 1, b: 'bee' });
  });
});
