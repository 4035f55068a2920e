import pg from 'pg';
import { isProcessAlive } from '../src/server/data-dir-lock.js';

/**
 * Test schemas on PostgreSQL are named t_<vitest pid>_<random> and dropped only here, after every test
 * file is done. (Dropping one while another file migrated used to fail that migration, when Kysely's
 * migrator listed every table in the database; src/store/introspector.ts now confines it to its own
 * schema, and test/migrate-catalog-race.test.ts keeps it so.) Schemas of runs whose process is gone
 * are dropped at the start.
 */
async function dropSchemas(url: string, which: (pid: number) => boolean): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(`select nspname as name from pg_namespace where nspname ~ '^t_[0-9]+_'`);
    for (const { name } of rows) {
      const pid = Number(name.split('_')[1]);
      if (which(pid)) await client.query(`drop schema if exists "${name}" cascade`);
    }
    // The roles of a run through PgBouncer (test/helpers/server.ts createSchema), once their schemas are gone.
    const roles = await client.query<{ name: string }>(`select rolname as name from pg_roles where rolname ~ '^t_[0-9]+_'`);
    for (const { name } of roles.rows) {
      if (which(Number(name.split('_')[1]))) await client.query(`drop role if exists "${name}"`);
    }
  } finally {
    await client.end();
  }
}

export default async function setup(): Promise<(() => Promise<void>) | void> {
  const url = process.env.PASSKEYD_TEST_DATABASE_URL;
  if (!url) return;
  await dropSchemas(url, (pid) => !isProcessAlive(pid));
  return () => dropSchemas(url, (pid) => pid === process.pid);
}
