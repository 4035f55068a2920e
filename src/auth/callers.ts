import { timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import { unauthenticated } from '../errors.js';
import { grantsOf, INSTANCE } from '../store/administrators.js';
import { findPersonalAccessToken, isMachineCredentialLive } from '../store/credentials.js';
import type { Database } from '../store/schema.js';
import { isSessionLive } from '../store/sessions.js';
import { hashPatSecret, parsePat } from './personal-access-tokens.js';
import { ROLES, type Role, type TokenService, type VerifiedToken } from './tokens.js';

/**
 * Who is calling. `roles` holds every role the caller has: `instance_admin` is instance-wide;
 * `org_admin` and `session_manager` apply to the caller's own organization (`orgId`), or to every
 * organization when they are also in `instanceRoles` (granted on the instance).
 */
export interface Principal {
  subject: string;
  orgId: string;
  roles: ReadonlySet<Role>;
  instanceRoles: ReadonlySet<Role>;
  /** The login session behind a user's access token (logout ends the token). */
  sessionId: string | undefined;
  tokenId: string;
  expiresAt: Date;
  /** What the caller presented: a user's access token, a machine user's, a PAT, or the CLI's bootstrap token. */
  credential: 'user_token' | 'machine_token' | 'pat' | 'bootstrap_token';
}

/** True when the caller may act on every organization. */
export function isInstanceAdmin(p: Principal | undefined): boolean {
  return p?.roles.has('instance_admin') ?? false;
}

/** True when the caller may drive (create, set, get, list, delete) sessions of users of `orgId`. */
export function managesSessionsOf(p: Principal | undefined, orgId: string | null): boolean {
  if (!p) return false;
  if (p.roles.has('instance_admin') || p.instanceRoles.has('session_manager')) return true;
  return orgId !== null && orgId === p.orgId && (p.roles.has('org_admin') || p.roles.has('session_manager'));
}

/** How long a looked-up role, PAT or machine credential is trusted: revocation reaches every instance within it. */
const LOOKUP_TTL_MS = 500;

/** Turns a Bearer credential into the caller: verifies it and looks up what can be revoked. */
export interface Callers {
  resolve(bearer: string): Promise<Principal>;
}

/**
 * Resolves callers. Everything revocable is looked up, not taken from the token: a session's end
 * (every call, as before), a machine user's key or secret and its state, a PAT, and every role granted
 * through the API. Those lookups are remembered for {@link LOOKUP_TTL_MS}, so revoking any of them
 * refuses the next call on every instance within half a second, at one small query per credential per
 * half second. The CLI's bootstrap token carries its roles itself (development only).
 */
export function createCallers(db: Kysely<Database>, tokens: TokenService): Callers {
  const grants = new LRUCache<string, { roles: Set<Role>; instanceRoles: Set<Role> }>({ max: 50_000, ttl: LOOKUP_TTL_MS });
  const live = new LRUCache<string, boolean>({ max: 50_000, ttl: LOOKUP_TTL_MS });

  async function rolesOf(userId: string, orgId: string): Promise<{ roles: Set<Role>; instanceRoles: Set<Role> }> {
    const key = `${userId}\u0000${orgId}`;
    const known = grants.get(key);
    if (known) return known;
    const roles = new Set<Role>();
    const instanceRoles = new Set<Role>();
    for (const g of await grantsOf(db, userId)) {
      for (const r of g.roles) {
        if (!ROLES.includes(r as Role)) continue;
        if (g.org_id === INSTANCE) {
          roles.add(r as Role);
          instanceRoles.add(r as Role);
        } else if (g.org_id === orgId) roles.add(r as Role);
      }
    }
    const found = { roles, instanceRoles };
    grants.set(key, found);
    return found;
  }

  async function cached(key: string, check: () => Promise<boolean>): Promise<boolean> {
    const known = live.get(key);
    if (known !== undefined) return known;
    const ok = await check();
    live.set(key, ok);
    return ok;
  }

  async function fromPat(token: string): Promise<Principal> {
    const parsed = parsePat(token);
    if (!parsed) throw unauthenticated('invalid token');
    const row = await findPersonalAccessToken(db, parsed.id);
    const presented = hashPatSecret(parsed.secret);
    const matches = row !== undefined && timingSafeEqual(Buffer.from(row.token_hash), presented);
    if (!row || !matches || row.user_type !== 'machine') throw unauthenticated('invalid token');
    if (row.expires_at.getTime() <= Date.now()) throw unauthenticated('token expired');
    if (row.user_state !== 'active') throw unauthenticated('the user of this token is not active');
    const { roles, instanceRoles } = await rolesOf(row.user_id, row.org_id);
    return { subject: row.user_id, orgId: row.org_id, roles, instanceRoles, sessionId: undefined, tokenId: row.id, expiresAt: row.expires_at, credential: 'pat' };
  }

  async function fromJwt(t: VerifiedToken): Promise<Principal> {
    const base = { subject: t.subject, orgId: t.orgId, sessionId: t.sessionId, tokenId: t.tokenId, expiresAt: t.expiresAt };
    if (t.sessionId !== undefined) {
      // A user's access token lives as long as its session (logout revokes at once): checked on every call.
      if (!(await isSessionLive(db, t.sessionId))) throw unauthenticated('the session of this token has ended');
      return { ...base, ...(await rolesOf(t.subject, t.orgId)), credential: 'user_token' };
    }
    if (t.credentialId !== undefined) {
      const ok = await cached(`${t.subject}\u0000${t.credentialId}`, () => isMachineCredentialLive(db, t.subject, t.credentialId!));
      if (!ok) throw unauthenticated('the credential this token was issued for was revoked, or its user is not active');
      return { ...base, ...(await rolesOf(t.subject, t.orgId)), credential: 'machine_token' };
    }
    const roles = new Set(t.roles);
    return { ...base, roles, instanceRoles: new Set([...roles].filter((r) => r === 'instance_admin')), credential: 'bootstrap_token' };
  }

  return {
    async resolve(bearer) {
      if (bearer.startsWith('pat_')) return fromPat(bearer);
      return fromJwt(await tokens.verify(bearer));
    },
  };
}
