import { sql, type Kysely } from 'kysely';
import { appendResultOf, appendSteps, eventsOfShape, payloadsOf, type AppendResult, type AppendedRow, type NewEvent } from './events.js';
import { loginPolicyOf } from './orgs.js';
import { readyCredentials, registeringUserOf, type RegisteringUser, type RegisteringUserRow } from './registration-reads.js';
import type { ChallengesTable, Database } from './schema.js';
import { compiledSteps, refusedByRun, runSteps, type Step } from './statement.js';

// The registration ceremony's statements: RegisterPasskey's, VerifyPasskeyRegistration's, and the clean-up
// of registrations that can no longer complete.

/**
 * The steps that drop a user's registrations that can no longer complete: expired registration
 * challenges and NOT_READY passkeys without a live challenge. They were never visible (lists show READY
 * passkeys only), so no event is written: `user.passkey.added` without `.verified` says "never finished".
 * The steps see one snapshot, so the passkey step names the challenges the first one deletes.
 */
function staleRegistrationSteps(userId: string, now: Date): Step[] {
  const expired = (c: string) =>
    sql`${sql.ref(`${c}.user_id`)} = ${userId}::text and ${sql.ref(`${c}.kind`)} = 'registration' and ${sql.ref(`${c}.expires_at`)} <= ${now}::timestamptz`;
  return [
    { name: 'stale_challenges', body: sql`delete from challenges c where ${expired('c')}` },
    {
      name: 'stale_passkeys',
      body: sql`delete from passkeys p where p.user_id = ${userId}::text and p.state = 'not_ready'
        and not exists (select 1 from challenges c where c.passkey_id = p.id and not (${expired('c')}))`,
    },
  ];
}

/** Drops the user's registrations that can no longer complete (see {@link staleRegistrationSteps}). */
export async function dropStaleRegistrations(db: Kysely<Database>, userId: string, now: Date): Promise<void> {
  await runSteps(db, staleRegistrationSteps(userId, now), sql`1`);
}

export interface PendingRegistration {
  passkeyId: string;
  challengeId: string;
  userId: string;
  orgId: string;
  rpId: string;
  attachment: string;
  registrationCodeId: string | null;
  challenge: string;
  userVerification: ChallengesTable['user_verification'];
  now: Date;
  expiresAt: Date;
}

/**
 * Begins a registration in ONE statement: drops stale registrations, appends the events, stores the
 * NOT_READY passkey and its challenge. Refused with `userGone` when the user no longer exists.
 */
export async function insertPendingRegistration(
  db: Kysely<Database>,
  p: PendingRegistration,
  events: readonly NewEvent[],
  creator: string,
  userGone: () => Error,
): Promise<AppendResult> {
  const rows = await pendingRegistrationStatement(db, { ...p, payloads: payloadsOf(events), creator }, { events: events.map((e) => e.type).join(',') }, { usr: userGone });
  return appendResultOf(rows[0]!);
}

const pendingRegistrationStatement = compiledSteps<PendingRegistration & { payloads: string[]; creator: string }, AppendedRow, { events: string }>((v, shape) => ({
  steps: [
    ...staleRegistrationSteps(v.userId, v.now),
    ...appendSteps('usr', { type: 'user', id: v.userId, owner: v.orgId }, eventsOfShape(shape.events), v.creator, {
      when: sql<boolean>`exists (select 1 from users where id = ${v.userId}::text)`,
      refusal: refusedByRun,
      payloads: v.payloads,
    }),
    {
      name: 'passkey',
      body: sql`insert into passkeys (id, user_id, org_id, state, rp_id, authenticator_attachment, registration_code_id, created_at, updated_at)
        select ${v.passkeyId}::text, ${v.userId}::text, ${v.orgId}::text, 'not_ready', ${v.rpId}::text, ${v.attachment}::text, ${v.registrationCodeId}::text, usr.updated_at, usr.updated_at
        from usr`,
    },
    {
      name: 'challenge',
      body: sql`insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, created_at, expires_at)
        select ${v.challengeId}::text, 'registration', ${v.challenge}::text, ${v.userId}::text, ${v.passkeyId}::text, null, ${v.rpId}::text, ${v.userVerification}::text,
          ${v.registrationCodeId}::text, ${v.now}::timestamptz, ${v.expiresAt}::timestamptz
        from usr`,
    },
  ],
  tail: sql`usr.sequence, usr.created_at, usr.updated_at, usr.resource_owner from (select 1) one left join usr on true`,
}));

