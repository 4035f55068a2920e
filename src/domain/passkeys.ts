import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { Config } from '../config/config.js';
import { denied, invalid, notFound, precondition, unauthenticated } from '../errors.js';
import { newId, randomBytesPooled } from '../ids.js';
import { appendEvents, lockAggregate } from '../store/events.js';
import type { ListResult, Page } from '../store/lists.js';
import * as store from '../store/passkeys.js';
import { findRegisteringUser, findRegistration, type RegisteringUser } from '../store/registration-reads.js';
import * as registrations from '../store/registrations.js';
import type { Database } from '../store/schema.js';
import { inTransaction, mappingDuplicates } from '../store/transaction.js';
import { findUser } from '../store/users.js';
import { base64url } from '../webauthn/base64url.js';
import { creationOptions, type AuthenticatorAttachment } from '../webauthn/creation-options.js';
import type { TrustedMetadata } from '../webauthn/metadata.js';
import { parseRegistrationResponse, verifyRegistration } from '../webauthn/registration-response.js';
import { event } from './events.js';
import { beyondLimit, DEFAULT_MAX_PASSKEYS, effective, policyOfOrg, refuseAuthenticator, refuseBeyondLimit, refuseWhenSso, type EffectivePolicy } from './login-policy.js';
import { CODE_REFUSED, isCodeUsable, readRegistrationCode, recordCodeFailure } from './registration-codes.js';
import type { ChangeDetails } from './types.js';
import { getUser } from './users.js';
import { completeKnownRegistration, countRegistration, DUPLICATE_CREDENTIAL, verifiedEvent, type BegunChallenges } from './registration-finish.js';

export type { PasskeyRow } from '../store/passkeys.js';

export interface BeginRegistrationInput {
  userId: string;
  rpId: string;
  rpName: string;
  /** The server's defaults, for what the user's organization's login policy leaves to them. */
  config: Config;
  attachment: AuthenticatorAttachment;
  challengeTtlSeconds: number;
  /** Set when a registration code authorized the request: the registration is bound to it. */
  registrationCodeId?: string | undefined;
  /** What the process remembers of the registrations it begins (one without a code is added). */
  begun?: BegunChallenges | undefined;
}

export interface BegunRegistration {
  passkeyId: string;
  options: PublicKeyCredentialCreationOptionsJSON;
  details: ChangeDetails;
}

/**
 * Begins a passkey registration: a NOT_READY passkey, its challenge (32 random bytes, stored with the
 * RP ID, user-verification requirement and expiry) and `user.passkey.added`. The usual case is one
 * statement that finds the user and its login policy as it writes ({@link registrations.beginRegistration});
 * when that statement finds something in the way (no such user, a machine user, SSO required, no room
 * for another passkey), the user is read and the refusal decided and worded here.
 */
export async function beginPasskeyRegistration(db: Kysely<Database>, input: BeginRegistrationInput, creator: string): Promise<BegunRegistration> {
  const now = new Date();
  const challenge = randomBytesPooled(32);
  const passkeyId = newId();
  const code = input.registrationCodeId ?? null;
  const added = event('user.passkey.added', { passkey_id: passkeyId, rp_id: input.rpId, authenticator_attachment: input.attachment ?? '', registration_code_id: code });
  const pending = {
    passkeyId,
    challengeId: newId(),
    userId: input.userId,
    rpId: input.rpId,
    attachment: input.attachment ?? '',
    registrationCodeId: code,
    challenge: challenge.toString('base64url'),
    now,
    expiresAt: new Date(now.getTime() + input.challengeTtlSeconds * 1000),
  };
  const begun = await registrations.beginRegistration(
    db,
    { ...pending, defaultUserVerification: input.config.userVerification, defaultMaxPasskeys: DEFAULT_MAX_PASSKEYS },
    [added],
    creator,
  );
  const remember = (orgId: string, userVerification: string) => {
    if (code !== null) return;
    const { userId, challengeId, challenge: text, rpId, expiresAt } = pending;
    input.begun?.set(passkeyId, { userId, orgId, challengeId, challenge: text, rpId, userVerification, expiresAt: expiresAt.getTime() });
  };
  if (begun) {
    countRegistration('beginOneStatement');
    const options = registrationOptions(input, begun.user, effective(begun.user.policy, input.config), begun.userVerification, challenge);
    remember(begun.user.org_id, begun.userVerification);
    return { passkeyId, options, details: begun.details };
  }
  countRegistration('beginRead');
  const user = await findRegisteringUser(db, input.userId);
  if (!user) throw notFound(`user ${input.userId}`);
  if (user.type === 'machine') throw precondition(`user ${input.userId} is a machine user: machine users have no passkeys (they use keys, tokens or secrets)`);
  const policy = effective(user.policy, input.config);
  refuseWhenSso(policy);
  refuseBeyondLimit(policy, user.credentials.length);
  // Asked for REQUIRED or PREFERRED only: the stored requirement decides what verification demands.
  const userVerification = policy.userVerification;
  const options = registrationOptions(input, user, policy, userVerification, challenge);
  const details = await registrations.insertPendingRegistration(db, { ...pending, orgId: user.org_id, userVerification }, [added], creator, () => notFound(`user ${input.userId}`));
  remember(user.org_id, userVerification);
  return { passkeyId, options, details };
}

