import { sql, type Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import { withoutTimeouts } from './deadline.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema.js';

// Any constant shared by every passkeyd instance.
const MIGRATION_LOCK = 7_146_355_001;

/**
 * Applies pending migrations. A session-level advisory lock on one connection serializes instances
 * that start at once, including the creation of Kysely's own bookkeeping tables.
 */
export async function migrateToLatest(db: Kysely<Database>, schema?: string): Promise<string[]> {
  // Waiting for another instance's migration, or building an index, may take longer than any statement
  // timeout: none applies here (the session's is set back before the connection returns to the pool).
  return withoutTimeouts(() =>
    db.connection().execute(async (conn) => {
      await sql`set statement_timeout = 0`.execute(conn);
      await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn);
      try {
        const migrator = new Migrator({ db: conn, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) });
        const { error, results } = await migrator.migrateToLatest();
        if (error) throw error;
        return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
      } finally {
        await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn);
        await sql`reset statement_timeout`.execute(conn);
      }
    }),
  );
}
