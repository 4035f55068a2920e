import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { Config } from '../config/config.js';
import { base64url } from './base64url.js';
import { SUPPORTED_ALGORITHMS } from './relying-party.js';

/** Which kind of authenticator the caller asks the browser for; `undefined` lets the browser offer all. */
export type AuthenticatorAttachment = 'platform' | 'cross-platform' | undefined;

export interface CreationOptionsInput {
  rpId: string;
  rpName: string;
  /** The user's random WebAuthn user handle: never the user id or anything personal. */
  userHandle: Uint8Array;
  userName: string;
  userDisplayName: string;
  /** Credentials the user already has, so the authenticator refuses to register one twice. */
  exclude: { id: string; transports: string[] }[];
  userVerification: Config['userVerification'];
  attachment: AuthenticatorAttachment;
  attestation: Config['attestation'];
  /** The fresh challenge (32 random bytes). */
  challenge: Uint8Array;
  timeoutMs: number;
}

/**
 * PublicKeyCredentialCreationOptionsJSON for navigator.credentials.create(): a discoverable credential
 * (resident key required), EdDSA/ES256/RS256, and the configured attestation conveyance. The same
 * members, in the same order, as SimpleWebAuthn's generateRegistrationOptions gives for these inputs
 * (test/creation-options.test.ts compares the two), built here because that function is async and
 * re-encodes the challenge, the user handle and every excluded id through a JavaScript base64 codec on
 * each RegisterPasskey. The excluded ids are already unpadded base64url.
 */
export function creationOptions(input: CreationOptionsInput): PublicKeyCredentialCreationOptionsJSON {
  return {
    challenge: base64url(input.challenge),
    rp: { name: input.rpName, id: input.rpId },
    user: { id: base64url(input.userHandle), name: input.userName, displayName: input.userDisplayName },
    pubKeyCredParams: SUPPORTED_ALGORITHMS.map((alg) => ({ alg, type: 'public-key' as const })),
    timeout: input.timeoutMs,
    // "indirect" is a valid conveyance that SimpleWebAuthn's types leave out.
    attestation: input.attestation as PublicKeyCredentialCreationOptionsJSON['attestation'],
    excludeCredentials: input.exclude.map((c) =>
      c.transports.length ? { id: c.id, transports: c.transports, type: 'public-key' as const } : { id: c.id, type: 'public-key' as const },
    ),
    authenticatorSelection: {
      residentKey: 'required',
      userVerification: input.userVerification,
      ...(input.attachment ? { authenticatorAttachment: input.attachment } : {}),
      requireResidentKey: true,
    },
    extensions: { credProps: true },
    hints: [],
  };
}
