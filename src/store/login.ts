import { sql, type Kysely } from 'kysely';
import { newId } from '../ids.js';
import { appendResultOf, appendSteps, payloadsOf, type AppendResult, type AppendedRow, type NewEvent } from './events.js';
import type { ChallengesTable, Database, SessionUserAgent } from './schema.js';
import { compiledSteps, refusedByRun, type Step } from './statement.js';

/**
 * CreateSession's statement: one round trip, written as steps of one statement. SetSession's are in
 * login-complete.ts.
 */

type UserVerification = ChallengesTable['user_verification'];

/** A challenge to open together with a session. */
export interface NewChallenge {
  challenge: string;
  rpId: string;
  userVerification: UserVerification;
  expiresAt: Date;
}

export interface NewSession {
  id: string;
  tokenHash: Buffer;
  /** The login name or user id asked for (checks.user); undefined for a usernameless login. */
  lookup: { loginName: string } | { userId: string } | undefined;
  /** The RP ID whose READY passkeys of the user are returned (the allow list). */
  rpId: string;
  /** For checks.user: the keyed digest of the name asked for, known or not. */
  loginDigest: Uint8Array | undefined;
  /** The organization owning the session aggregate. */
  owner: string;
  expiresAt: Date;
  challenge: NewChallenge | undefined;
  userAgent: SessionUserAgent;
  /** Key → base64 of the value. */
  metadata: Record<string, string>;
  /**
   * Read the login policy of the user's organization (of `owner` for an unknown name) in the same
   * statement: refuse when it requires SSO, and let it decide the challenge's user verification (a
   * policy that requires it is not weakened by the request). The challenge's own then goes unused.
   */
  policy?: { asked: UserVerification | undefined; fallback: UserVerification; ssoRequired: () => Error } | undefined;
}

export interface InsertedSession {
  details: AppendResult;
  /** The active user the lookup found, if any. */
  userId: string | undefined;
  orgId: string | undefined;
  /** That user's READY passkeys for the RP ID, oldest first, with what never changes about each (see finishing a login). */
  credentials: { id: Uint8Array; transports: string[]; passkeyId: string; publicKey: Uint8Array | null }[];
  /** The user verification the challenge was stored with. */
  userVerification: UserVerification | undefined;
}

/**
 * Opens a session and, when asked, its WebAuthn challenge, with its events, for the user a login name
 * or id names, in ONE statement: it looks the user up, stores the session bound to whoever it found
 * (the user's id is merged into the events' payloads), and returns that user's passkeys for the allow
 * list; with `policy`, it also reads the login policy and is refused as a whole for an SSO organization.
 * The same statement runs whether or not the login name exists.
 */
export async function insertSession(db: Kysely<Database>, s: NewSession, events: readonly NewEvent[], creator: string): Promise<InsertedSession> {
  const c = s.challenge;
  const lookup = s.lookup;
  const rows = await insertSessionStatement(
    db,
    {
      found: lookup === undefined ? null : 'loginName' in lookup ? lookup.loginName.toLowerCase() : lookup.userId,
      rpId: s.rpId,
      id: s.id,
      owner: s.owner,
      creator,
      payloads: payloadsOf(events),
      tokenHash: s.tokenHash,
      loginDigest: s.loginDigest ? Buffer.from(s.loginDigest) : null,
      expiresAt: s.expiresAt,
      userAgent: JSON.stringify(s.userAgent),
      metadata: JSON.stringify(s.metadata),
      challengeId: c ? newId() : null,
      challenge: c?.challenge ?? null,
      challengeRpId: c?.rpId ?? null,
      userVerification: c?.userVerification ?? null,
      challengeExpiresAt: c?.expiresAt ?? null,
      askedUserVerification: s.policy?.asked ?? null,
      fallbackUserVerification: s.policy?.fallback ?? null,
    },
    {
      lookup: lookup === undefined ? 'none' : 'loginName' in lookup ? 'loginName' : 'userId',
      challenge: c !== undefined,
      policy: s.policy !== undefined && c !== undefined,
      events: events.map((e) => e.type).join(','),
    },
    s.policy ? { open: s.policy.ssoRequired } : {},
  );
  const first = rows[0]!;
  return {
    userVerification: first.user_verification ?? c?.userVerification,
    details: appendResultOf(first),
    userId: first.user_id ?? undefined,
    orgId: first.org_id ?? undefined,
    credentials: rows
      .filter((r) => r.credential_id !== null)
      .map((r) => ({ id: r.credential_id!, transports: r.transports ?? [], passkeyId: r.passkey_id!, publicKey: r.public_key })),
  };
}

