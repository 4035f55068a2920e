import { randomBytes } from 'node:crypto';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Config } from '../config/config.js';
import { newId } from '../ids.js';
import { appendEvents, latestPosition } from '../store/events.js';
import type { Database, PasskeysTable } from '../store/schema.js';
import { inTransaction, isUniqueViolation } from '../store/transaction.js';
import { creationOptions, type AuthenticatorAttachment } from '../webauthn/creation-options.js';
import { parseRegistrationResponse, verifyRegistration } from '../webauthn/registration-response.js';
import { alreadyExists, denied, invalid, notFound, precondition, unauthenticated } from './errors.js';
import { CODE_REFUSED, isCodeUsable, recordCodeFailure, touchUser } from './registration-codes.js';
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
  await trx.deleteFrom('challenges').where('user_id', '=', userId).where('kind', '=', 'registration').where('expires_at', '<=', now).execute();
  await trx
    .deleteFrom('passkeys')
    .where('user_id', '=', userId)
    .where('state', '=', 'not_ready')
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('challenges').select('challenges.id').whereRef('challenges.passkey_id', '=', 'passkeys.id'))))
    .execute();
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
 * RP ID, user-verification requirement and expiry) and `user.passkey.added`, in one transaction.
 */
export async function beginPasskeyRegistration(db: Kysely<Database>, input: BeginRegistrationInput, creator: string): Promise<BegunRegistration> {
  const now = new Date();
  return inTransaction(db, async (trx) => {
    const user = await getUser(trx, input.userId);
    await dropStaleRegistrations(trx, user.id, now);
    const existing = await trx.selectFrom('passkeys').select(['credential_id', 'transports']).where('user_id', '=', user.id).where('state', '=', 'ready').execute();
    const challenge = randomBytes(32);
    const options = await creationOptions({
      rpId: input.rpId,
      rpName: input.rpName,
      userHandle: user.webauthn_user_handle,
      userName: user.username,
      userDisplayName: user.display_name,
      exclude: existing.map((p) => ({ id: base64url(p.credential_id), transports: p.transports })),
      userVerification: input.userVerification,
      attachment: input.attachment,
      attestation: input.attestation,
      challenge,
      timeoutMs: input.challengeTtlSeconds * 1000,
    });
    const passkeyId = newId();
    const details = await appendEvents(
      trx,
      { type: USER, id: user.id, owner: user.org_id },
      [
        {
          type: 'user.passkey.added',
          payload: {
            passkey_id: passkeyId,
            rp_id: input.rpId,
            authenticator_attachment: input.attachment ?? '',
            registration_code_id: input.registrationCodeId ?? null,
          },
        },
      ],
      creator,
    );
    await trx
      .insertInto('passkeys')
      .values({
        id: passkeyId,
        user_id: user.id,
        org_id: user.org_id,
        state: 'not_ready',
        rp_id: input.rpId,
        authenticator_attachment: input.attachment ?? '',
        registration_code_id: input.registrationCodeId ?? null,
        credential_id: null,
        public_key: null,
        algorithm: null,
        created_at: details.changeDate,
        updated_at: details.changeDate,
        last_used_at: null,
      })
      .execute();
    await trx
      .insertInto('challenges')
      .values({
        id: newId(),
        kind: 'registration',
        challenge: options.challenge,
        user_id: user.id,
        passkey_id: passkeyId,
        session_id: null,
        rp_id: input.rpId,
        user_verification: input.userVerification,
        registration_code_id: input.registrationCodeId ?? null,
        created_at: now,
        expires_at: new Date(now.getTime() + input.challengeTtlSeconds * 1000),
      })
      .execute();
    await touchUser(trx, user.id, details);
    return { passkeyId, options, details };
  });
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
 * transaction, consumes the challenge (DELETE ... RETURNING: one success per challenge, on any number
 * of instances), stores the credential (READY), marks a registration code used and appends
 * `user.passkey.verified`. A response that fails verification consumes nothing, so the user can retry.
 */
export async function completePasskeyRegistration(db: Kysely<Database>, input: CompleteRegistrationInput): Promise<ChangeDetails> {
  const now = new Date();
  const passkey = await db.selectFrom('passkeys').selectAll().where('id', '=', input.passkeyId).executeTakeFirst();
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

  const challenge = await db.selectFrom('challenges').selectAll().where('passkey_id', '=', passkey.id).where('kind', '=', 'registration').executeTakeFirst();
  if (!challenge || new Date(challenge.expires_at).getTime() <= now.getTime()) {
    await inTransaction(db, (trx) => dropStaleRegistrations(trx, input.userId, now));
    throw precondition('the registration has expired or was already completed; begin a new one with RegisterPasskey');
  }

  const credential = await verifyRegistration(response, {
    challenge: challenge.challenge,
    origins: input.origins,
    rpId: challenge.rp_id,
    requireUserVerification: challenge.user_verification === 'required',
  });

  try {
    return await inTransaction(db, async (trx) => {
      const consumed = await trx.deleteFrom('challenges').where('id', '=', challenge.id).where('expires_at', '>', now).returning('id').executeTakeFirst();
      if (!consumed) throw precondition('registration already completed or expired');
      let codeUsed: string | null = null;
      if (challenge.registration_code_id) {
        const used = await trx
          .updateTable('registration_codes')
          .set({ used_at: now })
          .where('id', '=', challenge.registration_code_id)
          .where('used_at', 'is', null)
          .where('expires_at', '>', now)
          .returning('id')
          .executeTakeFirst();
        // Another registration with the same code won meanwhile; without a token this one has no standing.
        if (!used && input.anonymous) throw unauthenticated(NEEDS_TOKEN);
        codeUsed = used?.id ?? null;
      }
      const user = await getUser(trx, input.userId);
      const details = await appendEvents(
        trx,
        { type: USER, id: user.id, owner: user.org_id },
        [
          {
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
              rp_id: challenge.rp_id,
              user_verified: credential.userVerified,
              registration_code_id: codeUsed,
            },
          },
        ],
        input.creator ?? `registration_code:${challenge.registration_code_id ?? ''}`,
      );
      const updated = await trx
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
          updated_at: details.changeDate,
        })
        .where('id', '=', passkey.id)
        .where('state', '=', 'not_ready')
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) throw precondition('registration already completed or expired');
      await touchUser(trx, user.id, details);
      return details;
    });
  } catch (err) {
    if (isUniqueViolation(err, 'passkeys_credential_id_key')) throw alreadyExists('this credential is already registered');
    throw err;
  }
}

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
