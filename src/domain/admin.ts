import type { Kysely, Transaction } from 'kysely';
import { addSigningKey } from '../auth/signing-keys.js';
import { ROLES, type Role, type TokenService } from '../auth/tokens.js';
import { grantRoles } from './administrators.js';
import { defaultOrgId } from './bootstrap.js';
import { registrationLink } from './link-delivery.js';
import { addKey, addMachineUser, addPersonalAccessToken } from './machine-users.js';
import { createRegistrationCode } from './registration-codes.js';
import { addHumanUser } from './users.js';
import { event } from './events.js';
import { invalid, notFound, precondition } from '../errors.js';
import { appendEvents } from '../store/events.js';
import { orgExists } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { lockSigningKeys, markSigningKeyRetired, scheduleRetirement } from '../store/signing-keys.js';
import { inTransaction } from '../store/transaction.js';

/** What `passkeyd admin token` asks for (also the body of the admin socket's `/token` route). */
export interface AdminTokenRequest {
  role: string;
  org?: string | undefined;
  user?: string | undefined;
  ttlSeconds?: number | undefined;
}

/**
 * The longest an admin token from the CLI may live. It cannot be revoked (it names no user whose
 * credential could be removed), so it is a development convenience, not an operator's credential.
 */
const ADMIN_TOKEN_MAX_TTL_SECONDS = 24 * 3600;

/** The default lifetime of an admin token from the CLI. */
const ADMIN_TOKEN_DEFAULT_TTL_SECONDS = 3600;

/** Refuses an admin token lifetime that is not positive or longer than {@link ADMIN_TOKEN_MAX_TTL_SECONDS}. */
export function checkAdminTokenTtl(ttlSeconds: number): void {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw invalid('--ttl must be a positive duration');
  if (ttlSeconds > ADMIN_TOKEN_MAX_TTL_SECONDS) {
    throw invalid(
      '--ttl: an admin token lives at most 24h; it cannot be revoked and is meant for development. ' +
        'For a long-lived, revocable credential create a machine user: ' +
        'passkeyd admin machine-user create --name NAME --role ROLE [--key | --pat] [--ttl 365d]',
    );
  }
}

/** A role an admin credential can carry; checked by the CLI before it opens anything, and again here. */
export function checkAdminRole(role: string): void {
  if (!ROLES.includes(role as Role)) throw invalid(`--role must be one of ${ROLES.join(', ')}`);
}

/** Signs a development credential: an admin access token for the given role and organization, at most 24h long. */
export async function mintAdminToken(db: Kysely<Database>, tokens: TokenService, req: AdminTokenRequest): Promise<string> {
  checkAdminRole(req.role);
  const ttl = req.ttlSeconds ?? ADMIN_TOKEN_DEFAULT_TTL_SECONDS;
  checkAdminTokenTtl(ttl);
  const orgId = req.org ?? (await defaultOrgId(db));
  if (!(await orgExists(db, orgId))) throw notFound(`organization ${orgId}`);
  const subject = req.user ?? `admin:${req.role}`;
  const { token } = await tokens.issue({ subject, orgId, roles: [req.role as Role], ttlSeconds: ttl });
  return token;
}

/** Who changes signing keys, and the longest access token lifetime this instance issues. */
export interface KeyChangeOptions {
  /** The events' creator; `cli` when absent. */
  creator?: string | undefined;
  /** PASSKEYD_TOKEN_TTL; a superseded key verifies for the longer of it and an admin token's 24h. */
  tokenTtlSeconds?: number | undefined;
}

/**
 * Slack on a superseded key's deadline: an instance that has not yet seen a rotation (it polls keys
 * twice a second) may still sign with the old key, never past its deadline once it knows it.
 */
const RETIREMENT_SLACK_SECONDS = 5;

