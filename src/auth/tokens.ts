import { randomUUID, sign, type KeyObject } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import { unauthenticated } from '../errors.js';
import type { Database } from '../store/schema.js';
import { loadSigningKeys, type SigningKey } from './signing-keys.js';

/**
 * The roles: `instance_admin` (everything), `org_admin` (users and sessions of one organization) and
 * `session_manager` (a login back end: the sessions of one organization, or of every one when granted
 * on the instance, and nothing else).
 */
export type Role = 'instance_admin' | 'org_admin' | 'session_manager';
export const ROLES: readonly Role[] = ['instance_admin', 'org_admin', 'session_manager'];

/** What a verified access token says; src/auth/callers.ts adds what is looked up per call. */
export interface VerifiedToken {
  subject: string;
  orgId: string;
  /** Roles the token itself carries: only the CLI's bootstrap token has them. */
  roles: ReadonlySet<Role>;
  /** `sid`: the login session of a user's token. */
  sessionId: string | undefined;
  /** `cid`: the credential (`key:<id>`, `secret:<id>`) a machine token was exchanged with. */
  credentialId: string | undefined;
  tokenId: string;
  expiresAt: Date;
}

interface TokenClaims {
  subject: string;
  orgId: string;
  roles?: Role[];
  sessionId?: string;
  credentialId?: string;
  ttlSeconds: number;
  /**
   * What the token stands for ends then (a user's session): `exp` is no later, in whole seconds rounded
   * down, so a verifier that only reads the token never accepts it past that end.
   */
  notAfter?: Date;
}

export interface TokenService {
  /** Signs an access token with the newest key. */
  issue(claims: TokenClaims): Promise<{ token: string; expiresAt: Date; tokenId: string }>;
  /** Verifies signature, key id, issuer, audience and expiry. */
  verify(token: string): Promise<VerifiedToken>;
  /** The public keys that still verify, for /.well-known/jwks.json. */
  jwks(): Promise<{ keys: Record<string, unknown>[] }>;
  /** Re-reads the keys from the database (after a rotation elsewhere). */
  reload(): Promise<void>;
  close(): void;
}

export interface TokenServiceOptions {
  issuer: string;
  audience: string;
  /**
   * How often keys are re-read, so a rotation or retirement by another instance takes effect here
   * (500 ms: a retired key's tokens are refused everywhere within a second). One small query.
   */
  pollMs?: number;
  /** Called when a key's deadline has passed and its retirement is not recorded yet (the domain records it). */
  onRetirementDue?: (kids: string[]) => Promise<void>;
}

