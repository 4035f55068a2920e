import { generateRegistrationOptions, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { Config } from '../config/config.js';
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
 * (resident key required), EdDSA/ES256/RS256, and the configured attestation conveyance.
 */
export async function creationOptions(input: CreationOptionsInput): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const options = await generateRegistrationOptions({
    rpName: input.rpName,
    rpID: input.rpId,
    userID: new Uint8Array(input.userHandle),
    userName: input.userName,
    userDisplayName: input.userDisplayName,
    challenge: new Uint8Array(input.challenge),
    timeout: input.timeoutMs,
    // SimpleWebAuthn's types omit "indirect"; it is set on the JSON below.
    attestationType: input.attestation === 'indirect' ? 'none' : input.attestation,
    excludeCredentials: input.exclude.map((c) => (c.transports.length ? { id: c.id, transports: c.transports } : { id: c.id })),
    authenticatorSelection: {
      residentKey: 'required',
      userVerification: input.userVerification,
      ...(input.attachment ? { authenticatorAttachment: input.attachment } : {}),
    },
    supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
  });
  options.attestation = input.attestation;
  return options;
}
