import { sql, type Kysely } from 'kysely';
import { newId } from '../ids.js';
import { appendResultOf, appendSteps, payloadsOf, type AggregateRef, type AppendResult, type AppendedRow, type NewEvent } from './events.js';
import type { ChallengesTable, Database, SessionUserAgent } from './schema.js';
import { compiledSteps, refusedByRun, type Step } from './statement.js';

/**
 * The login's hot statements (CreateSession and SetSession): each one round trip, written as steps
 * of one statement where they change anything. Session aggregates, then user aggregates: every
 * statement takes its locks in that order, so concurrent logins cannot deadlock on them.
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
  /** That user's READY passkeys for the RP ID, oldest first. */
  credentials: { id: Uint8Array; transports: string[] }[];
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
    credentials: rows.filter((r) => r.credential_id !== null).map((r) => ({ id: r.credential_id!, transports: r.transports ?? [] })),
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
        body: sql`select p.credential_id, p.transports, p.created_at from passkeys p join u on p.user_id = u.id where p.state = 'ready' and p.rp_id = ${v.rpId}::text`,
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
    const tail = sql`agg.sequence, agg.created_at, agg.updated_at, agg.resource_owner, u.id as user_id, u.org_id, creds.credential_id, creds.transports,
      ${shape.policy ? sql`(select user_verification from pol)` : sql`null::text`} as user_verification
      from agg left join u on true left join creds on true order by creds.created_at`;
    return { steps, tail };
  },
);

/** What a verified assertion changes. */
export interface CompletedLogin {
  session: AggregateRef;
  challengeId: string;
  /** The new session token's hash: the token handed out before stops working. */
  tokenHash: Buffer;
  passkey: { id: string; userId: string; orgId: string };
  at: Date;
  signCount: number;
  userVerified: boolean;
  backedUp: boolean;
  /** Refuse a counter that did not increase (checked again against the row as it is now). */
  rejectCounterRegression: boolean;
  /** SetSession's lifetime and metadata, changed by the same statement. */
  context?: SessionContextChange | undefined;
}

/** A change of a session's lifetime or metadata. */
export interface SessionContextChange {
  expiresAt?: Date | undefined;
  /** Keys to set (base64 values) and keys to delete, and how many keys the session may hold after. */
  metadata?: { set: Record<string, string>; delete: string[]; maxKeys: number } | undefined;
}

/** What a statement with a metadata change raises (passkeyd_refuse) when the session would hold too many keys. */
export const METADATA_FULL = 'metadata_full';

/** The SQL assignments of a context change (none when nothing changes), for a session row aliased `r`. */
export function contextAssignments(c: SessionContextChange | undefined) {
  return contextSet(c?.expiresAt, c?.metadata && JSON.stringify(c.metadata.set), c?.metadata?.delete, c?.metadata?.maxKeys);
}

/**
 * The assignments for a new expiry and metadata keys to set (JSON) and delete; each part only when
 * given. The key count is checked on the row as the UPDATE finds it (after any concurrent change to
 * the same session), so two changes at once cannot together pass the bound: too many raises METADATA_FULL.
 */
function contextSet(expiresAt: Date | undefined, metadataSet: string | undefined, metadataDelete: string[] | undefined, maxKeys: number | undefined) {
  const parts = [];
  if (expiresAt) parts.push(sql`expires_at = ${expiresAt}::timestamptz`);
  if (metadataSet) {
    const next = sql`(r.metadata || ${metadataSet}::jsonb) - ${metadataDelete}::text[]`;
    parts.push(
      sql`metadata = case when (select count(*) from jsonb_object_keys(${next})) > ${maxKeys}::int then passkeyd_refuse(${METADATA_FULL}::text)::text::jsonb else ${next} end`,
    );
  }
  return parts;
}

export interface LoginRefusals {
  /** The challenge was consumed meanwhile: a replay. */
  consumed: () => Error;
  /** The session ended or expired meanwhile. */
  ended: () => Error;
  /** The metadata change would leave the session with more keys than it may hold. */
  metadataFull: () => Error;
  /** The passkey went away, or its counter did not increase (two logins raced with one credential). */
  notAccepted: () => Error;
}

/**
 * A verified login in ONE statement, atomic on its own (no BEGIN or COMMIT): record the factor on the
 * session while closing its challenge (a second use finds it closed), then update the passkey; each
 * step conditioned on the one before. The CTEs of one statement run in no documented order, but each
 * needs rows of the one before, so the executor runs them as a chain: session aggregate, session row,
 * user aggregate, then the passkey and users rows.
 */
