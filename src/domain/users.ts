import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { alreadyExists, notFound } from '../errors.js';
import { newId } from '../ids.js';
import { aggregateExists, appendEvents, stampOf } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import { isActiveOrg } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { inTransaction, mappingDuplicates } from '../store/transaction.js';
import * as users from '../store/users.js';
import { event, type EventPayloads } from './events.js';
import type { ChangeDetails } from './types.js';

export type { User, UserFilter, UserSort, TextMethod } from '../store/users.js';

interface Profile {
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

const usernameTaken = (username: string) => alreadyExists(`username "${username}" is already taken`);

/** Creates a human user with a fresh random WebAuthn user handle (never derived from the id or PII). */
export async function addHumanUser(db: Kysely<Database>, input: AddHumanUserInput, creator: string): Promise<{ id: string; details: ChangeDetails }> {
  const id = input.userId ?? newId();
  const username = input.username ?? input.email;
  const fields: EventPayloads['user.human.added'] = {
    username,
    given_name: input.profile.givenName,
    family_name: input.profile.familyName,
    nick_name: input.profile.nickName ?? '',
    display_name: input.profile.displayName || `${input.profile.givenName} ${input.profile.familyName}`,
    preferred_language: input.profile.preferredLanguage ?? '',
    email: input.email,
    email_verified: input.emailVerified,
  };
  const run = () =>
    inTransaction(db, async (trx) => {
      if (!(await isActiveOrg(trx, input.orgId))) throw notFound(`organization ${input.orgId}`);
      if (await aggregateExists(trx, 'user', id)) throw alreadyExists(`user ${id} already exists`);
      if (await users.usernameTaken(trx, username)) throw usernameTaken(username);
      const details = await appendEvents(trx, { type: 'user', id, owner: input.orgId }, [event('user.human.added', fields)], creator);
      await users.insertUser(trx, {
        id,
        org_id: input.orgId,
        ...fields,
        username_lower: username.toLowerCase(),
        state: 'active',
        webauthn_user_handle: randomBytes(32),
        ...stampOf(details),
      });
      return { id, details };
    });
  return mappingDuplicates(run, { [users.USERNAME_UNIQUE]: () => usernameTaken(username), '*': () => alreadyExists(`user ${id} already exists`) });
}

export interface UpdateHumanUserInput {
  username?: string | undefined;
  profile?: Profile | undefined;
  email?: { email: string; verified: boolean } | undefined;
}

/** Changes a user's username, profile or email; one `user.human.changed` event with what changed. */
export async function updateHumanUser(db: Kysely<Database>, userId: string, input: UpdateHumanUserInput, creator: string): Promise<ChangeDetails> {
  const run = () =>
    inTransaction(db, async (trx) => {
      const user = await users.findUserForUpdate(trx, userId);
      if (!user) throw notFound(`user ${userId}`);
      const changes: EventPayloads['user.human.changed'] = {};
      if (input.username !== undefined && input.username !== user.username) changes.username = input.username;
      if (input.profile) {
        const p = input.profile;
        const next = {
          given_name: p.givenName,
          family_name: p.familyName,
          nick_name: p.nickName ?? user.nick_name,
          display_name: p.displayName || `${p.givenName} ${p.familyName}`,
          preferred_language: p.preferredLanguage ?? user.preferred_language,
        };
        for (const [k, v] of Object.entries(next) as [keyof typeof next, string][]) if (user[k] !== v) changes[k] = v;
      }
      if (input.email && (input.email.email !== user.email || input.email.verified !== user.email_verified)) {
        changes.email = input.email.email;
        changes.email_verified = input.email.verified;
      }
      const details = await appendEvents(trx, { type: 'user', id: userId, owner: user.org_id }, [event('user.human.changed', changes)], creator);
      await users.updateUser(trx, userId, { ...changes, ...(changes.username !== undefined ? { username_lower: changes.username.toLowerCase() } : {}) });
      return details;
    });
  return mappingDuplicates(run, { [users.USERNAME_UNIQUE]: () => usernameTaken(input.username ?? '') });
}

/** Reads one user, or throws NOT_FOUND. */
export async function getUser(db: Kysely<Database>, userId: string): Promise<users.User> {
  const user = await users.findUser(db, userId);
  if (!user) throw notFound(`user ${userId}`);
  return user;
}

/** Removes a user from every read (its passkeys and sessions go by cascade); its events stay as the audit trail. */
export async function deleteUser(db: Kysely<Database>, userId: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await users.findUserForUpdate(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    const details = await appendEvents(trx, { type: 'user', id: userId, owner: user.org_id }, [event('user.removed', { username: user.username })], creator);
    await users.deleteUserRow(trx, userId);
    return details;
  });
}

/** Lists users matching every given filter, with the total. */
export function listUsers(db: Kysely<Database>, filters: users.UserFilter[], page: Page, sort: users.UserSort): Promise<ListResult<users.User>> {
  return users.listUsers(db, filters, page, sort);
}

/** The organization a user belongs to, or undefined for an unknown user (the permission check's question). */
export function orgOfUser(db: Kysely<Database>, userId: string): Promise<string | undefined> {
  return users.orgOfUser(db, userId);
}