/** Adds a key and gives every key signing until now a deadline, recording a `signingkey.rotated` each. */
async function rotateIn(trx: Transaction<Database>, options: KeyChangeOptions): Promise<string> {
  const kid = await addSigningKey(trx);
  const longest = Math.max(ADMIN_TOKEN_MAX_TTL_SECONDS, options.tokenTtlSeconds ?? 0) + RETIREMENT_SLACK_SECONDS;
  const retiresAt = new Date(Date.now() + longest * 1000);
  for (const old of await scheduleRetirement(trx, kid, retiresAt)) {
    const rotated = event('signingkey.rotated', { new_kid: kid, retires_at: retiresAt.toISOString() });
    await appendEvents(trx, { type: 'signingkey', id: old, owner: '' }, [rotated], options.creator ?? 'cli');
  }
  return kid;
}

/**
 * Adds a signing key; new tokens use it. Every older key still signing verifies until no token it
 * signed can be valid (the longest token lifetime from now), then retires by itself.
 */
export async function rotateSigningKey(db: Kysely<Database>, tokens: TokenService, options: KeyChangeOptions = {}): Promise<string> {
  const kid = await inTransaction(db, async (trx) => {
    await lockSigningKeys(trx, '');
    return rotateIn(trx, options);
  });
  await tokens.reload();
  return kid;
}

/**
 * Retires a key at once: its tokens are refused (on every instance within a second: they poll the
 * keys) and it leaves JWKS; its private half is dropped. The key signing new tokens is first replaced
 * by a new one, in the same transaction.
 */
export async function retireSigningKey(
  db: Kysely<Database>,
  tokens: TokenService,
  kid: string,
  creator = 'cli',
  options: KeyChangeOptions = {},
): Promise<{ retired: string; newKid: string | undefined }> {
  const newKid = await inTransaction(db, async (trx) => {
    const key = await lockSigningKeys(trx, kid);
    if (!key) throw notFound(`signing key ${kid}`);
    if (key.retired_at) throw precondition(`signing key ${kid} is retired already`);
    const replacement = key.retires_at === null ? await rotateIn(trx, { ...options, creator }) : undefined;
    const now = new Date();
    await markSigningKeyRetired(trx, kid, now, 'now');
    await appendEvents(trx, { type: 'signingkey', id: kid, owner: '' }, [event('signingkey.retired', { reason: 'manual', retires_at: now.toISOString() })], creator);
    return replacement;
  });
  await tokens.reload();
  return { retired: kid, newKid };
}

/** What `passkeyd admin keys retire` prints. */
export function retiredMessage(retired: string, newKid: string | undefined): string {
  return `retired ${retired}${newKid ? `; new tokens are signed with ${newKid}` : ''}`;
}

/**
 * Records the retirement of keys whose deadline has passed (the token services of every instance
 * already refuse them by their own clock). Once: the instance that marks the row records the event.
 */
export async function recordDueRetirements(db: Kysely<Database>, kids: readonly string[]): Promise<void> {
  for (const kid of kids) {
    await inTransaction(db, async (trx) => {
      const deadline = await markSigningKeyRetired(trx, kid, new Date(), 'due');
      if (!deadline) return;
      await appendEvents(trx, { type: 'signingkey', id: kid, owner: '' }, [event('signingkey.retired', { reason: 'expired', retires_at: deadline.toISOString() })], 'system');
    });
  }
}

/** What `passkeyd admin machine-user create` asks for (also the body of the admin socket's `/machine-users` route). */
export interface MachineUserRequest {
  /** The machine user's name, also its username. */
  name: string;
  /** Its organization; the default organization when absent. */
  org?: string | undefined;
  description?: string | undefined;
  /** Granted on the instance (`instance_admin`) or on the user's organization (the others). */
  role: string;
  /** Which credential to create and print: a key file (JWT profile) or a personal access token. */
  credential: 'key' | 'pat';
  /** The credential's lifetime; one year when absent. */
  ttlSeconds?: number | undefined;
}

