import { sql, type Kysely } from 'kysely';
import { appendResultOf, appendSteps, eventsOfShape, payloadsOf, type AggregateRef, type AppendResult, type AppendedRow, type NewEvent } from './events.js';
import { ssoRequiredOf } from './orgs.js';
import type { Database } from './schema.js';
import { compiledSteps, refusedByRun, type Step } from './statement.js';

/**
 * SetSession's statements: a verified login, and the session context changes (lifetime, metadata)
 * that ride on it or go alone. Session aggregates, then user aggregates: every statement takes its
 * locks in that order, so concurrent logins cannot deadlock on them.
 */

/** What a verified assertion changes. */
export interface CompletedLogin {
  session: AggregateRef;
  /** The challenge the assertion signed: it must be the session's open one, for this RP ID, not expired. */
  challenge: string;
  /** The RP ID the assertion was verified for (the credential's). */
  rpId: string;
  /**
   * The hash of the session token the caller presented, when nothing has checked it yet: the statement
   * then refuses a session whose token it is not (a login that skipped SetSession's read).
   */
  presentedTokenHash?: Buffer | undefined;
  /** response.userHandle, when the authenticator sent one: it must be the user's. */
  userHandle: Buffer | undefined;
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
  /**
   * The passkey or its user went away or changed (deleted, deactivated, SSO required), or its counter did
   * not increase (two logins raced with one credential).
   */
  notAccepted: () => Error;
}

export interface CompletedLoginResult {
  details: AppendResult;
  /** The session's expiry as the statement left it. */
  expiresAt: Date;
}

/**
 * A verified login in ONE statement, atomic on its own (no BEGIN or COMMIT): record the factor on the
 * session while closing its challenge (a second use finds it closed), then update the passkey; each
 * step conditioned on the one before. The CTEs of one statement run in no documented order, but each
 * needs rows of the one before, so the executor runs them as a chain: the session's row (its own
 * aggregate row), the user's row (checked; with `userEvents`, the user's aggregate first and the row
 * bumped), then the passkey. A plain login writes the session's row and event and the passkey's row,
 * nothing of the user's: the session's event records the passkey's use.
 *
 * The statement checks, against the rows as they are now, everything a login depends on that can
 * change: the session's open challenge, its RP ID, expiry and user verification, the user it is for,
 * the session token (with `presentedTokenHash`), the user being active with this user handle, the
 * passkey being READY for this RP ID, and the organization not requiring SSO. So a caller that knows the
 * credential's key (which never changes) can verify the assertion and run this with no read before it;
 * any refusal then only tells it to read and decide the slow way.
 */
export async function completeLogin(
  db: Kysely<Database>,
  l: CompletedLogin,
  sessionEvents: readonly NewEvent[],
  userEvents: readonly NewEvent[],
  refusals: LoginRefusals,
): Promise<CompletedLoginResult> {
  const rows = await completeLoginStatement(
    db,
    {
      challenge: l.challenge,
      rpId: l.rpId,
      presentedTokenHash: l.presentedTokenHash ?? null,
      userHandle: l.userHandle ?? null,
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
      token: l.presentedTokenHash !== undefined,
      lifetime: l.context?.expiresAt !== undefined,
      metadata: l.context?.metadata !== undefined,
      sessionEvents: sessionEvents.map((e) => e.type).join(','),
      userEvents: userEvents.map((e) => e.type).join(','),
    },
    { consumed: refusals.consumed, live: refusals.ended, accepted: refusals.notAccepted, [METADATA_FULL]: refusals.metadataFull },
  );
  const row = rows[0]!;
  return { details: appendResultOf(row), expiresAt: row.expires_at };
}