export async function completeLogin(
  db: Kysely<Database>,
  l: CompletedLogin,
  sessionEvents: readonly NewEvent[],
  userEvents: readonly NewEvent[],
  refusals: LoginRefusals,
): Promise<AppendResult> {
  const rows = await completeLoginStatement(
    db,
    {
      challengeId: l.challengeId,
      sessionId: l.session.id,
      sessionOwner: l.session.owner,
      sessionPayloads: payloadsOf(sessionEvents),
      userPayloads: payloadsOf(userEvents),
      tokenHash: l.tokenHash,
      userId: l.passkey.userId,
      orgId: l.passkey.orgId,
      passkeyId: l.passkey.id,
      at: l.at,
      userVerified: l.userVerified,
      backedUp: l.backedUp,
      signCount: l.signCount,
      expiresAt: l.context?.expiresAt ?? null,
      metadataSet: l.context?.metadata ? JSON.stringify(l.context.metadata.set) : null,
      metadataDelete: l.context?.metadata?.delete ?? null,
      metadataMaxKeys: l.context?.metadata?.maxKeys ?? null,
    },
    {
      reject: l.rejectCounterRegression,
      lifetime: l.context?.expiresAt !== undefined,
      metadata: l.context?.metadata !== undefined,
      sessionEvents: sessionEvents.map((e) => e.type).join(','),
      userEvents: userEvents.map((e) => e.type).join(','),
    },
    { consumed: refusals.consumed, live: refusals.ended, accepted: refusals.notAccepted, [METADATA_FULL]: refusals.metadataFull },
  );
  return appendResultOf(rows[0]!);
}

/** The values of SetSession's login statement (see {@link compiledSteps}). */
interface CompleteLoginValues {
  challengeId: string;
  sessionId: string;
  sessionOwner: string;
  sessionPayloads: string[];
  userPayloads: string[];
  tokenHash: Buffer;
  userId: string;
  orgId: string;
  passkeyId: string;
  at: Date;
  userVerified: boolean;
  backedUp: boolean;
  signCount: number;
  expiresAt: Date | null;
  metadataSet: string | null;
  metadataDelete: string[] | null;
  metadataMaxKeys: number | null;
}

const eventsOfShape = (types: string) => (types ? types.split(',') : []).map((type) => ({ type, payload: {} }));

const completeLoginStatement = compiledSteps<
  CompleteLoginValues,
  AppendedRow,
  { reject: boolean; lifetime: boolean; metadata: boolean; sessionEvents: string; userEvents: string }
>((v, shape) => {
  const counterGuard = shape.reject ? sql<boolean>`(sign_count < ${v.signCount} or (${v.signCount} = 0 and sign_count = 0))` : sql<boolean>`true`;
  const context = contextSet(
    shape.lifetime ? v.expiresAt! : undefined,
    shape.metadata ? v.metadataSet! : undefined,
    shape.metadata ? v.metadataDelete! : undefined,
    shape.metadata ? v.metadataMaxKeys! : undefined,
  );
  const steps: Step[] = [
    // The session's aggregate first (its lock queues logins to one session), then its row: the update
    // that records the login also closes the challenge, and re-checks it against the row as the last
    // writer left it, so of two uses at once only one finds it (a statement that refuses is undone
    // whole, the aggregate's bump with it). A wrong or used challenge is `consumed`; the right one on
    // a session that has ended refuses the statement as `live`.
    ...appendSteps('sess', { type: 'session', id: v.sessionId, owner: v.sessionOwner }, eventsOfShape(shape.sessionEvents), v.userId, {
      payloads: v.sessionPayloads,
      row: {
        name: 'consumed',
        refusal: refusedByRun,
        set: sql`token_hash = ${v.tokenHash}::bytea, user_id = ${v.userId}::text, org_id = ${v.orgId}::text,
          user_checked_at = ${v.at}::timestamptz, webauthn_checked_at = ${v.at}::timestamptz, webauthn_user_verified = ${v.userVerified}::boolean,
          passkey_id = ${v.passkeyId}::text, challenge_id = null, challenge = null, challenge_rp_id = null, challenge_user_verification = null,
          challenge_expires_at = null${sql.join([sql``, ...context], sql`, `)}`,
        // (The id again inside the CASE: however the planner orders the conditions, only this session's row can refuse.)
        where: sql<boolean>`case when r.id <> ${v.sessionId}::text or r.challenge_id is distinct from ${v.challengeId}::text then false
          when r.expires_at > ${v.at}::timestamptz then true else passkeyd_refuse('live') end`,
      },
    }),
    ...appendSteps('usr', { type: 'user', id: v.userId, owner: v.orgId }, eventsOfShape(shape.userEvents), v.userId, {
      when: sql<boolean>`exists (select 1 from consumed)`,
      payloads: v.userPayloads,
    }),
    {
      name: 'accepted',
      refusal: refusedByRun,
      body: sql`update passkeys set sign_count = greatest(sign_count, ${v.signCount}::bigint), backed_up = ${v.backedUp}::boolean,
          last_used_at = ${v.at}::timestamptz, updated_at = ${v.at}::timestamptz
        where id = ${v.passkeyId}::text and state = 'ready' and ${counterGuard} and exists (select 1 from usr)
        returning id`,
    },
  ];
  return { steps, tail: sql`sess.sequence, sess.created_at, sess.updated_at, sess.resource_owner from (select 1) one left join sess on true` };
});
