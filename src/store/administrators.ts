import type { Kysely, Selectable, Transaction } from 'kysely';
import { listPage, type ListResult, type Page } from './lists.js';
import type { AdministratorsTable, Database } from './schema.js';

/** A grant of roles to a user, on the instance (`org_id` '') or on one organization. */
export type AdministratorRow = Selectable<AdministratorsTable>;

type Db = Kysely<Database> | Transaction<Database>;

/** The organization id that stands for "the instance". */
export const INSTANCE = '';

export async function findGrant(db: Db, userId: string, orgId: string): Promise<AdministratorRow | undefined> {
  return db.selectFrom('administrators').selectAll().where('user_id', '=', userId).where('org_id', '=', orgId).executeTakeFirst();
}

/** Every grant a user holds (the per-call role lookup). */
export async function grantsOf(db: Db, userId: string): Promise<{ org_id: string; roles: string[] }[]> {
  return db.selectFrom('administrators').select(['org_id', 'roles']).where('user_id', '=', userId).execute();
}

/** Creates or replaces a grant. */
export async function upsertGrant(trx: Transaction<Database>, userId: string, orgId: string, roles: string[], at: Date): Promise<void> {
  await trx
    .insertInto('administrators')
    .values({ user_id: userId, org_id: orgId, roles, created_at: at, updated_at: at })
    .onConflict((oc) => oc.columns(['user_id', 'org_id']).doUpdateSet({ roles, updated_at: at }))
    .execute();
}

export async function deleteGrant(trx: Transaction<Database>, userId: string, orgId: string): Promise<boolean> {
  const gone = await trx.deleteFrom('administrators').where('user_id', '=', userId).where('org_id', '=', orgId).returning('user_id').executeTakeFirst();
  return gone !== undefined;
}

export interface GrantFilter {
  userId?: string | undefined;
  /** A grant's resource: an organization id, or {@link INSTANCE}. */
  orgId?: string | undefined;
  /** Only grants on these resources (an org admin sees its organization's). */
  orgIn?: string[] | undefined;
}

export type AdministratorView = AdministratorRow & { user_org_id: string };

export async function listGrants(db: Kysely<Database>, filters: readonly GrantFilter[], page: Page): Promise<ListResult<AdministratorView>> {
  return db.transaction().execute((trx) => {
    let q = trx.selectFrom('administrators as a').innerJoin('users as u', 'u.id', 'a.user_id');
    for (const f of filters) {
      if (f.userId !== undefined) q = q.where('a.user_id', '=', f.userId);
      if (f.orgId !== undefined) q = q.where('a.org_id', '=', f.orgId);
      if (f.orgIn !== undefined) q = f.orgIn.length ? q.where('a.org_id', 'in', f.orgIn) : q.where((eb) => eb.lit(false));
    }
    return listPage(trx, q, (s) => s.selectAll('a').select('u.org_id as user_org_id'), { column: 'a.created_at', tiebreak: 'a.user_id' }, page);
  });
}
