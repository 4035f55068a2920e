import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { hashSecret } from '../auth/secrets.js';
import { PAT_PREFIX, hashPatSecret } from '../auth/personal-access-tokens.js';
import { alreadyExists, invalid, notFound, precondition } from '../errors.js';
import { newId } from '../ids.js';
import * as credentials from '../store/credentials.js';
import { aggregateExists, appendEvents, stampOf } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import { isActiveOrg } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { inTransaction, mappingDuplicates } from '../store/transaction.js';
import * as users from '../store/users.js';
import { event, type PasskeydEvent } from './events.js';
import type { ChangeDetails } from './types.js';

/** The longest a key or PAT may live. */
const MAX_CREDENTIAL_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;

const usernameTaken = (username: string) => alreadyExists(`username "${username}" is already taken`);

/** Creates a machine user (a service account): no passkeys, no login session. */
export async function addMachineUser(
  db: Kysely<Database>,
  input: { orgId: string; userId?: string | undefined; username?: string | undefined; name: string; description: string },
  creator: string,
): Promise<{ id: string; details: ChangeDetails }> {
  const id = input.userId ?? newId();
  const username = input.username ?? id;
  const run = () =>
    inTransaction(db, async (trx) => {
      if (!(await isActiveOrg(trx, input.orgId))) throw notFound(`organization ${input.orgId}`);
      if (await aggregateExists(trx, 'user', id)) throw alreadyExists(`user ${id} already exists`);
      if (await users.usernameTaken(trx, username)) throw usernameTaken(username);
      const details = await appendEvents(
        trx,
        { type: 'user', id, owner: input.orgId },
        [event('user.machine.added', { username, name: input.name, description: input.description })],
        creator,
      );
      await users.insertUser(trx, {
        id,
        org_id: input.orgId,
        type: 'machine',
        username,
        username_lower: username.toLowerCase(),
        machine_name: input.name,
        machine_description: input.description,
        email: '',
        email_verified: false,
        given_name: '',
        family_name: '',
        nick_name: '',
        display_name: input.name,
        preferred_language: '',
        state: 'active',
        webauthn_user_handle: randomBytes(32),
        ...stampOf(details),
      });
      return { id, details };
    });
  return mappingDuplicates(run, { [users.USERNAME_UNIQUE]: () => usernameTaken(username), '*': () => alreadyExists(`user ${id} already exists`) });
}

/** Deactivates (or reactivates) a user: a deactivated user cannot sign in, and its credentials and tokens stop working. */
export async function setUserActive(db: Kysely<Database>, userId: string, active: boolean, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await users.findUserForUpdate(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    if ((user.state === 'active') === active) throw precondition(`user ${userId} is already ${active ? 'active' : 'inactive'}`);
    const details = await appendEvents(trx, { type: 'user', id: userId, owner: user.org_id }, [event(active ? 'user.reactivated' : 'user.deactivated', {})], creator);
    await users.updateUser(trx, userId, { state: active ? 'active' : 'inactive' });
    return details;
  });
}

/** One change to a machine user's credentials: its event, and the write that goes with it (given the append's details). */
interface CredentialChange {
  event: PasskeydEvent;
  write?: (details: ChangeDetails) => Promise<void>;
}

/**
 * Changes a machine user's credentials in one transaction: locks the user (its aggregate row), refuses a
 * human user, lets `change` decide (it may already write, e.g. delete, and throw when nothing was
 * there), appends its event and runs its write with the append's details.
 */
async function changeCredentials(
  db: Kysely<Database>,
  userId: string,
  what: string,
  creator: string,
  change: (trx: Transaction<Database>, user: users.User) => Promise<CredentialChange>,
): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await users.findUserForUpdate(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    if (user.type !== 'machine') throw precondition(`only machine users hold ${what}; user ${userId} is a human user`);
    const c = await change(trx, user);
    const details = await appendEvents(trx, { type: 'user', id: userId, owner: user.org_id }, [c.event], creator);
    await c.write?.(details);
    return details;
  });
}

function checkExpiry(expiresAt: Date, now: Date): void {
  if (!(expiresAt.getTime() > now.getTime())) throw invalid('expiration_date: must be in the future');
  if (expiresAt.getTime() - now.getTime() > MAX_CREDENTIAL_LIFETIME_MS) throw invalid('expiration_date: must be at most 10 years ahead');
}

/** The JWT algorithm of a public key passkeyd accepts for the JWT profile: RS256 (RSA ≥ 2048 bits) or ES256 (P-256). */
function algorithmOf(key: KeyObject): 'RS256' | 'ES256' {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= 2048) return 'RS256';
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return 'ES256';
  throw invalid('public_key: must be an RSA key of at least 2048 bits or an EC P-256 key');
}

export interface AddedKey {
  keyId: string;
  /** The key file (JSON), only when passkeyd generated the pair. */
  keyContent: Buffer | undefined;
  details: ChangeDetails;
}

/**
 * Adds a key for the JWT profile. With a public key (PEM) the caller keeps the private key; without
 * one passkeyd generates an RSA pair and hands the private key back once, in a key file
 * `{"type":"serviceaccount","keyId","key","userId"}`. Only the public key is stored.
 */
