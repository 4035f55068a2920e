import { randomBytes } from 'node:crypto';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import type { Config } from '../config/config.js';
import { newId } from '../ids.js';
import { appendCtes, appendEvents, appendResultOf, latestPosition, type AppendedRow } from '../store/events.js';
import type { Database, PasskeysTable } from '../store/schema.js';
import { everyStepFound, inTransaction, isUniqueViolation, runStatement } from '../store/transaction.js';
import { creationOptions, type AuthenticatorAttachment } from '../webauthn/creation-options.js';
import { parseRegistrationResponse, verifyRegistration } from '../webauthn/registration-response.js';
import { alreadyExists, denied, invalid, notFound, precondition, unauthenticated } from './errors.js';
import { CODE_REFUSED, isCodeUsable, recordCodeFailure, touchUser, touchUserFrom } from './registration-codes.js';
import type { ChangeDetails, ListResult, Page } from './types.js';
import { getUser } from './users.js';

/** A passkey as stored (current state). */
export type PasskeyRow = Selectable<PasskeysTable>;

const USER = 'user';

/** Base64url of a stored byte column (pg gives Buffers, PGlite Uint8Arrays). */
export function base64url(bytes: Uint8Array | null): string {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url') : '';
}

/**
 * Removes the user's registrations that can no longer complete: expired registration challenges and
 * NOT_READY passkeys without a live challenge. They were never visible (lists show READY passkeys
 * only), so no event is written: `user.passkey.added` without `.verified` already says "never finished".
 */
async function dropStaleRegistrations(trx: Transaction<Database>, userId: string, now: Date): Promise<void> {
  await sql`with ${staleRegistrationCtes(userId, now)} select 1`.execute(trx);
}

/**
 * {@link dropStaleRegistrations} as two entries of a WITH list (`stale_challenges`, `stale_passkeys`),
 * for commands done in one statement. The CTEs see one snapshot, so the passkey test names the
 * challenges the first one deletes instead of relying on their absence.
 */
function staleRegistrationCtes(userId: string, now: Date): RawBuilder<unknown> {
  const expired = (c: string) => sql`${sql.ref(`${c}.user_id`)} = ${userId}::text and ${sql.ref(`${c}.kind`)} = 'registration' and ${sql.ref(`${c}.expires_at`)} <= ${now}::timestamptz`;
  return sql`stale_challenges as (
      delete from challenges c where ${expired('c')}
    ), stale_passkeys as (
      delete from passkeys p where p.user_id = ${userId}::text and p.state = 'not_ready'
        and not exists (select 1 from challenges c where c.passkey_id = p.id and not (${expired('c')}))
    )`;
}

export interface BeginRegistrationInput {
  userId: string;
  rpId: string;
  rpName: string;
  userVerification: Config['userVerification'];
  attestation: Config['attestation'];
  attachment: AuthenticatorAttachment;
  challengeTtlSeconds: number;
  /** Set when a registration code authorized the request: the registration is bound to it. */
  registrationCodeId?: string | undefined;
}

export interface BegunRegistration {
  passkeyId: string;
  options: PublicKeyCredentialCreationOptionsJSON;
  details: ChangeDetails;
}

/**
 * Begins a passkey registration: a NOT_READY passkey, its challenge (32 random bytes, stored with the
 * RP ID, user-verification requirement and expiry) and `user.passkey.added`, in one statement.
 */
