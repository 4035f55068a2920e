import type { Kysely, Selectable } from 'kysely';
import { newId } from '../ids.js';
import { appendEvents, latestPosition } from '../store/events.js';
import type { Database, OrgsTable } from '../store/schema.js';
import { inTransaction, isUniqueViolation } from '../store/transaction.js';
import { alreadyExists } from './errors.js';
import type { ChangeDetails, ListResult, Page } from './types.js';

export type Org = Selectable<OrgsTable>;

/** Creates an organization. */
export async function addOrganization(db: Kysely<Database>, input: { name: string; orgId?: string | undefined }, creator: string): Promise<{ id: string; details: ChangeDetails }> {
  const id = input.orgId ?? newId();
  try {
    return await inTransaction(db, async (trx) => {
      const exists = await trx.selectFrom('aggregates').select('aggregate_id').where('aggregate_type', '=', 'org').where('aggregate_id', '=', id).executeTakeFirst();
      if (exists) throw alreadyExists(`organization ${id} already exists`);
      const details = await appendEvents(trx, { type: 'org', id, owner: id }, [{ type: 'org.added', payload: { name: input.name } }], creator);
      await trx
        .insertInto('orgs')
        .values({ id, name: input.name, state: 'active', is_default: false, created_at: details.creationDate, updated_at: details.changeDate, sequence: details.sequence })
        .execute();
      return { id, details };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw alreadyExists(`organization ${id} already exists`);
    throw err;
  }
}

/** Lists organizations by creation date: newest first, oldest first with `asc`. */
export async function listOrganizations(db: Kysely<Database>, page: Page): Promise<ListResult<Org>> {
  return db.transaction().execute(async (trx) => {
    const [items, total, position] = await Promise.all([
      trx.selectFrom('orgs').selectAll().orderBy('created_at', page.asc ? 'asc' : 'desc').orderBy('id', page.asc ? 'asc' : 'desc').offset(page.offset).limit(page.limit).execute(),
      trx.selectFrom('orgs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      latestPosition(trx),
    ]);
    return { items, total: Number(total.n), processedPosition: position, timestamp: new Date() };
  });
}

/** The organization a user belongs to, or undefined for an unknown user. */
export async function orgOfUser(db: Kysely<Database>, userId: string): Promise<string | undefined> {
  const row = await db.selectFrom('users').select('org_id').where('id', '=', userId).executeTakeFirst();
  return row?.org_id;
}