export async function addKey(db: Kysely<Database>, userId: string, input: { expiresAt: Date; publicKeyPem?: Uint8Array | undefined }, creator: string): Promise<AddedKey> {
  const now = new Date();
  checkExpiry(input.expiresAt, now);
  let publicKey: KeyObject;
  let privatePem: string | undefined;
  if (input.publicKeyPem && input.publicKeyPem.length > 0) {
    try {
      publicKey = createPublicKey({ key: Buffer.from(input.publicKeyPem), format: 'pem' });
    } catch {
      throw invalid('public_key: is not a PEM public key');
    }
  } else {
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    publicKey = pair.publicKey;
    privatePem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  }
  const algorithm = algorithmOf(publicKey);
  const keyId = newId();
  const details = await changeCredentials(db, userId, 'keys', creator, async (trx, user) => ({
    event: event('user.key.added', { key_id: keyId, algorithm, expires_at: input.expiresAt.toISOString() }),
    write: (d) =>
      credentials.insertMachineKey(trx, {
        id: keyId,
        user_id: userId,
        org_id: user.org_id,
        algorithm,
        public_key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        created_at: d.changeDate,
        expires_at: input.expiresAt,
      }),
  }));
  const keyContent =
    privatePem === undefined ? undefined : Buffer.from(JSON.stringify({ type: 'serviceaccount', keyId, key: privatePem, expirationDate: input.expiresAt.toISOString(), userId }));
  return { keyId, keyContent, details };
}

export async function removeKey(db: Kysely<Database>, userId: string, keyId: string, creator: string): Promise<ChangeDetails> {
  return changeCredentials(db, userId, 'keys', creator, async (trx) => {
    if (!(await credentials.deleteMachineKey(trx, userId, keyId))) throw notFound(`key ${keyId}`);
    return { event: event('user.key.removed', { key_id: keyId }) };
  });
}

export function listKeys(db: Kysely<Database>, filters: credentials.CredentialFilter[], page: Page): Promise<ListResult<credentials.MachineKeyRow>> {
  return credentials.listMachineKeys(db, filters, page);
}

/** Adds a personal access token: shown once (`pat_<id>_<secret>`), stored only as a hash of its secret. */
export async function addPersonalAccessToken(
  db: Kysely<Database>,
  userId: string,
  input: { expiresAt: Date },
  creator: string,
): Promise<{ tokenId: string; token: string; details: ChangeDetails }> {
  const now = new Date();
  checkExpiry(input.expiresAt, now);
  const tokenId = newId();
  const secret = randomBytes(32).toString('base64url');
  const details = await changeCredentials(db, userId, 'personal access tokens', creator, async (trx, user) => ({
    event: event('user.pat.added', { token_id: tokenId, expires_at: input.expiresAt.toISOString() }),
    write: (d) =>
      credentials.insertPersonalAccessToken(trx, {
        id: tokenId,
        user_id: userId,
        org_id: user.org_id,
        token_hash: hashPatSecret(secret),
        created_at: d.changeDate,
        expires_at: input.expiresAt,
      }),
  }));
  return { tokenId, token: `${PAT_PREFIX}${tokenId}_${secret}`, details };
}

export async function removePersonalAccessToken(db: Kysely<Database>, userId: string, tokenId: string, creator: string): Promise<ChangeDetails> {
  return changeCredentials(db, userId, 'personal access tokens', creator, async (trx) => {
    if (!(await credentials.deletePersonalAccessToken(trx, userId, tokenId))) throw notFound(`personal access token ${tokenId}`);
    return { event: event('user.pat.removed', { token_id: tokenId }) };
  });
}

export function listPersonalAccessTokens(db: Kysely<Database>, filters: credentials.CredentialFilter[], page: Page): Promise<ListResult<credentials.PersonalAccessTokenRow>> {
  return credentials.listPersonalAccessTokens(db, filters, page);
}

/** Sets a new client secret (replacing any earlier one): shown once, stored as a slow (scrypt) hash. */
export async function addSecret(db: Kysely<Database>, userId: string, creator: string): Promise<{ secret: string; details: ChangeDetails }> {
  const secret = randomBytes(32).toString('base64url');
  const hash = await hashSecret(secret);
  const secretId = newId();
  const details = await changeCredentials(db, userId, 'client secrets', creator, async (trx, user) => ({
    event: event('user.secret.added', { secret_id: secretId, replaced: user.secret_id !== null }),
    write: () => credentials.setSecret(trx, userId, { id: secretId, hash }),
  }));
  return { secret, details };
}

export async function removeSecret(db: Kysely<Database>, userId: string, creator: string): Promise<ChangeDetails> {
  return changeCredentials(db, userId, 'client secrets', creator, async (trx, user) => {
    if (user.secret_id === null) throw notFound(`client secret of user ${userId}`);
    return { event: event('user.secret.removed', { secret_id: user.secret_id }), write: () => credentials.setSecret(trx, userId, null) };
  });
}