/** The creation options for a user, asking for the user verification the challenge was stored with. */
function registrationOptions(
  input: BeginRegistrationInput,
  user: RegisteringUser,
  policy: EffectivePolicy,
  userVerification: Config['userVerification'],
  challenge: Uint8Array,
): PublicKeyCredentialCreationOptionsJSON {
  return creationOptions({
    rpId: input.rpId,
    rpName: input.rpName,
    userHandle: user.webauthn_user_handle,
    userName: user.username,
    userDisplayName: user.display_name,
    exclude: user.credentials,
    userVerification,
    attachment: input.attachment,
    attestation: policy.attestation,
    challenge,
    timeoutMs: input.challengeTtlSeconds * 1000,
  });
}

export interface CompleteRegistrationInput {
  userId: string;
  passkeyId: string;
  /** The browser's PublicKeyCredential JSON, as received. */
  credential: unknown;
  name: string;
  origins: string[];
  /** The server's defaults, for what the login policy leaves to them. */
  config: Config;
  /** What a policy's require_trusted_attestation checks against. */
  metadata: TrustedMetadata;
  /**
   * The caller has no token: the registration must have been begun with a registration code for this
   * user that is still valid. (With a token, the permission interceptor has already decided.)
   */
  anonymous: boolean;
  /** The caller's subject; undefined for a token-less caller. */
  creator: string | undefined;
  /** What the process remembers of the registrations it began: a caller with a token completes one with no read. */
  begun?: BegunChallenges | undefined;
}

const NEEDS_TOKEN = 'this call needs a Bearer access token, or a registration begun with a valid registration code';

/**
 * Completes a registration: verifies the response against the pending challenge, then, in one
 * statement, consumes the challenge (DELETE ... RETURNING: one success per challenge, on any number
 * of instances), stores the credential (READY), marks a registration code used and appends
 * `user.passkey.verified`. A response that fails verification consumes nothing, so the user can retry.
 */
export async function completePasskeyRegistration(db: Kysely<Database>, input: CompleteRegistrationInput): Promise<ChangeDetails> {
  const remembered = input.begun?.get(input.passkeyId);
  // Only the call that can use it takes the entry: a call naming another user (or none) cannot evict it.
  if (remembered && input.creator !== undefined && !input.anonymous && remembered.userId === input.userId) {
    input.begun!.delete(input.passkeyId);
    if (remembered.expiresAt > Date.now()) {
      const { passkeyId, credential, name, origins, creator } = input;
      const done = await completeKnownRegistration(db, { passkeyId, credential, name, origins, creator }, remembered);
      if (done) {
        countRegistration('completeKnown');
        return done;
      }
    }
  }
  countRegistration('completeRead');
  const now = new Date();
  const passkey = await findRegistration(db, input.passkeyId);
  const owned = passkey !== undefined && passkey.user_id === input.userId;
  if (input.anonymous) {
    // Say nothing about passkeys to a caller without a token unless it holds the registration's code.
    if (!owned || !passkey.registration_code_id) throw unauthenticated(NEEDS_TOKEN);
    const code = await readRegistrationCode(db, passkey.registration_code_id);
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
    await registrations.dropStaleRegistrations(db, input.userId, now);
    throw precondition('the registration has expired or was already completed; begin a new one with RegisterPasskey');
  }
  const challenge = { id: passkey.challenge_id, rpId: passkey.challenge_rp_id!, codeId: passkey.challenge_code_id };

  const credential = await verifyRegistration(response, {
    challenge: passkey.challenge!,
    origins: input.origins,
    rpId: challenge.rpId,
    requireUserVerification: passkey.user_verification === 'required',
  });
  // The policy as it is now (it may have changed since the registration began), read with the registration.
  const policy = effective(passkey.policy, input.config);
  refuseWhenSso(policy);
  refuseAuthenticator(policy, credential.aaguid);
  if (policy.require_trusted_attestation) input.metadata.checkTrusted(credential);
  refuseBeyondLimit(policy, passkey.ready_count);

  /** `withCode`: the event names the code as used, and the statement refuses if it could not be. */
  const write = (withCode: boolean) => {
    const codeId = withCode ? challenge.codeId : null;
    const verified = verifiedEvent(passkey.id, input.name, credential, challenge.rpId, codeId);
    const gone = () => precondition('registration already completed or expired');
    return registrations.storeVerifiedCredential(
      db,
      { userId: input.userId, orgId: passkey.org_id, passkeyId: passkey.id, challengeId: challenge.id, codeId, now, maxReady: policy.max_passkeys_per_user },
      { name: input.name, ...credential },
      [verified],
      input.creator ?? `registration_code:${challenge.codeId ?? ''}`,
      {
        gone,
        codeTaken: () => new CodeTaken(),
        userGone: () => notFound(`user ${input.userId}`),
        // Another registration of this user was verified meanwhile and reached the limit.
        full: () => beyondLimit(policy, policy.max_passkeys_per_user),
      },
    );
  };

  const run = async () => {
    try {
      return await write(challenge.codeId !== null);
    } catch (err) {
      // Another registration used the code meanwhile: without a token this one has no standing; with
      // one, it completes without the code.
      if (!(err instanceof CodeTaken)) throw err;
      if (input.anonymous) throw unauthenticated(NEEDS_TOKEN);
      return write(false);
    }
  };
  return mappingDuplicates(run, DUPLICATE_CREDENTIAL);
}