/** What {@link beginRegistration} needs: a pending registration whose user's organization the statement finds. */
export interface RegistrationStart {
  passkeyId: string;
  challengeId: string;
  userId: string;
  rpId: string;
  attachment: string;
  registrationCodeId: string | null;
  challenge: string;
  now: Date;
  expiresAt: Date;
  /** The server's defaults for what the login policy leaves to them. */
  defaultUserVerification: ChallengesTable['user_verification'];
  defaultMaxPasskeys: number;
}

/** A registration begun by {@link beginRegistration}: the user as the options need it, and the stored requirement. */
export interface BegunRegistrationRow {
  details: AppendResult;
  user: RegisteringUser;
  /** The user verification the challenge was stored with (the options must ask for the same). */
  userVerification: ChallengesTable['user_verification'];
}

/**
 * Begins a registration with no read before it: ONE statement finds the user with its organization's
 * login policy, and goes on only when the user is a human, the policy does not require SSO and the user
 * has fewer READY passkeys than it allows; it then does what {@link insertPendingRegistration} does,
 * with the organization and the user-verification requirement (the policy's, else
 * `defaultUserVerification`, as `effective()` in the domain takes them) it found. Returns the user and
 * its READY credentials from the same snapshot, or undefined when anything did not hold: the caller then
 * reads and decides the slow way, which words the refusal.
 */
export async function beginRegistration(db: Kysely<Database>, r: RegistrationStart, events: readonly NewEvent[], creator: string): Promise<BegunRegistrationRow | undefined> {
  let rows: (AppendedRow & RegisteringUserRow & { user_verification: ChallengesTable['user_verification'] })[];
  try {
    rows = await beginRegistrationStatement(
      db,
      { ...r, payloads: payloadsOf(events), creator },
      { events: events.map((e) => e.type).join(',') },
      {
        allowed: notBegun,
        usr: notBegun,
      },
    );
  } catch (err) {
    if (err instanceof NotBegun) return undefined;
    throw err;
  }
  const row = rows[0]!;
  return { details: appendResultOf(row), user: registeringUserOf(row), userVerification: row.user_verification };
}

class NotBegun extends Error {}
const notBegun = () => new NotBegun();

const beginRegistrationStatement = compiledSteps<
  RegistrationStart & { payloads: string[]; creator: string },
  AppendedRow & RegisteringUserRow & { user_verification: ChallengesTable['user_verification'] },
  { events: string }
