import type { Kysely } from 'kysely';
import { alreadyExists } from '../errors.js';
import { newId } from '../ids.js';
import { aggregateExists, appendEvents } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import { insertOrg, listOrgs, type Org } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { inTransaction, mappingDuplicates } from '../store/transaction.js';
import { event } from './events.js';
import type { ChangeDetails } from './types.js';

export type { Org } from '../store/orgs.js';

/** Creates an organization. */
export async function addOrganization(db: Kysely<Database>, input: { name: string; orgId?: string | undefined }, creator: string): Promise<{ id: string; details: ChangeDetails }> {
  const id = input.orgId ?? newId();
  const taken = () => alreadyExists(`organization ${id} already exists`);
  const run = () =>
    inTransaction(db, async (trx) => {
      if (await aggregateExists(trx, 'org', id)) throw taken();
      const details = await appendEvents(trx, { type: 'org', id, owner: id }, [event('org.added', { name: input.name })], creator);
      await insertOrg(trx, { id, name: input.name, isDefault: false }, details);
      return { id, details };
    });
  return mappingDuplicates(run, { '*': taken });
}

/** Lists organizations by creation date: newest first, oldest first with `asc`. */
export function listOrganizations(db: Kysely<Database>, page: Page): Promise<ListResult<Org>> {
  return listOrgs(db, page);
}