export async function beginPasskeyRegistration(db: Kysely<Database>, input: BeginRegistrationInput, creator: string): Promise<BegunRegistration> {
  const now = new Date();
  // The user and its READY credentials (excluded from the new registration), in one read.
  const rows = await db
    .selectFrom('users as u')
    .leftJoin('passkeys as p', (j) => j.onRef('p.user_id', '=', 'u.id').on('p.state', '=', 'ready'))
    .select(['u.id', 'u.org_id', 'u.username', 'u.display_name', 'u.webauthn_user_handle', 'p.credential_id', 'p.transports'])
    .where('u.id', '=', input.userId)
    .execute();
  const user = rows[0];
  if (!user) throw notFound(`user ${input.userId}`);
  const challenge = randomBytes(32);
  const options = await creationOptions({
    rpId: input.rpId,
    rpName: input.rpName,
    userHandle: user.webauthn_user_handle,
    userName: user.username,
    userDisplayName: user.display_name,
    exclude: rows.filter((r) => r.credential_id).map((p) => ({ id: base64url(p.credential_id), transports: p.transports ?? [] })),
    userVerification: input.userVerification,
    attachment: input.attachment,
    attestation: input.attestation,
    challenge,
    timeoutMs: input.challengeTtlSeconds * 1000,
  });
  const passkeyId = newId();
  const added = {
    type: 'user.passkey.added',
    payload: { passkey_id: passkeyId, rp_id: input.rpId, authenticator_attachment: input.attachment ?? '', registration_code_id: input.registrationCodeId ?? null },
  };
  const code = input.registrationCodeId ?? null;
  // ONE statement (atomic, one round trip): drop stale registrations, append `user.passkey.added`, store
  // the NOT_READY passkey and its challenge, bump the user row.
  const write = () =>
    sql<AppendedRow>`
      with ${staleRegistrationCtes(user.id, now)},
      ${appendCtes('usr', { type: USER, id: user.id, owner: user.org_id }, [added], creator, sql<boolean>`exists (select 1 from users where id = ${user.id}::text)`)},
      passkey as (
        insert into passkeys (id, user_id, org_id, state, rp_id, authenticator_attachment, registration_code_id, created_at, updated_at)
        select ${passkeyId}::text, ${user.id}::text, ${user.org_id}::text, 'not_ready', ${input.rpId}::text, ${input.attachment ?? ''}::text, ${code}::text, usr.updated_at, usr.updated_at
        from usr
      ), challenge as (
        insert into challenges (id, kind, challenge, user_id, passkey_id, session_id, rp_id, user_verification, registration_code_id, created_at, expires_at)
        select ${newId()}::text, 'registration', ${options.challenge}::text, ${user.id}::text, ${passkeyId}::text, null, ${input.rpId}::text, ${input.userVerification}::text,
          ${code}::text, ${now}::timestamptz, ${new Date(now.getTime() + input.challengeTtlSeconds * 1000)}::timestamptz
        from usr
      ), touched as (${touchUserFrom('usr', user.id)})
      select usr.sequence, usr.created_at, usr.updated_at, usr.resource_owner, ${everyStepFound(['usr'])} as ok
      from (select 1) one left join usr on true`.execute(db);
  const { rows: appended } = await runStatement(write, { usr: () => notFound(`user ${input.userId}`) });
  return { passkeyId, options, details: appendResultOf(appended[0]!) };
}

export interface CompleteRegistrationInput {
  userId: string;
  passkeyId: string;
  /** The browser's PublicKeyCredential JSON, as received. */
  credential: unknown;
  name: string;
  origins: string[];
  /**
   * The caller has no token: the registration must have been begun with a registration code for this
   * user that is still valid. (With a token, the permission interceptor has already decided.)
   */
  anonymous: boolean;
  /** The caller's subject; undefined for a token-less caller. */
  creator: string | undefined;
}

const NEEDS_TOKEN = 'this call needs a Bearer access token, or a registration begun with a valid registration code';

/**
 * Completes a registration: verifies the response against the pending challenge, then, in one
 * statement, consumes the challenge (DELETE ... RETURNING: one success per challenge, on any number
 * of instances), stores the credential (READY), marks a registration code used and appends
 * `user.passkey.verified`. A response that fails verification consumes nothing, so the user can retry.
 */