/** The registration code a registration was begun with was used by another one meanwhile. */
class CodeTaken extends Error {}

/** Lists a user's READY passkeys, oldest first with `asc`, with the total and the organization's `sso_required`. */
export async function listPasskeys(db: Kysely<Database>, config: Config, userId: string, page: Page): Promise<ListResult<store.PasskeyRow> & { ssoRequired: boolean }> {
  const user = await getUser(db, userId);
  const [list, policy] = await Promise.all([store.listReadyPasskeys(db, userId, page), policyOfOrg(db, config, user.org_id)]);
  return { ...list, ssoRequired: policy.sso_required };
}

/** Renames a READY passkey (`user.passkey.renamed`). */
export async function renamePasskey(db: Kysely<Database>, userId: string, passkeyId: string, name: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    const owner = await lockAggregate(trx, 'user', userId);
    const user = owner === undefined ? undefined : await findUser(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    const passkey = await store.findReadyPasskey(trx, userId, passkeyId);
    if (!passkey) throw notFound(`passkey ${passkeyId}`);
    const details = await appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [event('user.passkey.renamed', { passkey_id: passkey.id, name })], creator);
    await store.renamePasskeyRow(trx, passkey.id, name, details.changeDate);
    return details;
  });
}

export interface RemoveOptions {
  /** Remove even the user's last passkey (admins; accepted for ZITADEL-less clients, no longer needed). */
  force: boolean;
  /** The caller is the user: self-service removal keeps the last passkey (lockout protection). */
  self: boolean;
  /** The caller's admin roles: forcing needs an instance admin or an org admin of the user's organization. */
  admin: { instanceAdmin: boolean; orgAdminOf: string | undefined };
}

/**
 * Removes a READY passkey (`user.passkey.removed`). Passkeys are passkeyd's only login method, so a
 * user removing their own last one is refused; an admin of the user's organization may remove it. The user's aggregate row is locked before the
 * count, so two concurrent removals cannot each leave the other as "not the last one".
 */
export async function removePasskey(db: Kysely<Database>, userId: string, passkeyId: string, options: RemoveOptions, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    // The aggregate's row is the lock every change to this user takes first (the append); taking it
    // before counting means a concurrent removal has committed (or not begun) when we count.
    const owner = await lockAggregate(trx, 'user', userId);
    const user = owner === undefined ? undefined : await findUser(trx, userId);
    if (!user) throw notFound(`user ${userId}`);
    if (options.force && !options.admin.instanceAdmin && options.admin.orgAdminOf !== user.org_id) {
      throw denied("only an admin of the user's organization or an instance admin may force the removal of a passkey");
    }
    const passkey = await store.findReadyPasskey(trx, userId, passkeyId);
    if (!passkey) throw notFound(`passkey ${passkeyId}`);
    // The user's row counts its READY passkeys (kept under the same lock by every statement that changes them).
    const ready = user.ready_passkeys;
    // Lockout protection is for self-service: an admin of the user's organization removing someone
    // else's last passkey can hand out a registration link, as ZITADEL's reset flow does.
    const adminOfUser = options.admin.instanceAdmin || options.admin.orgAdminOf === user.org_id;
    if (ready <= 1 && !options.force && (options.self || !adminOfUser)) {
      throw precondition("this is the user's only passkey; removing it would lock them out (an admin of the user's organization can remove it)");
    }
    const removed = event('user.passkey.removed', {
      passkey_id: passkey.id,
      credential_id: passkey.credential_id ? base64url(passkey.credential_id) : '',
      forced: ready <= 1,
      removed_by: creator,
      self_service: options.self,
    });
    const details = await appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [removed], creator);
    await store.deletePasskeyRow(trx, passkey.id);
    return details;
  });
}