/** The values of CreateSession's statement (see {@link compiledSteps}). */
interface InsertSessionValues {
  /** The lower-cased login name or the user id looked up. */
  found: string | null;
  rpId: string;
  id: string;
  owner: string;
  creator: string;
  payloads: string[];
  tokenHash: Buffer;
  loginDigest: Buffer | null;
  expiresAt: Date;
  userAgent: string;
  metadata: string;
  challengeId: string | null;
  challenge: string | null;
  challengeRpId: string | null;
  userVerification: string | null;
  challengeExpiresAt: Date | null;
  askedUserVerification: UserVerification | null;
  fallbackUserVerification: UserVerification | null;
}

type InsertedRow = AppendedRow & {
  user_id: string | null;
  org_id: string | null;
  credential_id: Uint8Array | null;
  transports: string[] | null;
  passkey_id: string | null;
  public_key: Uint8Array | null;
  user_verification: UserVerification | null;
};

const insertSessionStatement = compiledSteps<InsertSessionValues, InsertedRow, { lookup: 'none' | 'loginName' | 'userId'; challenge: boolean; policy: boolean; events: string }>(
  (v, shape) => {
    const found = shape.lookup === 'none' ? sql`false` : shape.lookup === 'loginName' ? sql`username_lower = ${v.found}::text` : sql`id = ${v.found}::text`;
    const events = shape.events.split(',').map((type) => ({ type, payload: {} }));
    const steps: Step[] = [
      // Machine users never sign in: a name of one is treated like an unknown name.
      { name: 'u', body: sql`select id, org_id from users where state = 'active' and type = 'human' and ${found}` },
      {
        name: 'creds',
        body: sql`select p.credential_id, p.transports, p.created_at, p.id as passkey_id, p.public_key from passkeys p join u on p.user_id = u.id
          where p.state = 'ready' and p.rp_id = ${v.rpId}::text`,
      },
    ];
    if (shape.policy) {
      // The organization's policy, else the instance default (org_id ''); an unknown name's is the session owner's.
      steps.push(
        {
          name: 'pol',
          body: sql`select coalesce(lp.sso_required, false) as sso_required,
            case when lp.user_verification = 'required' then 'required'
              else coalesce(${v.askedUserVerification}::text, nullif(lp.user_verification, ''), ${v.fallbackUserVerification}::text) end as user_verification
          from (select 1) one left join lateral (
            select sso_required, user_verification from login_policies where org_id in (coalesce((select org_id from u), ${v.owner}::text), '')
            order by org_id desc limit 1) lp on true`,
        },
        // Refused (and so undone as a whole) when the organization signs in through SSO.
        { name: 'open', body: sql`select 1 from pol where not pol.sso_required`, refusal: refusedByRun },
      );
    }
    steps.push(
      ...appendSteps('agg', { type: 'session', id: v.id, owner: v.owner }, events, v.creator, {
        patch: shape.policy
          ? sql`jsonb_build_object('user_id', (select id from u), 'user_verification', (select user_verification from pol))`
          : sql`jsonb_build_object('user_id', (select id from u))`,
        row: false,
        payloads: v.payloads,
      }),
      {
        // The challenge, when one is asked for, is part of the session's row (migration 011).
        name: 'session',
        body: sql`insert into sessions (id, token_hash, user_id, org_id, login_digest, created_at, updated_at, expires_at, sequence, user_agent, metadata, creator,
          challenge_id, challenge, challenge_rp_id, challenge_user_verification, challenge_expires_at)
        select ${v.id}::text, ${v.tokenHash}::bytea, (select id from u), (select org_id from u),
          ${v.loginDigest}::bytea, agg.created_at, agg.updated_at, ${v.expiresAt}::timestamptz, agg.sequence,
          ${v.userAgent}::jsonb, ${v.metadata}::jsonb, ${v.creator}::text,
          ${
            shape.challenge
              ? sql`${v.challengeId}::text, ${v.challenge}::text, ${v.challengeRpId}::text,
          ${shape.policy ? sql`(select user_verification from pol)` : sql`${v.userVerification}::text`}, ${v.challengeExpiresAt}::timestamptz`
              : sql`null, null, null, null, null`
          }
        from agg`,
      },
    );
    const tail = sql`agg.sequence, agg.created_at, agg.updated_at, agg.resource_owner, u.id as user_id, u.org_id, creds.credential_id, creds.transports, creds.passkey_id, creds.public_key,
      ${shape.policy ? sql`(select user_verification from pol)` : sql`null::text`} as user_verification
      from agg left join u on true left join creds on true order by creds.created_at`;
    return { steps, tail };
  },
);