/** A machine user made by {@link createMachineUserWithRole}, with its one credential. */
export interface CreatedMachineUser {
  userId: string;
  orgId: string;
  /** The key id or the PAT's token id. */
  credentialId: string;
  /** What the CLI prints: the key file's JSON, or the PAT. Shown once; passkeyd keeps no copy of the secret. */
  secret: string;
}

/** The default lifetime of a machine user's credential made by the CLI: one year. */
const MACHINE_CREDENTIAL_DEFAULT_TTL_SECONDS = 365 * 86400;

/**
 * The first real (revocable) credential: creates a machine user, grants it one role and adds a key or
 * a personal access token. Everything is checked before the first write; the three steps are separate
 * commands (each one transaction, each with its events naming `creator`).
 */
export async function createMachineUserWithRole(db: Kysely<Database>, req: MachineUserRequest, creator: string): Promise<CreatedMachineUser> {
  const name = typeof req.name === 'string' ? req.name.trim() : '';
  if (name.length < 1 || name.length > 200) throw invalid('--name must be 1 to 200 characters');
  checkAdminRole(req.role);
  if (req.credential !== 'key' && req.credential !== 'pat') throw invalid('the credential must be --key or --pat');
  const ttl = req.ttlSeconds ?? MACHINE_CREDENTIAL_DEFAULT_TTL_SECONDS;
  if (!Number.isFinite(ttl) || ttl <= 0) throw invalid('--ttl must be a positive duration');
  const expiresAt = new Date(Date.now() + ttl * 1000);
  if (ttl > 10 * 365 * 86400) throw invalid('--ttl must be at most 10 years (3650d)');
  const orgId = req.org ?? (await defaultOrgId(db));
  if (!(await orgExists(db, orgId))) throw notFound(`organization ${orgId}`);

  const { id: userId } = await addMachineUser(db, { orgId, username: name, name, description: req.description ?? '' }, creator);
  await grantRoles(db, { userId, orgId: req.role === 'instance_admin' ? undefined : orgId, roles: [req.role] }, creator);
  if (req.credential === 'pat') {
    const { tokenId, token } = await addPersonalAccessToken(db, userId, { expiresAt }, creator);
    return { userId, orgId, credentialId: tokenId, secret: token };
  }
  const { keyId, keyContent } = await addKey(db, userId, { expiresAt }, creator);
  if (!keyContent) throw new Error('addKey generated no key file');
  return { userId, orgId, credentialId: keyId, secret: keyContent.toString('utf8') };
}

/** What `passkeyd admin invite` asks for (also the body of the admin socket's `/invite` route). */
export interface InviteRequest {
  username: string;
  email?: string | undefined;
  /** The default organization when absent. */
  org?: string | undefined;
}

/**
 * A first look without any API call: creates a human user and a registration code for it, and returns
 * the hosted page's registration link (`<issuer>/register?...`), where the user creates a passkey.
 */
export async function inviteUser(db: Kysely<Database>, req: InviteRequest, link: { issuer: string; codeTtlSeconds: number }, creator: string): Promise<string> {
  const username = typeof req.username === 'string' ? req.username.trim() : '';
  if (username.length < 1 || username.length > 200) throw invalid('--username must be 1 to 200 characters');
  const email = typeof req.email === 'string' ? req.email.trim() : '';
  if (email.length > 200 || (email !== '' && !/^[^\s@]+@[^\s@]+$/.test(email))) throw invalid('--email must be an email address');
  const orgId = req.org ?? (await defaultOrgId(db));
  const { id: userId } = await addHumanUser(db, { username, orgId, profile: { givenName: '', familyName: '', displayName: username }, email, emailVerified: false }, creator);
  const code = await createRegistrationCode(db, { userId, ttlSeconds: link.codeTtlSeconds }, creator);
  return registrationLink(link.issuer, { userId, orgId, codeId: code.id, code: code.code });
}
