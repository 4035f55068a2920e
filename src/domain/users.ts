import { randomBytes } from 'node:crypto';
import type { Kysely, Selectable, Transaction } from 'kysely';
import { newId } from '../ids.js';
import { appendEvents, latestPosition } from '../store/events.js';
import type { Database, UsersTable } from '../store/schema.js';
import { inTransaction, isUniqueViolation } from '../store/transaction.js';
import { alreadyExists, notFound } from './errors.js';
import type { ChangeDetails, ListResult, Page } from './types.js';

/** A user as stored (current state). */
export type User = Selectable<UsersTable>;

export interface Profile {
  givenName: string;
  familyName: string;
  nickName?: string | undefined;
  displayName?: string | undefined;
  preferredLanguage?: string | undefined;
}

export interface AddHumanUserInput {
  userId?: string | undefined;
  username?: string | undefined;
  orgId: string;
  profile: Profile;
  email: string;
  emailVerified: boolean;
}

const USER = 'user';

function usernameTaken(username: string) {
  return alreadyExists(`username "${username}" is already taken`);
}

/** Creates a human user with a fresh random WebAuthn user handle (never derived from the id or PII). */
export async function addHumanUser(db: Kysely<Database>, input: AddHumanUserInput, creator: string): Promise<{ id: string; details: ChangeDetails }> {
  const id = input.userId ?? newId();
  const username = input.username ?? input.email;
  const displayName = input.profile.displayName || `${input.profile.givenName} ${input.profile.familyName}`;
  try {
    return await inTransaction(db, async (trx) => {
      const org = await trx.selectFrom('orgs').select('id').where('id', '=', input.orgId).where('state', '=', 'active').executeTakeFirst();
      if (!org) throw notFound(`organization ${input.orgId}`);
      const exists = await trx.selectFrom('aggregates').select('aggregate_id').where('aggregate_type', '=', USER).where('aggregate_id', '=', id).executeTakeFirst();
      if (exists) throw alreadyExists(`user ${id} already exists`);
      const taken = await trx.selectFrom('users').select('id').where('username_lower', '=', username.toLowerCase()).executeTakeFirst();
      if (taken) throw usernameTaken(username);
      const handle = randomBytes(32);
      const details = await appendEvents(
        trx,
        { type: USER, id, owner: input.orgId },
        [
          {
            type: 'user.human.added',
            payload: {
              username,
              given_name: input.profile.givenName,
              family_name: input.profile.familyName,
              nick_name: input.profile.nickName ?? '',
              display_name: displayName,
              preferred_language: input.profile.preferredLanguage ?? '',
              email: input.email,
              email_verified: input.emailVerified,
            },
          },
        ],
        creator,
      );
      await trx
        .insertInto('users')
        .values({
          id,
          org_id: input.orgId,
          username,
          username_lower: username.toLowerCase(),
          email: input.email,
          email_verified: input.emailVerified,
          given_name: input.profile.givenName,
          family_name: input.profile.familyName,
          nick_name: input.profile.nickName ?? '',
          display_name: displayName,
          preferred_language: input.profile.preferredLanguage ?? '',
          state: 'active',
          webauthn_user_handle: handle,
          created_at: details.creationDate,
          updated_at: details.changeDate,
          sequence: details.sequence,
        })
        .execute();
      return { id, details };
    });
  } catch (err) {
    if (isUniqueViolation(err, 'users_username_lower_key')) throw usernameTaken(username);
    if (isUniqueViolation(err)) throw alreadyExists(`user ${id} already exists`);
    throw err;
  }
}

export interface UpdateHumanUserInput {
  username?: string | undefined;
  profile?: Profile | undefined;
  email?: { email: string; verified: boolean } | undefined;
}