/** base64url of a JSON value. */
const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A compact ES256 JWS (RFC 7515/7518: the signature is r || s, 64 bytes). */
function signJwt(key: SigningKey, payload: JWTPayload): string {
  const input = `${segment({ alg: 'ES256', kid: key.kid, typ: 'JWT' })}.${segment(payload)}`;
  const signature = sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

/** A key verifies until its deadline (none while it is the one signing). */
const live = (key: SigningKey, now = Date.now()) => key.retiresAt === null || key.retiresAt.getTime() > now;

/**
 * Signs and verifies ES256 access tokens with keys kept in the database. Keys are parsed once into
 * KeyObjects and re-read every {@link TokenServiceOptions.pollMs}; an unknown `kid` triggers one more
 * reload (a rotation elsewhere), at most once a second. A key past its deadline verifies nothing and
 * leaves JWKS at once, by this process's clock, whether or not its retirement is recorded yet.
 */
export async function createTokenService(db: Kysely<Database>, options: TokenServiceOptions): Promise<TokenService> {
  let keys: SigningKey[] = [];
  let byKid = new Map<string, SigningKey>();
  // When the read behind the keys held now began; reads are numbered so that one begun earlier but
  // answered later never replaces a newer one.
  let lastReload = 0;
  let started = 0;
  let applied = 0;
  const reload = async (): Promise<void> => {
    const n = ++started;
    const startedAt = Date.now();
    const loaded = await loadSigningKeys(db, byKid);
    if (n < applied) return;
    applied = n;
    keys = loaded;
    byKid = new Map(keys.map((k) => [k.kid, k]));
    lastReload = startedAt;
  };
  await reload();
  // One poll at a time (a stuck database must not pile them up); due retirements are handed on once.
  let polling = false;
  const handedOn = new Set<string>();
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      await reload();
      const due = keys.filter((k) => !live(k) && !handedOn.has(k.kid)).map((k) => k.kid);
      if (due.length && options.onRetirementDue) {
        for (const kid of due) handedOn.add(kid);
        await options.onRetirementDue(due).catch(() => due.forEach((kid) => handedOn.delete(kid)));
      }
    } catch {
      // The database is away: keep the keys this process has (and their deadlines, checked locally).
    } finally {
      polling = false;
    }
  };
  const timer = setInterval(() => void poll(), options.pollMs ?? 500);
  timer.unref();

  // Tokens whose signature and claims were verified, until they expire (a caller sends the same token
  // with every call; the signature check was most of an authenticated call's CPU).
  const verified = new LRUCache<string, { principal: VerifiedToken; kid: string }>({ max: 10_000 });

  const keyFor = async (kid: string | undefined): Promise<KeyObject> => {
    if (!kid) throw unauthenticated('token has no key id');
    let key = byKid.get(kid);
    if (!key && Date.now() - lastReload > 1000) {
      await reload();
      key = byKid.get(kid);
    }
    if (!key || !live(key)) throw unauthenticated('token signed by an unknown or retired key');
    return key.publicKey;
  };

  return {
    async issue(claims) {
      // The newest key still signing; a key superseded elsewhere but not yet seen here signs no token
      // that outlives its deadline.
      const active = keys.find((k) => k.retiresAt === null) ?? keys.find((k) => live(k));
      if (!active) throw new Error('no signing key');
      const tokenId = randomUUID();
      const now = Math.floor(Date.now() / 1000);
      const deadline = active.retiresAt ? Math.floor(active.retiresAt.getTime() / 1000) : Number.POSITIVE_INFINITY;
      // Bounded by absolute ends, not by a lifetime counted from the whole second: a session with 1.9 s
      // left gives a token of 0.9-1.9 s, never one that dies at the next second's turn.
      const end = claims.notAfter ? Math.floor(claims.notAfter.getTime() / 1000) : Number.POSITIVE_INFINITY;
      const exp = Math.min(now + claims.ttlSeconds, end, deadline);
      // Claims in a fixed order; the key is a KeyObject parsed once, so signing is one synchronous
      // node:crypto call (no per-token key import or WebCrypto job).
      const payload: JWTPayload = { iss: options.issuer, sub: claims.subject, aud: options.audience, exp, iat: now, jti: tokenId, org: claims.orgId };
      if (claims.roles?.length) payload.roles = claims.roles;
      if (claims.sessionId) payload.sid = claims.sessionId;
      if (claims.credentialId) payload.cid = claims.credentialId;
      const token = signJwt(active, payload);
      return { token, expiresAt: new Date(exp * 1000), tokenId };
    },

    async verify(token) {
      // A token verified before is the same token (its signature is part of the key): only its expiry
      // can have changed. Revocation (logout) is checked on every call by the caller, not here.
      const known = verified.get(token);
      if (known) {
        // Its key must still be one of ours and live (a retired or removed key ends its tokens).
        const key = byKid.get(known.kid);
        const keyLive = key !== undefined && live(key);
        if (known.principal.expiresAt.getTime() > Date.now() && keyLive) return known.principal;
        verified.delete(token);
        if (keyLive) throw unauthenticated('token expired');
      }
      let payload: JWTPayload;
      let kid: string;
      try {
        let header: { kid?: string };
        ({ payload, protectedHeader: header } = await jwtVerify(token, (header) => keyFor(header.kid), {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: ['ES256'],
          requiredClaims: ['sub', 'exp', 'jti'],
        }));
        kid = header.kid!;
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) throw unauthenticated('token expired');
        if (err instanceof joseErrors.JOSEError) throw unauthenticated('invalid token');
        throw err;
      }
      const roles = Array.isArray(payload.roles) ? payload.roles.filter((r): r is Role => ROLES.includes(r as Role)) : [];
      if (typeof payload.org !== 'string') throw unauthenticated('token has no organization');
      const principal: VerifiedToken = {
        subject: payload.sub!,
        orgId: payload.org,
        roles: new Set(roles),
        sessionId: typeof payload.sid === 'string' ? payload.sid : undefined,
        credentialId: typeof payload.cid === 'string' ? payload.cid : undefined,
        tokenId: payload.jti!,
        expiresAt: new Date(payload.exp! * 1000),
      };
      verified.set(token, { principal, kid });
      return principal;
    },

    async jwks() {
      // Read from the database after the request arrived (one small query; verifiers cache the answer),
      // so a key rotated or retired by another process or instance before it is published at once;
      // during a database outage, the keys this process has, less those whose deadline has passed.
      await reload().catch(() => {});
      const now = Date.now();
      return { keys: keys.filter((k) => live(k, now)).map((k) => k.publicJwk) };
    },

    reload,
    close: () => clearInterval(timer),
  };
}
