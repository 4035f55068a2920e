import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from 'kysely';
import { listPage, type ListResult, type Page } from './lists.js';
import type { Database, MachineKeysTable, PersonalAccessTokensTable } from './schema.js';

/**
 * A machine user's credentials: keys for the JWT profile (public keys only), personal access tokens
 * (hashes only) and the client secret (a slow hash on the users row), plus the jti values of
 * JWT-profile assertions already used.
 */
export type MachineKeyRow = Selectable<MachineKeysTable>;
export type PersonalAccessTokenRow = Selectable<PersonalAccessTokensTable>;

type Db = Kysely<Database> | Transaction<Database>;

/** Filters of the credential lists (ANDed). */
export interface CredentialFilter {
  userId?: string | undefined;
  orgId?: string | undefined;
}

export async function insertMachineKey(trx: Transaction<Database>, row: Insertable<MachineKeysTable>): Promise<void> {
  await trx.insertInto('machine_keys').values(row).execute();
}

/** Deletes a user's key; false when there was none. */
export async function deleteMachineKey(trx: Transaction<Database>, userId: string, keyId: string): Promise<boolean> {
  const gone = await trx.deleteFrom('machine_keys').where('id', '=', keyId).where('user_id', '=', userId).returning('id').executeTakeFirst();
  return gone !== undefined;
}

/** A key with its user's state and type, for verifying an assertion signed with it. */
export interface KeyForAssertion extends MachineKeyRow {
  user_state: string;
  user_type: string;
}

export async function findKeyForAssertion(db: Db, keyId: string): Promise<KeyForAssertion | undefined> {
  return db
    .selectFrom('machine_keys as k')
    .innerJoin('users as u', 'u.id', 'k.user_id')
    .selectAll('k')
    .select(['u.state as user_state', 'u.type as user_type'])
    .where('k.id', '=', keyId)
    .executeTakeFirst();
}

export async function listMachineKeys(db: Kysely<Database>, filters: readonly CredentialFilter[], page: Page): Promise<ListResult<MachineKeyRow>> {
  return db.transaction().execute((trx) => {
    let q = trx.selectFrom('machine_keys');
    for (const f of filters) {
      if (f.userId !== undefined) q = q.where('user_id', '=', f.userId);
      if (f.orgId !== undefined) q = q.where('org_id', '=', f.orgId);
    }
    return listPage(trx, q, (s) => s.selectAll(), { column: 'created_at', tiebreak: 'id' }, page);
  });
}

export async function insertPersonalAccessToken(trx: Transaction<Database>, row: Insertable<PersonalAccessTokensTable>): Promise<void> {
  await trx.insertInto('personal_access_tokens').values(row).execute();
}

/** Deletes a user's PAT; false when there was none. */
export async function deletePersonalAccessToken(trx: Transaction<Database>, userId: string, tokenId: string): Promise<boolean> {
  const gone = await trx.deleteFrom('personal_access_tokens').where('id', '=', tokenId).where('user_id', '=', userId).returning('id').executeTakeFirst();
  return gone !== undefined;
}

/** A PAT with its user's organization, state and type, for authenticating a call. */
export interface PatForCall extends PersonalAccessTokenRow {
  user_state: string;
  user_type: string;
}

export async function findPersonalAccessToken(db: Db, tokenId: string): Promise<PatForCall | undefined> {
  return db
    .selectFrom('personal_access_tokens as t')
    .innerJoin('users as u', 'u.id', 't.user_id')
    .selectAll('t')
    .select(['u.state as user_state', 'u.type as user_type'])
    .where('t.id', '=', tokenId)
    .executeTakeFirst();
}

export async function listPersonalAccessTokens(db: Kysely<Database>, filters: readonly CredentialFilter[], page: Page): Promise<ListResult<PersonalAccessTokenRow>> {
  return db.transaction().execute((trx) => {
    let q = trx.selectFrom('personal_access_tokens');
    for (const f of filters) {
      if (f.userId !== undefined) q = q.where('user_id', '=', f.userId);
      if (f.orgId !== undefined) q = q.where('org_id', '=', f.orgId);
    }
    return listPage(trx, q, (s) => s.selectAll(), { column: 'created_at', tiebreak: 'id' }, page);
  });
}

/** Sets (or, with null, removes) a user's client secret: its slow hash and an id that names this secret. */
export async function setSecret(trx: Transaction<Database>, userId: string, secret: { id: string; hash: string } | null): Promise<void> {
  await trx
    .updateTable('users')
    .set({ secret_id: secret?.id ?? null, secret_hash: secret?.hash ?? null })
    .where('id', '=', userId)
    .execute();
}

/** A machine user found by username for client_credentials, with its secret's hash. */
export async function findClient(
  db: Db,
  username: string,
): Promise<{ id: string; org_id: string; state: string; type: string; secret_id: string | null; secret_hash: string | null } | undefined> {
  return db.selectFrom('users').select(['id', 'org_id', 'state', 'type', 'secret_id', 'secret_hash']).where('username_lower', '=', username.toLowerCase()).executeTakeFirst();
}

/**
 * Records a JWT-profile assertion's jti as used until it expires; false when it was used before (a
 * replay), on any instance.
 */
export async function useAssertion(db: Kysely<Database>, userId: string, jti: string, expiresAt: Date): Promise<boolean> {
  const row = await db
    .insertInto('used_assertions')
    .values({ user_id: userId, jti, expires_at: expiresAt })
    .onConflict((oc) => oc.columns(['user_id', 'jti']).doNothing())
    .returning('jti')
    .executeTakeFirst();
  return row !== undefined;
}

/** Forgets used jti values whose assertions have expired (they cannot be replayed any more). */
export async function deleteExpiredAssertions(db: Kysely<Database>): Promise<void> {
  await db.deleteFrom('used_assertions').where('expires_at', '<', sql<Date>`now()`).execute();
}

/**
 * Whether the credential behind a machine access token still stands: the user active, and the key
 * (`key:<id>`) or client secret (`secret:<id>`) it was exchanged with still there.
 */
export async function isMachineCredentialLive(db: Db, userId: string, credential: string): Promise<boolean> {
  const [kind, id] = [credential.slice(0, credential.indexOf(':')), credential.slice(credential.indexOf(':') + 1)];
  const user = db.selectFrom('users').select('id').where('id', '=', userId).where('state', '=', 'active');
  if (kind === 'key') {
    const row = await user
      .where((eb) => eb.exists(eb.selectFrom('machine_keys').select('id').where('id', '=', id).where('user_id', '=', userId).where('expires_at', '>', sql<Date>`now()`)))
      .executeTakeFirst();
    return row !== undefined;
  }
  if (kind === 'secret') {
    const row = await user.where('secret_id', '=', id).executeTakeFirst();
    return row !== undefined;
  }
  return false;
}