/** Changes a user's username, profile or email; one `user.human.changed` event with what changed. */
export async function updateHumanUser(db: Kysely<Database>, userId: string, input: UpdateHumanUserInput, creator: string): Promise<ChangeDetails> {
  try {
    return await inTransaction(db, async (trx) => {
      const user = await getUserForUpdate(trx, userId);
      const changes: Record<string, unknown> = {};
      if (input.username !== undefined && input.username !== user.username) {
        changes.username = input.username;
        changes.username_lower = input.username.toLowerCase();
      }
      if (input.profile) {
        const p = input.profile;
        const next = {
          given_name: p.givenName,
          family_name: p.familyName,
          nick_name: p.nickName ?? user.nick_name,
          display_name: p.displayName || `${p.givenName} ${p.familyName}`,
          preferred_language: p.preferredLanguage ?? user.preferred_language,
        };
        for (const [k, v] of Object.entries(next)) if (user[k as keyof User] !== v) changes[k] = v;
      }
      if (input.email && (input.email.email !== user.email || input.email.verified !== user.email_verified)) {
        changes.email = input.email.email;
        changes.email_verified = input.email.verified;
      }
      const { username_lower: _ignored, ...payload } = changes;
      const details = await appendEvents(trx, { type: USER, id: userId, owner: user.org_id }, [{ type: 'user.human.changed', payload }], creator);
      await trx
        .updateTable('users')
        .set({ ...changes, updated_at: details.changeDate, sequence: details.sequence })
        .where('id', '=', userId)
        .execute();
      return details;
    });
  } catch (err) {
    if (isUniqueViolation(err, 'users_username_lower_key')) throw usernameTaken(input.username ?? '');
    throw err;
  }
}

async function getUserForUpdate(trx: Transaction<Database>, userId: string): Promise<User> {
  const user = await trx.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst();
  if (!user) throw notFound(`user ${userId}`);
  return user;
}

/** Reads one user, or throws NOT_FOUND. */
export async function getUser(db: Kysely<Database> | Transaction<Database>, userId: string): Promise<User> {
  const user = await db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirst();
  if (!user) throw notFound(`user ${userId}`);
  return user;
}

/** Removes a user from every read (its passkeys and sessions go by cascade); its events stay as the audit trail. */
export async function deleteUser(db: Kysely<Database>, userId: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await getUserForUpdate(trx, userId);
    const details = await appendEvents(trx, { type: USER, id: userId, owner: user.org_id }, [{ type: 'user.removed', payload: { username: user.username } }], creator);
    await trx.deleteFrom('users').where('id', '=', userId).execute();
    return details;
  });
}

export type TextMethod = 'equals' | 'equals_ic' | 'starts' | 'starts_ic' | 'contains' | 'contains_ic';

export interface UserFilter {
  orgId?: string | undefined;
  username?: { value: string; method: TextMethod } | undefined;
  email?: { value: string; method: TextMethod } | undefined;
  userIds?: string[] | undefined;
}

export type UserSort = 'creation_date' | 'username' | 'email';

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Lists users matching every given filter, with the total count. */
export async function listUsers(db: Kysely<Database>, filters: UserFilter[], page: Page, sort: UserSort): Promise<ListResult<User>> {
  return db.transaction().execute(async (trx) => {
    let q = trx.selectFrom('users');
    for (const f of filters) {
      if (f.orgId !== undefined) q = q.where('org_id', '=', f.orgId);
      if (f.userIds !== undefined) q = f.userIds.length ? q.where('id', 'in', f.userIds) : q.where((eb) => eb.lit(false));
      for (const [col, t] of [['username', f.username], ['email', f.email]] as const) {
        if (!t) continue;
        const ic = t.method.endsWith('_ic');
        const base = t.method.replace('_ic', '');
        const pattern = base === 'equals' ? escapeLike(t.value) : base === 'starts' ? `${escapeLike(t.value)}%` : `%${escapeLike(t.value)}%`;
        q = q.where(col, ic ? 'ilike' : 'like', pattern);
      }
    }
    const column = sort === 'username' ? 'username_lower' : sort === 'email' ? 'email' : 'created_at';
    const dir = page.asc ? 'asc' : 'desc';
    const [items, total, position] = await Promise.all([
      q.selectAll().orderBy(column, dir).orderBy('id', dir).offset(page.offset).limit(page.limit).execute(),
      q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      latestPosition(trx),
    ]);
    return { items, total: Number(total.n), processedPosition: position, timestamp: new Date() };
  });
}