>((v, shape) => ({
  steps: [
    ...staleRegistrationSteps(v.userId, v.now),
    {
      name: 'allowed',
      refusal: refusedByRun,
      body: sql`select u.id, u.org_id, u.policy, coalesce(nullif(u.policy->>'user_verification', ''), ${v.defaultUserVerification}::text) as user_verification
        from (select u.id, u.org_id, u.ready_passkeys, ${loginPolicyOf(sql`u.org_id`)} as policy from users u where u.id = ${v.userId}::text and u.type = 'human') u
        where not coalesce((u.policy->>'sso_required')::boolean, false)
          and u.ready_passkeys < coalesce((u.policy->>'max_passkeys_per_user')::int, ${v.defaultMaxPasskeys}::int)`,
    },
    // The owner is the one the statement found (`owner`), not known before it.
    ...appendSteps('usr', { type: 'user', id: v.userId, owner: '' }, eventsOfShape(shape.events), v.creator, {
      when: sql<boolean>`exists (select 1 from allowed)`,
      owner: sql`(select org_id from allowed)`,
      refusal: refusedByRun,
      payloads: v.payloads,
    }),
    {
      name: 'passkey',
      body: sql`insert into passkeys (id, user_id, org_id, state, rp_id, authenticator_attachment, registration_code_id, created_at, updated_at)
        select ${v.passkeyId}::text, ${v.userId}::text, a.org_id, 'not_ready', ${v.rpId}::text, ${v.attachment}::text, ${v.registrationCodeId}::text, usr.updated_at, usr.updated_at
        from usr, allowed a`,
    },
    {
      name: 'challenge',
      body: sql`insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, created_at, expires_at)
        select ${v.challengeId}::text, 'registration', ${v.challenge}::text, ${v.userId}::text, ${v.passkeyId}::text, null, ${v.rpId}::text, a.user_verification,
          ${v.registrationCodeId}::text, ${v.now}::timestamptz, ${v.expiresAt}::timestamptz
        from usr, allowed a`,
    },
  ],
  // The user and its READY credentials as the statement found them (its own changes are not in that snapshot).
  tail: sql`usr.sequence, usr.created_at, usr.updated_at, usr.resource_owner, a.user_verification,
      u.id, u.org_id, u.username, u.display_name, u.webauthn_user_handle, u.type, a.policy, ${readyCredentials(sql`u.id`)} as credentials
    from (select 1) one left join usr on true left join allowed a on true left join users u on u.id = a.id`,
}));

/** The verified credential's columns, as the passkey row stores them. */
export interface StoredCredential {
  name: string;
  credentialId: Uint8Array;
  publicKey: Uint8Array;
  algorithm: number;
  signCount: number;
  aaguid: string;
  authenticatorName: string;
  backupEligible: boolean;
  backedUp: boolean;
  deviceType: string;
  transports: string[];
  attestationFormat: string;
  authenticatorAttachment: string;
}

export interface FinishedRegistration {
  userId: string;
  orgId: string;
  passkeyId: string;
  challengeId: string;
  /** The registration code to mark used, or null. */
  codeId: string | null;
  now: Date;
  /** The most READY passkeys the user may have (the login policy's max_passkeys_per_user). */
  maxReady: number;
  /**
   * No read came first: the statement checks the login policy as it is now itself. It goes on only when
   * the policy does not require SSO or trusted attestation (that check needs the metadata) and allows
   * the credential's AAGUID, and it takes the policy's max_passkeys_per_user (else `maxReady`).
   */
  checkPolicy?: boolean;
}

/** Why a registration's one statement was refused: the step that found nothing. */
export interface RegistrationRefusals {
  /** The challenge was consumed meanwhile, or expired; or the passkey is no longer NOT_READY. */
  gone: () => Error;
  /** The registration code was used by another registration meanwhile. */
  codeTaken: () => Error;
  userGone: () => Error;
  /** The user has as many READY passkeys as the policy allows (counted on the user's row, as it is now). */
  full: () => Error;
  /** With `checkPolicy`: the login policy as it is now does not let the statement decide (see there). */
  policy?: (() => Error) | undefined;
}

/**
 * Completes a registration in ONE statement: consume the challenge (one success per challenge, on any
 * number of instances), mark the registration code used, append the events, store the credential
 * (READY). A step that finds nothing refuses the whole statement with its refusal.
 */
export async function storeVerifiedCredential(
  db: Kysely<Database>,
  r: FinishedRegistration,
  credential: StoredCredential,
  events: readonly NewEvent[],
  creator: string,
  refusals: RegistrationRefusals,
): Promise<AppendResult> {
  const rows = await verifiedCredentialStatement(
    db,
    {
      ...r,
      ...credential,
      credentialId: Buffer.from(credential.credentialId),
      publicKey: Buffer.from(credential.publicKey),
      payloads: payloadsOf(events),
      creator,
    },
    { code: r.codeId !== null, attachment: credential.authenticatorAttachment !== '', policy: r.checkPolicy === true, events: events.map((e) => e.type).join(',') },
    { consumed: refusals.gone, code: refusals.codeTaken, usr: refusals.userGone, room: refusals.full, stored: refusals.gone, policy: refusals.policy ?? refusedByRun },
  );
  return appendResultOf(rows[0]!);
}