export async function completePasskeyRegistration(db: Kysely<Database>, input: CompleteRegistrationInput): Promise<ChangeDetails> {
  const now = new Date();
  // The pending passkey with its registration challenge, in one read.
  const found = await db
    .selectFrom('passkeys as p')
    .leftJoin('challenges as c', (j) => j.onRef('c.passkey_id', '=', 'p.id').on('c.kind', '=', 'registration'))
    .selectAll('p')
    .select(['c.id as challenge_id', 'c.challenge', 'c.rp_id as challenge_rp_id', 'c.user_verification', 'c.expires_at as challenge_expires_at', 'c.registration_code_id as challenge_code_id'])
    .where('p.id', '=', input.passkeyId)
    .executeTakeFirst();
  const passkey = found;
  const owned = passkey !== undefined && passkey.user_id === input.userId;
  if (input.anonymous) {
    // Say nothing about passkeys to a caller without a token unless it holds the registration's code.
    if (!owned || !passkey.registration_code_id) throw unauthenticated(NEEDS_TOKEN);
    const code = await db.selectFrom('registration_codes').select(['user_id', 'used_at', 'expires_at']).where('id', '=', passkey.registration_code_id).executeTakeFirst();
    if (!code || code.user_id !== input.userId) throw unauthenticated(NEEDS_TOKEN);
    if (!isCodeUsable(code, now) && passkey.state === 'ready') throw unauthenticated(NEEDS_TOKEN);
    if (!isCodeUsable(code, now)) {
      // The registration was begun with this code, which has since expired or been used: a code
      // failure like any other (recorded, INVALID_ARGUMENT), not a missing token.
      await recordCodeFailure(db, input.userId, passkey.registration_code_id, code.used_at ? 'used' : 'expired');
      throw invalid(CODE_REFUSED);
    }
  }
  if (!owned) throw notFound(`passkey ${input.passkeyId}`);
  if (passkey.state === 'ready') throw precondition(`passkey ${input.passkeyId} is already verified`);
  const response = parseRegistrationResponse(input.credential);

  if (!passkey.challenge_id || new Date(passkey.challenge_expires_at!).getTime() <= now.getTime()) {
    await inTransaction(db, (trx) => dropStaleRegistrations(trx, input.userId, now));
    throw precondition('the registration has expired or was already completed; begin a new one with RegisterPasskey');
  }
  const challenge = { id: passkey.challenge_id, rpId: passkey.challenge_rp_id!, codeId: passkey.challenge_code_id };

  const credential = await verifyRegistration(response, {
    challenge: passkey.challenge!,
    origins: input.origins,
    rpId: challenge.rpId,
    requireUserVerification: passkey.user_verification === 'required',
  });

  /**
   * ONE statement (atomic, one round trip): consume the challenge (one success per challenge, on any
   * number of instances), mark the registration code used, append `user.passkey.verified`, store the
   * credential (READY), bump the user row. A step that finds nothing refuses the whole statement.
   * `withCode`: the event names the code as used, and the statement refuses if it could not be.
   */
  const write = (withCode: boolean) => {
    const codeId = withCode ? challenge.codeId : null;
    const verified = {
      type: 'user.passkey.verified',
      payload: {
        passkey_id: passkey.id,
        name: input.name,
        credential_id: credential.credentialIdText,
        aaguid: credential.aaguid,
        authenticator_name: credential.authenticatorName,
        algorithm: credential.algorithm,
        attestation_format: credential.attestationFormat,
        backup_eligible: credential.backupEligible,
        backed_up: credential.backedUp,
        transports: credential.transports,
        rp_id: challenge.rpId,
        user_verified: credential.userVerified,
        registration_code_id: codeId,
      },
    };
    const creator = input.creator ?? `registration_code:${challenge.codeId ?? ''}`;
    const code = codeId
      ? sql`update registration_codes set used_at = ${now}::timestamptz
          where id = ${codeId}::text and used_at is null and expires_at > ${now}::timestamptz and exists (select 1 from consumed) returning id`
      : sql`select 1 as id`;
    const store = db
      .updateTable('passkeys')
      .set({
        state: 'ready',
        name: input.name,
        credential_id: Buffer.from(credential.credentialId),
        public_key: Buffer.from(credential.publicKey),
        algorithm: credential.algorithm,
        sign_count: credential.signCount,
        aaguid: credential.aaguid,
        authenticator_name: credential.authenticatorName,
        backup_eligible: credential.backupEligible,
        backed_up: credential.backedUp,
        device_type: credential.deviceType,
        transports: credential.transports,
        attestation_format: credential.attestationFormat,
        ...(credential.authenticatorAttachment ? { authenticator_attachment: credential.authenticatorAttachment } : {}),
        updated_at: sql<Date>`(select updated_at from usr)`,
      })
      .where('id', '=', passkey.id)
      .where('state', '=', 'not_ready')
      .where(sql<boolean>`exists (select 1 from usr)`)
      .returning('id');
    return sql<AppendedRow>`
      with consumed as (
        delete from challenges where id = ${challenge.id}::text and expires_at > ${now}::timestamptz returning id
      ), code as (${code}),
      ${appendCtes('usr', { type: USER, id: input.userId, owner: passkey.org_id }, [verified], creator, sql<boolean>`exists (select 1 from consumed) and exists (select 1 from code) and exists (select 1 from users where id = ${input.userId}::text)`)},
      stored as (${store}), touched as (${touchUserFrom('usr', input.userId)})
      select usr.sequence, usr.created_at, usr.updated_at, usr.resource_owner, ${everyStepFound(['consumed', 'code', 'usr', 'stored'])} as ok
      from (select 1) one left join usr on true`.execute(db);
  };
  const gone = () => precondition('registration already completed or expired');
  const refused = { consumed: gone, code: () => new CodeTaken(), usr: () => notFound(`user ${input.userId}`), stored: gone };

  try {
    let rows: AppendedRow[];
    try {
      ({ rows } = await runStatement(() => write(challenge.codeId !== null), refused));
    } catch (err) {
      // Another registration used the code meanwhile: without a token this one has no standing; with
      // one, it completes without the code.
      if (!(err instanceof CodeTaken)) throw err;
      if (input.anonymous) throw unauthenticated(NEEDS_TOKEN);
      ({ rows } = await runStatement(() => write(false), refused));
    }
    return appendResultOf(rows[0]!);
  } catch (err) {
    if (isUniqueViolation(err, 'passkeys_credential_id_key')) throw alreadyExists('this credential is already registered');
    throw err;
  }
}

