import { sql, type Insertable, type Kysely, type Selectable, type Transaction, type Updateable } from 'kysely';
import { listPage, type ListResult, type Page } from './lists.js';
import type { Database, UsersTable } from './schema.js';

/** A user as stored (current state). */
export type User = Selectable<UsersTable>;

type Db = Kysely<Database> | Transaction<Database>;

/** One user by id, or undefined. */
export async function findUser(db: Db, userId: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst();
}

/**
 * One user by id, with the user's aggregate row locked until the transaction ends: the lock every
 * change to the user takes first (the append's upsert), so a change decided on what this read sees
 * cannot interleave with another, and all writers take their locks in one order.
 */
export async function findUserForUpdate(trx: Transaction<Database>, userId: string): Promise<User | undefined> {
  const { rows } = await sql<User>`select u.* from users u join aggregates a on a.aggregate_type = 'user' and a.aggregate_id = u.id
    where u.id = ${userId} for update of a`.execute(trx);
  return rows[0];
}

/** The organization a user belongs to, or undefined for an unknown user. */
export async function orgOfUser(db: Db, userId: string): Promise<string | undefined> {
  const row = await db.selectFrom('users').select('org_id').where('id', '=', userId).executeTakeFirst();
  return row?.org_id;
}

/** True when a username (case-insensitive) is taken. */
export async function usernameTaken(db: Db, username: string): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('username_lower', '=', username.toLowerCase()).executeTakeFirst();
  return row !== undefined;
}

/** The unique constraint a duplicate username violates. */
export const USERNAME_UNIQUE = 'users_username_lower_key';

/** Stores a new user's current-state row. */
export async function insertUser(trx: Transaction<Database>, row: Insertable<UsersTable>): Promise<void> {
  await trx.insertInto('users').values(row).execute();
}

/** Changes a user's columns (the append that recorded the change keeps its sequence in step). */
export async function updateUser(trx: Transaction<Database>, userId: string, changes: Updateable<UsersTable>): Promise<void> {
  if (Object.keys(changes).length === 0) return;
  await trx.updateTable('users').set(changes).where('id', '=', userId).execute();
}

/** Removes a user's current state; its passkeys, sessions, codes and challenges go by cascade. */
export async function deleteUserRow(trx: Transaction<Database>, userId: string): Promise<void> {
  await trx.deleteFrom('users').where('id', '=', userId).execute();
}

export type TextMethod = 'equals' | 'equals_ic' | 'starts' | 'starts_ic' | 'contains' | 'contains_ic';

export interface UserFilter {
  orgId?: string | undefined;
  username?: { value: string; method: TextMethod } | undefined;
  email?: { value: string; method: TextMethod } | undefined;
  userIds?: string[] | undefined;
  type?: 'human' | 'machine' | undefined;
}

export type UserSort = 'creation_date' | 'username' | 'email';

const SORT_COLUMN: Record<UserSort, string> = { creation_date: 'created_at', username: 'username_lower', email: 'email' };

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Users matching every filter, one page of them, with the total. */
export async function listUsers(db: Kysely<Database>, filters: readonly UserFilter[], page: Page, sort: UserSort): Promise<ListResult<User>> {
  return db.transaction().execute(async (trx) => {
    let q = trx.selectFrom('users');
    for (const f of filters) {
      if (f.orgId !== undefined) q = q.where('org_id', '=', f.orgId);
      if (f.userIds !== undefined) q = f.userIds.length ? q.where('id', 'in', f.userIds) : q.where((eb) => eb.lit(false));
      if (f.type !== undefined) q = q.where('type', '=', f.type);
      for (const [col, t] of [
        ['username', f.username],
        ['email', f.email],
      ] as const) {
        if (!t) continue;
        const ic = t.method.endsWith('_ic');
        const base = t.method.replace('_ic', '');
        const pattern = base === 'equals' ? escapeLike(t.value) : base === 'starts' ? `${escapeLike(t.value)}%` : `%${escapeLike(t.value)}%`;
        q = q.where(col, ic ? 'ilike' : 'like', pattern);
      }
    }
    return listPage(trx, q, (s) => s.selectAll(), { column: SORT_COLUMN[sort], tiebreak: 'id' }, page);
  });
}

/** True when an active user with this login name (case-insensitive) has at least one READY passkey. */
export async function hasReadyPasskey(db: Db, loginName: string): Promise<boolean> {
  const row = await db
    .selectFrom('users as u')
    .innerJoin('passkeys as p', 'p.user_id', 'u.id')
    .select('p.id')
    .where('u.username_lower', '=', loginName.toLowerCase())
    .where('u.state', '=', 'active')
    .where('p.state', '=', 'ready')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}