type VerifiedCredentialValues = FinishedRegistration & StoredCredential & { credentialId: Buffer; publicKey: Buffer; payloads: string[]; creator: string };

const verifiedCredentialStatement = compiledSteps<VerifiedCredentialValues, AppendedRow, { code: boolean; attachment: boolean; policy: boolean; events: string }>((v, shape) => {
  const code = shape.code
    ? sql`update registration_codes set used_at = ${v.now}::timestamptz
        where id = ${v.codeId}::text and used_at is null and expires_at > ${v.now}::timestamptz and exists (select 1 from consumed) returning id`
    : sql`select 1 as id`;
  const attachment = shape.attachment ? sql`, authenticator_attachment = ${v.authenticatorAttachment}::text` : sql``;
  // The organization's login policy as `effective()` in the domain applies it (see FinishedRegistration.checkPolicy).
  const policy: Step[] = shape.policy
    ? [
        {
          name: 'policy',
          refusal: refusedByRun,
          body: sql`select (x.p->>'max_passkeys_per_user')::int as max_passkeys from (select ${loginPolicyOf(sql`${v.orgId}::text`)} as p) x
            where not coalesce((x.p->>'sso_required')::boolean, false) and not coalesce((x.p->>'require_trusted_attestation')::boolean, false)
              and not coalesce(x.p->'denied_aaguids' @> to_jsonb(${v.aaguid}::text), false)
              and coalesce(jsonb_array_length(x.p->'allowed_aaguids') = 0 or x.p->'allowed_aaguids' @> to_jsonb(${v.aaguid}::text), true)`,
        },
      ]
    : [];
  const max = shape.policy ? sql`coalesce((select max_passkeys from policy), ${v.maxReady}::int)` : sql`${v.maxReady}::int`;
  return {
    steps: [
      ...policy,
      { name: 'consumed', body: sql`delete from challenges where id = ${v.challengeId}::text and expires_at > ${v.now}::timestamptz returning id`, refusal: refusedByRun },
      { name: 'code', body: code, refusal: refusedByRun },
      ...appendSteps('usr', { type: 'user', id: v.userId, owner: v.orgId }, eventsOfShape(shape.events), v.creator, {
        // (With the policy checked here, nothing is written unless it allows the registration: a credential
        // registered twice then meets the unique key only when the policy would not have refused first.)
        when: sql<boolean>`exists (select 1 from consumed) and exists (select 1 from code) and exists (select 1 from users where id = ${v.userId}::text)${
          shape.policy ? sql` and exists (select 1 from policy)` : sql``
        }`,
        refusal: refusedByRun,
        payloads: v.payloads,
        // The user's row counts READY passkeys; its UPDATE waits for a concurrent one and re-checks.
        row: { name: 'room', set: sql`ready_passkeys = r.ready_passkeys + 1`, where: sql<boolean>`r.ready_passkeys < ${max}`, refusal: refusedByRun },
      }),
      {
        name: 'stored',
        refusal: refusedByRun,
        body: sql`update passkeys set state = 'ready', name = ${v.name}::text, credential_id = ${v.credentialId}::bytea, public_key = ${v.publicKey}::bytea,
          algorithm = ${v.algorithm}::int, sign_count = ${v.signCount}::bigint, aaguid = ${v.aaguid}::text, authenticator_name = ${v.authenticatorName}::text,
          backup_eligible = ${v.backupEligible}::boolean, backed_up = ${v.backedUp}::boolean, device_type = ${v.deviceType}::text,
          transports = ${v.transports}::text[], attestation_format = ${v.attestationFormat}::text${attachment}, updated_at = (select updated_at from usr)
        where id = ${v.passkeyId}::text and state = 'not_ready' and exists (select 1 from usr)
        returning id`,
      },
    ],
    tail: sql`usr.sequence, usr.created_at, usr.updated_at, usr.resource_owner from (select 1) one left join usr on true`,
  };
});
