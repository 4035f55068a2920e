import { Migrator } from 'kysely/migration';
import { onTestFinished } from 'vitest';
import { migrations } from '../../src/store/migrations/index.js';
import { openTestStore } from './server.js';

/**
 * For a migration test: a private store (migrated to the latest, closed when the test ends), its
 * schema (PostgreSQL), and a Migrator over passkeyd's migrations in that schema, to step down and up.
 */
export async function openMigrationStore() {
  const { store, schema, cleanup } = await openTestStore();
  onTestFinished(async () => {
    await store.close();
    await cleanup();
  });
  const migrator = new Migrator({ db: store.db, provider: { getMigrations: async () => migrations }, ...(schema ? { migrationTableSchema: schema } : {}) });
  return { db: store.db, schema, migrator };
}
