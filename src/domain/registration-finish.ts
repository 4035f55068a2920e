import type { Kysely } from 'kysely';
import { LRUCache } from 'lru-cache';
import { alreadyExists } from '../errors.js';
import * as store from '../store/passkeys.js';
import * as registrations from '../store/registrations.js';
import type { Database } from '../store/schema.js';
import { mappingDuplicates } from '../store/transaction.js';
import { parseRegistrationResponse, verifyRegistration, type VerifiedCredential } from '../webauthn/registration-response.js';
import { event } from './events.js';
import { DEFAULT_MAX_PASSKEYS } from './login-policy.js';
import { orReadFirst, readFirst } from './read-first.js';
import type { ChangeDetails } from './types.js';

/**
 * What a process remembers of a registration it began (without a registration code), so that its
 * VerifyPasskeyRegistration needs no read: the challenge and what it was stored with, none of which
 * changes while the challenge lives. What can change (the passkey, the challenge being used, the user,
 * the login policy) the completing statement checks against the rows as they are.
 */
export interface BegunChallenge {
  userId: string;
  orgId: string;
  challengeId: string;
  challenge: string;
  rpId: string;
  userVerification: string;
  /** When the challenge expires (ms since the epoch). */
  expiresAt: number;
}

/** Registrations this process began, by passkey id. */
export type BegunChallenges = LRUCache<string, BegunChallenge>;

/** Filled by RegisterPasskey, emptied by VerifyPasskeyRegistration; an entry is a few hundred bytes. */
export function begunChallenges(): BegunChallenges {
  return new LRUCache<string, BegunChallenge>({ max: 10_000 });
}

/** How registration calls went in this process (for tests): RegisterPasskey in one statement or read first, VerifyPasskeyRegistration with no read or read first. */
const ways = { beginOneStatement: 0, beginRead: 0, completeKnown: 0, completeRead: 0 };
export type RegistrationWay = keyof typeof ways;

export function registrationStats(): Record<RegistrationWay, number> {
  return { ...ways };
}

export function countRegistration(way: RegistrationWay): void {
  ways[way]++;
}

/** A credential registered twice meets the passkeys' unique key: ALREADY_EXISTS (for `mappingDuplicates`). */
export const DUPLICATE_CREDENTIAL = { [store.CREDENTIAL_UNIQUE]: () => alreadyExists('this credential is already registered') };

/** The `user.passkey.verified` event of a verified credential. */
export function verifiedEvent(passkeyId: string, name: string, credential: VerifiedCredential, rpId: string, codeId: string | null) {
  return event('user.passkey.verified', {
    passkey_id: passkeyId,
    name,
    credential_id: credential.credentialIdText,
    aaguid: credential.aaguid,
    authenticator_name: credential.authenticatorName,
    algorithm: credential.algorithm,
    attestation_format: credential.attestationFormat,
    backup_eligible: credential.backupEligible,
    backed_up: credential.backedUp,
    transports: credential.transports,
    rp_id: rpId,
    user_verified: credential.userVerified,
    registration_code_id: codeId,
  });
}

export interface KnownCompletion {
  passkeyId: string;
  credential: unknown;
  name: string;
  origins: string[];
  creator: string;
}

/**
 * Completes a registration this process began, with no read: verifies the response against the
 * remembered challenge, then runs the completing statement with the login policy checked in it.
 * Undefined when anything did not go through (a response that does not verify, a challenge used or
 * expired, a policy that refuses or needs the metadata, a user gone): the caller then reads and decides,
 * and words the answer, as it always did. A credential registered twice is ALREADY_EXISTS as there.
 */
export async function completeKnownRegistration(db: Kysely<Database>, c: KnownCompletion, begun: BegunChallenge): Promise<ChangeDetails | undefined> {
  let credential: VerifiedCredential;
  try {
    credential = await verifyRegistration(parseRegistrationResponse(c.credential), {
      challenge: begun.challenge,
      origins: c.origins,
      rpId: begun.rpId,
      requireUserVerification: begun.userVerification === 'required',
    });
  } catch {
    return undefined;
  }
  const write = () =>
    registrations.storeVerifiedCredential(
      db,
      {
        userId: begun.userId,
        orgId: begun.orgId,
        passkeyId: c.passkeyId,
        challengeId: begun.challengeId,
        codeId: null,
        now: new Date(),
        maxReady: DEFAULT_MAX_PASSKEYS,
        checkPolicy: true,
      },
      { name: c.name, ...credential },
      [verifiedEvent(c.passkeyId, c.name, credential, begun.rpId, null)],
      c.creator,
      { gone: readFirst, codeTaken: readFirst, userGone: readFirst, full: readFirst, policy: readFirst },
    );
  return orReadFirst(() => mappingDuplicates(write, DUPLICATE_CREDENTIAL));
}
