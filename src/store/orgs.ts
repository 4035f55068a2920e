import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { AppendResult } from './events.js';
import { stampOf } from './events.js';
import { listPage, type ListResult, type Page } from './lists.js';
import type { Database, OrgsTable } from './schema.js';

export type Org = Selectable<OrgsTable>;

type Db = Kysely<Database> | Transaction<Database>;

/** Stores a new organization's current-state row. */
export async function insertOrg(trx: Transaction<Database>, org: { id: string; name: string; isDefault: boolean }, details: AppendResult): Promise<void> {
  await trx
    .insertInto('orgs')
    .values({ id: org.id, name: org.name, state: 'active', is_default: org.isDefault, ...stampOf(details) })
    .execute();
}

/** True when an active organization has this id. */
export async function isActiveOrg(db: Db, orgId: string): Promise<boolean> {
  const row = await db.selectFrom('orgs').select('id').where('id', '=', orgId).where('state', '=', 'active').executeTakeFirst();
  return row !== undefined;
}

/** True when an organization (active or not) has this id. */
export async function orgExists(db: Db, orgId: string): Promise<boolean> {
  const row = await db.selectFrom('orgs').select('id').where('id', '=', orgId).executeTakeFirst();
  return row !== undefined;
}

/** The id of the organization created at first start, if it exists yet. */
export async function findDefaultOrgId(db: Db): Promise<string | undefined> {
  const row = await db.selectFrom('orgs').select('id').where('is_default', '=', true).executeTakeFirst();
  return row?.id;
}

/** Organizations by creation date, one page, with the total. */
export async function listOrgs(db: Kysely<Database>, page: Page): Promise<ListResult<Org>> {
  return db.transaction().execute((trx) => listPage(trx, trx.selectFrom('orgs'), (s) => s.selectAll(), { column: 'created_at', tiebreak: 'id' }, page));
}

// Any constant shared by every passkeyd instance.
const BOOTSTRAP_LOCK = 7_146_355_002;

/** Serializes first-start set-up across instances until the transaction ends. */
export async function lockBootstrap(trx: Transaction<Database>): Promise<void> {
  await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(trx);
}
