import { sql, type Kysely } from 'kysely';
import { Migrator } from 'kysely/migration';
import { withoutTimeouts } from './deadline.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema.js';

// Any constant shared by every passkeyd instance.
const MIGRATION_LOCK = 7_146_355_001;

/**
 * Applies pending migrations in one transaction, whose advisory lock serializes instances that start
 * at once, including the creation of Kysely's own bookkeeping tables. One transaction (not a lock held
 * by a session across statements) because behind a pooler in transaction mode (PgBouncer) each
 * statement outside a transaction may run on another server connection: a session lock would be
 * taken on one and never released.
 */
export async function migrateToLatest(db: Kysely<Database>, schema?: string): Promise<string[]> {
  // Waiting for another instance's migration, or building an index, may take longer than any statement
  // timeout: none applies here (SET LOCAL ends with the transaction).
  return withoutTimeouts(() =>
    db.transaction().execute(async (trx) => {
      await sql`set local statement_timeout = 0`.execute(trx);
      await sql`select pg_advisory_xact_lock(${MIGRATION_LOCK})`.execute(trx);
      if (schema) {
        // The schema is chosen by a search_path in the connection's startup packet, which a pooler in
        // transaction mode drops (or refuses): better no start than tables written to another schema.
        const { rows } = await sql<{ s: string | null }>`select current_schema() as s`.execute(trx);
        if (rows[0]?.s !== schema) {
          throw new Error(
            `PASSKEYD_DATABASE_SCHEMA is "${schema}" but the connection's schema is "${rows[0]?.s}": behind a pooler in transaction mode ` +
              `(PgBouncer), leave PASSKEYD_DATABASE_SCHEMA unset and give the role its schema (ALTER ROLE ... SET search_path = ...)`,
          );
        }
      }
      const migrator = new Migrator({ db: trx, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) });
      const { error, results } = await migrator.migrateToLatest();
      if (error) throw error;
      return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    }),
  );
}
