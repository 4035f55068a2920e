import { sql, type DatabaseIntrospector, type DatabaseMetadataOptions, type Dialect, type Kysely, type SchemaMetadata, type TableMetadata } from 'kysely';

/** Kysely's migrator's own tables (kysely_migration, kysely_migration_lock). */
const MIGRATOR_TABLES = 'kysely_migration%';

/**
 * What Kysely's migrator asks of the database (does this schema, does this table exist), answered for
 * the connection's own schema only, from the catalog tables alone. Kysely's PostgreSQL introspector lists
 * the columns of every schema's tables and resolves each schema by name as it goes (privilege and
 * sequence functions), so another schema dropped meanwhile (another application, a finished test file,
 * the bench) made a migration fail with "schema ... does not exist". passkeyd reads the catalog only to
 * migrate, so tables come without their columns.
 */
class OwnSchemaIntrospector implements DatabaseIntrospector {
  constructor(private readonly db: Kysely<any>) {}

  async getSchemas(): Promise<SchemaMetadata[]> {
    const { rows } = await sql<SchemaMetadata>`select nspname as name from pg_catalog.pg_namespace
      where nspname !~ '^pg_' and nspname <> 'information_schema' order by nspname`.execute(this.db);
    return rows;
  }

  async getTables(options: DatabaseMetadataOptions = { withInternalKyselyTables: false }): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; kind: string; schema: string }>`select c.relname as name, c.relkind as kind, ns.nspname as schema
      from pg_catalog.pg_class c join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
      where ns.nspname = current_schema() and c.relkind in ('r', 'v', 'p', 'f')
        and (${options.withInternalKyselyTables}::boolean or c.relname not like ${MIGRATOR_TABLES})
      order by c.relname`.execute(this.db);
    return rows.map((r) => ({ name: r.name, schema: r.schema, isView: r.kind === 'v', isForeign: r.kind === 'f', columns: [] }));
  }
}

/** `dialect`, with the catalog read only in the connection's own schema (see {@link OwnSchemaIntrospector}). */
export function withOwnSchemaIntrospection(dialect: Dialect): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => dialect.createDriver(),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createIntrospector: (db) => new OwnSchemaIntrospector(db),
  };
}
