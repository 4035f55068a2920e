import type { Kysely } from 'kysely';
import { ROLES, type Role } from '../auth/tokens.js';
import { invalid, notFound, precondition } from '../errors.js';
import * as store from '../store/administrators.js';
import { appendEvents } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import type { Database } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { findUserForUpdate } from '../store/users.js';
import { event } from './events.js';
import type { ChangeDetails } from './types.js';

export type { GrantFilter } from '../store/administrators.js';

/** Where roles apply: the instance (`orgId` undefined) or one organization. */
export interface Grant {
  userId: string;
  orgId: string | undefined;
  roles: string[];
}

/**
 * Checks a grant's roles against its resource: `instance_admin` only on the instance; `org_admin` only
 * on an organization; `session_manager` on either. Organization roles are granted within the user's
 * own organization only (a role in another tenant would let its holder act there unseen by that
 * tenant's admins).
 */
function checkRoles(roles: string[], orgId: string | undefined, userOrg: string): Role[] {
  const unique = [...new Set(roles)];
  for (const r of unique) {
    if (!ROLES.includes(r as Role)) throw invalid(`roles: unknown role "${r}" (roles: ${ROLES.join(', ')})`);
    if (r === 'instance_admin' && orgId !== undefined) throw invalid('roles: instance_admin is granted on the instance (resource.instance)');
    if (r === 'org_admin' && orgId === undefined) throw invalid('roles: org_admin is granted on an organization (resource.organization_id)');
  }
  if (orgId !== undefined && orgId !== userOrg) throw precondition("organization roles are granted within the user's own organization");
  return unique as Role[];
}

/** Grants roles (creating the administrator) or, with `replace`, sets them (updating it). */
export async function setGrant(db: Kysely<Database>, grant: Grant, mode: 'create' | 'update', creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await findUserForUpdate(trx, grant.userId);
    if (!user) throw notFound(`user ${grant.userId}`);
    const roles = checkRoles(grant.roles, grant.orgId, user.org_id);
    const orgId = grant.orgId ?? store.INSTANCE;
    const existing = await store.findGrant(trx, grant.userId, orgId);
    if (mode === 'create' && existing) throw precondition(`user ${grant.userId} is already an administrator there; use UpdateAdministrator`);
    if (mode === 'update' && !existing) throw notFound(`administrator ${grant.userId} on that resource`);
    const e = mode === 'create' ? event('user.administrator.added', { org_id: orgId, roles }) : event('user.administrator.changed', { org_id: orgId, roles });
    const details = await appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [e], creator);
    await store.upsertGrant(trx, user.id, orgId, roles, details.changeDate);
    return details;
  });
}

/** Grants roles, adding them to any the user already has on that resource (the CLI's bootstrap). */
export async function grantRoles(db: Kysely<Database>, grant: Grant, creator: string): Promise<ChangeDetails> {
  const existing = await store.findGrant(db, grant.userId, grant.orgId ?? store.INSTANCE);
  const roles = [...new Set([...(existing?.roles ?? []), ...grant.roles])];
  return setGrant(db, { ...grant, roles }, existing ? 'update' : 'create', creator);
}

/** Revokes every role of a user on a resource. */
export async function deleteGrant(db: Kysely<Database>, userId: string, orgId: string | undefined, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await findUserForUpdate(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    const key = orgId ?? store.INSTANCE;
    if (!(await store.deleteGrant(trx, userId, key))) throw notFound(`administrator ${userId} on that resource`);
    return appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [event('user.administrator.removed', { org_id: key })], creator);
  });
}

export function listGrants(db: Kysely<Database>, filters: store.GrantFilter[], page: Page): Promise<ListResult<store.AdministratorView>> {
  return store.listGrants(db, filters, page);
}

/** The organization id a grant names, or undefined for the instance (as stored: ''). */
export function grantOrg(stored: string): string | undefined {
  return stored === store.INSTANCE ? undefined : stored;
}
