import { randomBytes } from 'node:crypto';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { alreadyExists, denied, precondition } from '../errors.js';
import { newId } from '../ids.js';
import { appendEvents } from '../store/events.js';
import { isActiveOrg } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { consumeSignUp, findLiveSignUp, insertSignedInSession, insertSignedUpPasskey, insertSignUp } from '../store/signups.js';
import { inTransaction, mappingDuplicates } from '../store/transaction.js';
import { insertUser, USERNAME_UNIQUE, usernameTaken } from '../store/users.js';
import { creationOptions } from '../webauthn/creation-options.js';
import type { TrustedMetadata } from '../webauthn/metadata.js';
import { parseRegistrationResponse, verifyRegistration } from '../webauthn/registration-response.js';
import { defaultOrgId } from './bootstrap.js';
import { event } from './events.js';
import { DUPLICATE_CREDENTIAL, verifiedEvent } from './registration-finish.js';
import { policyOfOrg, refuseAuthenticator, type EffectivePolicy } from './login-policy.js';
import { hashSessionToken, sessionAggregate } from './sessions.js';
import type { ChangeDetails } from './types.js';

const CLOSED = 'self-service sign-up is not open for this organization (login policy allow_self_registration)';
const taken = (username: string) => alreadyExists(`username "${username}" is already taken`);

/** Sign-up is open: the policy allows it, and the organization does not sign in through SSO instead. */
function isOpen(policy: EffectivePolicy): boolean {
  return policy.allow_self_registration && !policy.sso_required;
}

interface StartSignUpInput {
  username: string;
  email: string | undefined;
  orgId: string | undefined;
  rpId: string;
}

interface FinishSignUpInput {
  signUpId: string;
  /** The browser's PublicKeyCredential JSON, as received. */
  credential: unknown;
  name: string;
  origins: string[];
}

interface FinishedSignUp {
  userId: string;
  passkeyId: string;
  details: ChangeDetails;
  sessionId: string;
  sessionToken: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
}

/** Self-service sign-up with a passkey (StartSignUp / FinishSignUp), where the login policy allows it. */
export interface SignUp {
  isOpen(orgId: string | undefined): Promise<boolean>;
  start(input: StartSignUpInput): Promise<{ signUpId: string; options: PublicKeyCredentialCreationOptionsJSON }>;
  finish(input: FinishSignUpInput): Promise<FinishedSignUp>;
}