/** The values of SetSession's login statement (see {@link compiledSteps}). */
interface CompleteLoginValues {
  challenge: string;
  rpId: string;
  presentedTokenHash: Buffer | null;
  userHandle: Buffer | null;
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

const completeLoginStatement = compiledSteps<
  CompleteLoginValues,
  AppendedRow & { expires_at: Date },
  { reject: boolean; token: boolean; lifetime: boolean; metadata: boolean; sessionEvents: string; userEvents: string }
>((v, shape) => {
  const counterGuard = shape.reject ? sql<boolean>`(sign_count < ${v.signCount} or (${v.signCount} = 0 and sign_count = 0))` : sql<boolean>`true`;
  const userActive = sql<boolean>`r.state = 'active' and (${v.userHandle}::bytea is null or r.webauthn_user_handle = ${v.userHandle}::bytea)`;
  const context = contextSet(
    shape.lifetime ? v.expiresAt! : undefined,
    shape.metadata ? v.metadataSet! : undefined,
    shape.metadata ? v.metadataDelete! : undefined,
    shape.metadata ? v.metadataMaxKeys! : undefined,
  );
  const steps: Step[] = [
    // The session's row first, which is its aggregate's (its lock queues logins to one session): the
    // one update that bumps its sequence and records the login also closes the challenge, and re-checks
    // it against the row as the last writer left it, so of two uses at once only one finds it (a
    // statement that refuses is undone whole). A wrong, used or expired challenge, another RP ID, a
    // session for another user (or for an unknown name), missing user verification or a wrong session
    // token is `consumed`; the right one on a session that has ended refuses the statement as `live`.
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
        // Every condition must hold as TRUE: a NULL anywhere (a column left empty) refuses too.
        where: sql<boolean>`case when not coalesce(r.id = ${v.sessionId}::text and r.challenge = ${v.challenge}::text
              and r.challenge_rp_id = ${v.rpId}::text and r.challenge_expires_at > ${v.at}::timestamptz
              and (r.challenge_user_verification <> 'required' or ${v.userVerified}::boolean)
              and (r.user_id = ${v.userId}::text or (r.user_id is null and r.login_digest is null and ${v.userHandle}::bytea is not null))
              ${shape.token ? sql`and r.token_hash = ${v.presentedTokenHash}::bytea` : sql``}, false) then false
          when r.expires_at > ${v.at}::timestamptz then true else passkeyd_refuse('live') end`,
        returning: sql`r.expires_at`,
      },
    }),
    // The user signs in only while active, and with its own user handle when the authenticator sent one.
    // A login changes nothing of the user's (its record is the session's event, with the passkey's
    // counter), so it only reads the row, without a lock: a deactivation committed alongside leaves the
    // session as if the login had committed just before it, and access tokens check the user's state on
    // every call.
    // Events for the user (a counter that went backwards, let through by the 'log' policy) are appended
    // to the user's aggregate, as any change is.
    ...(shape.userEvents
      ? appendSteps('usr', { type: 'user', id: v.userId, owner: v.orgId }, eventsOfShape(shape.userEvents), v.userId, {
          when: sql<boolean>`exists (select 1 from consumed)`,
          payloads: v.userPayloads,
          row: { name: 'active', where: userActive },
        })
      : [{ name: 'active', body: sql`select r.id from users r where r.id = ${v.userId}::text and ${userActive} and exists (select 1 from consumed)` }]),
    {
      name: 'accepted',
      refusal: refusedByRun,
      // The organization's login policy (else the instance default, org_id ''), as SetSession's read finds it.
      body: sql`update passkeys set sign_count = greatest(sign_count, ${v.signCount}::bigint), backed_up = ${v.backedUp}::boolean,
          last_used_at = ${v.at}::timestamptz, updated_at = ${v.at}::timestamptz
        where id = ${v.passkeyId}::text and state = 'ready' and rp_id = ${v.rpId}::text and ${counterGuard} and exists (select 1 from active)
          and not ${ssoRequiredOf(sql`${v.orgId}::text`)}
        returning id`,
    },
  ];
  return {
    steps,
    tail: sql`sess.sequence, sess.created_at, sess.updated_at, sess.resource_owner, consumed.expires_at
      from (select 1) one left join sess on true left join consumed on true`,
  };
});