/** The registration code a registration was begun with was used by another one meanwhile. */
class CodeTaken extends Error {}

/** Lists a user's READY passkeys, oldest first with `asc`, with the total. */
export async function listPasskeys(db: Kysely<Database>, userId: string, page: Page): Promise<ListResult<PasskeyRow>> {
  return db.transaction().execute(async (trx) => {
    await getUser(trx, userId);
    const q = trx.selectFrom('passkeys').where('user_id', '=', userId).where('state', '=', 'ready');
    const dir = page.asc ? 'asc' : 'desc';
    const items = await q.selectAll().orderBy('created_at', dir).orderBy('id', dir).offset(page.offset).limit(page.limit).execute();
    const total = await q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const position = await latestPosition(trx);
    return { items, total: Number(total.n), processedPosition: position, timestamp: new Date() };
  });
}

async function readyPasskey(trx: Transaction<Database>, userId: string, passkeyId: string): Promise<PasskeyRow> {
  const row = await trx.selectFrom('passkeys').selectAll().where('id', '=', passkeyId).where('user_id', '=', userId).where('state', '=', 'ready').executeTakeFirst();
  if (!row) throw notFound(`passkey ${passkeyId}`);
  return row;
}

/** Renames a READY passkey (`user.passkey.renamed`). */
export async function renamePasskey(db: Kysely<Database>, userId: string, passkeyId: string, name: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await getUser(trx, userId);
    const passkey = await readyPasskey(trx, userId, passkeyId);
    const details = await appendEvents(trx, { type: USER, id: user.id, owner: user.org_id }, [{ type: 'user.passkey.renamed', payload: { passkey_id: passkey.id, name } }], creator);
    await trx.updateTable('passkeys').set({ name, updated_at: details.changeDate }).where('id', '=', passkey.id).execute();
    await touchUser(trx, user.id, details);
    return details;
  });
}

export interface RemoveOptions {
  /** Remove even the user's last passkey. */
  force: boolean;
  /** The caller's admin roles: forcing needs an instance admin or an org admin of the user's organization. */
  admin: { instanceAdmin: boolean; orgAdminOf: string | undefined };
}

/**
 * Removes a READY passkey (`user.passkey.removed`). Passkeys are passkeyd's only login method, so the
 * user's last one is kept unless an admin forces it. The user's aggregate row is locked before the
 * count, so two concurrent removals cannot each leave the other as "not the last one".
 */
export async function removePasskey(db: Kysely<Database>, userId: string, passkeyId: string, options: RemoveOptions, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const user = await getUser(trx, userId);
    if (options.force && !options.admin.instanceAdmin && options.admin.orgAdminOf !== user.org_id) {
      throw denied("only an admin of the user's organization or an instance admin may force the removal of a passkey");
    }
    // The aggregate's row is the lock every change to this user takes first (appendEvents); taking it
    // before counting means a concurrent removal has committed (or not begun) when we count.
    await trx.selectFrom('aggregates').select('sequence').where('aggregate_type', '=', USER).where('aggregate_id', '=', userId).forUpdate().execute();
    const passkey = await readyPasskey(trx, userId, passkeyId);
    const ready = await trx.selectFrom('passkeys').select('id').where('user_id', '=', userId).where('state', '=', 'ready').execute();
    if (ready.length <= 1 && !options.force) {
      throw precondition("this is the user's only passkey; removing it would lock them out (an admin can remove it with force)");
    }
    const details = await appendEvents(
      trx,
      { type: USER, id: user.id, owner: user.org_id },
      [{ type: 'user.passkey.removed', payload: { passkey_id: passkey.id, credential_id: base64url(passkey.credential_id), forced: options.force && ready.length <= 1 } }],
      creator,
    );
    await trx.deleteFrom('passkeys').where('id', '=', passkey.id).execute();
    await touchUser(trx, user.id, details);
    return details;
  });
}