/** Builds the sign-up flow on the database, configuration and token service. */
export function createSignUp({ db, config, tokens, metadata }: { db: Kysely<Database>; config: Config; tokens: TokenService; metadata: TrustedMetadata }): SignUp {
  /** The organization's policy when it takes sign-ups; an unknown or inactive one is as closed as a closed one. */
  async function openPolicy(orgId: string | undefined): Promise<{ orgId: string; policy: EffectivePolicy } | undefined> {
    const id = orgId ?? (await defaultOrgId(db));
    if (orgId !== undefined && !(await isActiveOrg(db, id))) return undefined;
    const policy = await policyOfOrg(db, config, id);
    return isOpen(policy) ? { orgId: id, policy } : undefined;
  }

  return {
    async isOpen(orgId) {
      return (await openPolicy(orgId)) !== undefined;
    },

    async start(input) {
      const open = await openPolicy(input.orgId);
      if (!open) throw denied(CLOSED);
      if (await usernameTaken(db, input.username)) throw taken(input.username);
      const now = new Date();
      const handle = randomBytes(32);
      const options = creationOptions({
        rpId: input.rpId,
        rpName: config.rpName,
        userHandle: handle,
        userName: input.username,
        userDisplayName: input.username,
        exclude: [],
        userVerification: open.policy.userVerification,
        attachment: undefined,
        attestation: open.policy.attestation,
        challenge: randomBytes(32),
        timeoutMs: config.challengeTtlSeconds * 1000,
      });
      const id = newId();
      await insertSignUp(db, {
        id,
        org_id: open.orgId,
        username: input.username,
        email: input.email ?? '',
        webauthn_user_handle: handle,
        challenge: options.challenge,
        rp_id: input.rpId,
        user_verification: open.policy.userVerification,
        created_at: now,
        expires_at: new Date(now.getTime() + config.challengeTtlSeconds * 1000),
      });
      return { signUpId: id, options };
    },

    async finish(input) {
      const now = new Date();
      const gone = () => precondition('the sign-up has expired or was already completed; start again with StartSignUp');
      const pending = await findLiveSignUp(db, input.signUpId, now);
      if (!pending) throw gone();
      // The policy as it is now: closing sign-up also stops the ones under way.
      const policy = await policyOfOrg(db, config, pending.org_id);
      if (!isOpen(policy)) throw denied(CLOSED);
      const credential = await verifyRegistration(parseRegistrationResponse(input.credential), {
        challenge: pending.challenge,
        origins: input.origins,
        rpId: pending.rp_id,
        requireUserVerification: pending.user_verification === 'required',
      });
      refuseAuthenticator(policy, credential.aaguid);
      if (policy.require_trusted_attestation) metadata.checkTrusted(credential);

      const userId = newId();
      const passkeyId = newId();
      const sessionId = newId();
      const sessionToken = randomBytes(32).toString('base64url');
      const expiresAt = new Date(now.getTime() + config.sessionTtlSeconds * 1000);
      const username = pending.username;
      const sessionOwner = await defaultOrgId(db);
      const run = () =>
        inTransaction(db, async (trx) => {
          if (!(await consumeSignUp(trx, pending.id, now))) throw gone();
          if (await usernameTaken(trx, username)) throw taken(username);
          const human = event('user.human.added', {
            username,
            given_name: '',
            family_name: '',
            nick_name: '',
            display_name: username,
            preferred_language: '',
            email: pending.email,
            email_verified: false,
          });
          const added = event('user.passkey.added', {
            passkey_id: passkeyId,
            rp_id: pending.rp_id,
            authenticator_attachment: credential.authenticatorAttachment,
            registration_code_id: null,
          });
          const verified = verifiedEvent(passkeyId, input.name, credential, pending.rp_id, null);
          const details = await appendEvents(trx, { type: 'user', id: userId, owner: pending.org_id }, [human, added, verified], userId);
          const { username: _u, email: _e, email_verified: _v, ...profile } = human.payload;
          await insertUser(trx, {
            id: userId,
            org_id: pending.org_id,
            username,
            username_lower: username.toLowerCase(),
            email: pending.email,
            email_verified: false,
            ...profile,
            state: 'active',
            webauthn_user_handle: pending.webauthn_user_handle,
            // Born with the one READY passkey inserted next.
            ready_passkeys: 1,
            sequence: details.sequence,
            created_at: details.creationDate,
            updated_at: details.changeDate,
          });
          await insertSignedUpPasskey(trx, { id: passkeyId, userId, orgId: pending.org_id, rpId: pending.rp_id }, { name: input.name, ...credential }, details);
          // Sessions are owned by the default organization, as CreateSession's are.
          const sessionDetails = await appendEvents(
            trx,
            sessionAggregate(sessionId, sessionOwner),
            [
              event('session.added', { usernameless: false, expires_at: expiresAt.toISOString(), rp_id: pending.rp_id, user_verification: pending.user_verification }),
              event('session.webauthn.checked', { user_id: userId, passkey_id: passkeyId, user_verified: credential.userVerified }),
            ],
            userId,
            { created: true },
          );
          await insertSignedInSession(
            trx,
            { id: sessionId, tokenHash: hashSessionToken(sessionToken), userId, orgId: pending.org_id, passkeyId, userVerified: credential.userVerified, at: now, expiresAt },
            sessionDetails,
          );
          return details;
        });
      const details = await mappingDuplicates(run, { [USERNAME_UNIQUE]: () => taken(username), ...DUPLICATE_CREDENTIAL });
      const issued = await tokens.issue({ subject: userId, orgId: pending.org_id, sessionId, ttlSeconds: config.tokenTtlSeconds, notAfter: expiresAt });
      return { userId, passkeyId, details, sessionId, sessionToken, accessToken: issued.token, accessTokenExpiresAt: issued.expiresAt };
    },
  };
}
