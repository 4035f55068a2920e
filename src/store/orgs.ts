import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import type { AppendResult } from './events.js';
import { stampOf } from './events.js';
import { listPage, type ListResult, type Page } from './lists.js';
import type { Database, LoginPoliciesTable, OrgsTable } from './schema.js';

export type Org = Selectable<OrgsTable>;

/** A stored login policy (an organization's own, or the instance default under org_id ''). */
export type LoginPolicyRow = Selectable<LoginPoliciesTable>;

/** The policy fields a change writes. */
export type LoginPolicyFields = Omit<LoginPolicyRow, 'org_id' | 'sequence' | 'created_at' | 'updated_at'>;

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

/**
 * The policy that applies to an organization: its own row, else the instance default's (org_id ''),
 * else undefined (the built-in defaults). The row's org_id says whose it is.
 */
export async function findLoginPolicy(db: Db, orgId: string): Promise<LoginPolicyRow | undefined> {
  return db.selectFrom('login_policies').selectAll().where('org_id', 'in', [orgId, '']).orderBy('org_id', 'desc').limit(1).executeTakeFirst();
}

/**
 * The login policy (as jsonb, or null for none) that applies to the organization `orgId` names (a
 * column or value): its own, else the instance default. Reads that need it anyway take it along, so
 * a ceremony does not pay a round trip for it.
 */
export function loginPolicyOf(orgId: RawBuilder<unknown>): RawBuilder<LoginPolicyFields | null> {
  return sql<LoginPolicyFields | null>`(select to_jsonb(lp) from login_policies lp where lp.org_id in (${orgId}, '') order by lp.org_id desc limit 1)`;
}

/** The default organization's id, for a statement: it owns every session. */
export const DEFAULT_ORG_ID: RawBuilder<string> = sql<string>`(select id from orgs where is_default)`;

/**
 * Whether the login policy that applies to the organization `orgId` names (its own, else the instance
 * default) requires SSO; false when there is none. One column, for the login path's statements.
 */
export function ssoRequiredOf(orgId: RawBuilder<unknown>): RawBuilder<boolean> {
  return sql<boolean>`coalesce((select lp.sso_required from login_policies lp where lp.org_id in (${orgId}, '') order by lp.org_id desc limit 1), false)`;
}

/** The policy of the organization of an active user found by login name or id (undefined: no such user). */
export async function findLoginPolicyOfLogin(db: Db, lookup: { loginName: string } | { userId: string }): Promise<{ orgId: string; policy: LoginPolicyFields | null } | undefined> {
  const where = 'loginName' in lookup ? sql`u.username_lower = ${lookup.loginName.toLowerCase()}` : sql`u.id = ${lookup.userId}`;
  const { rows } = await sql<{ org_id: string; policy: LoginPolicyFields | null }>`select u.org_id, ${loginPolicyOf(sql`u.org_id`)} as policy
    from users u where ${where} and u.state = 'active'`.execute(db);
  const row = rows[0];
  return row ? { orgId: row.org_id, policy: row.policy } : undefined;
}

/** Writes an organization's (or, with org_id '', the instance's) policy, from the append that recorded it. */
export async function upsertLoginPolicy(trx: Transaction<Database>, orgId: string, fields: LoginPolicyFields, details: AppendResult): Promise<void> {
  const stamp = stampOf(details);
  await trx
    .insertInto('login_policies')
    .values({ org_id: orgId, ...fields, ...stamp })
    .onConflict((oc) => oc.column('org_id').doUpdateSet({ ...fields, sequence: stamp.sequence, updated_at: stamp.updated_at }))
    .execute();
}

/** Drops an organization's own policy (it inherits the instance default again); false when it had none. */
export async function deleteLoginPolicy(trx: Transaction<Database>, orgId: string): Promise<boolean> {
  const r = await trx.deleteFrom('login_policies').where('org_id', '=', orgId).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}
