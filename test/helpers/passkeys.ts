/**
 * Test helpers for the passkey registration lifecycle: create a user, and register a passkey for it
 * end to end (RegisterPasskey → software authenticator → VerifyPasskeyRegistration) over a real client.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { UserService } from '../../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator, type SoftAuthenticator } from './authenticator.js';
import { bearer, clientFor, type Protocol } from './clients.js';

/** The origin the test servers accept by default (`PASSKEYD_ORIGINS` default). */
export const DEFAULT_ORIGIN = 'http://localhost:8080';

export interface RegisterPasskeyOptions {
  userId: string;
  /** A Bearer token (the user's own, or an admin's). Omit to register with `code` only. */
  token?: string;
  /** A registration code for token-less registration. */
  code?: { id: string; code: string };
  /**
   * The authenticator to register with (e.g. a chosen algorithm); a fresh ES256 one by default. Like a
   * real one, it refuses a second credential for a user it already holds one for (excludeCredentials).
   */
  authenticator?: SoftAuthenticator;
  /** Default 'connect'. */
  protocol?: Protocol;
  /** Origin written into clientDataJSON; default http://localhost:8080. */
  origin?: string;
  /** passkey_name; default "test passkey". */
  name?: string;
  /** RegisterPasskey's `domain` (one of the configured RP IDs); default empty (the first one). */
  domain?: string;
}

export interface RegisteredPasskey {
  passkeyId: string;
  authenticator: SoftAuthenticator;
  /** The user's sequence after verification (details.sequence). */
  sequence: bigint;
}

/** The `publicKey` member of a RegisterPasskey response's creation options Struct. */
export function creationOptionsOf(struct: JsonObject | undefined): PublicKeyCredentialCreationOptionsJSON {
  const pk = struct?.publicKey;
  if (!pk || typeof pk !== 'object' || Array.isArray(pk)) throw new Error('RegisterPasskey: response has no publicKey options');
  return pk as unknown as PublicKeyCredentialCreationOptionsJSON;
}

/** Registers and verifies a passkey for a user; throws the ConnectError of whichever call fails. */
export async function registerPasskey(baseUrl: string, opts: RegisterPasskeyOptions): Promise<RegisteredPasskey> {
  const users = clientFor(UserService, opts.protocol ?? 'connect', baseUrl);
  const callOptions = opts.token ? bearer(opts.token) : {};
  const authenticator = opts.authenticator ?? createSoftAuthenticator();
  const begun = await users.registerPasskey({ userId: opts.userId, code: opts.code, domain: opts.domain ?? '' }, callOptions);
  const options = creationOptionsOf(begun.publicKeyCredentialCreationOptions);
  const credential = await authenticator.register(options, { origin: opts.origin ?? DEFAULT_ORIGIN });
  const verified = await users.verifyPasskeyRegistration(
    {
      userId: opts.userId,
      passkeyId: begun.passkeyId,
      publicKeyCredential: credential as unknown as JsonObject,
      passkeyName: opts.name ?? 'test passkey',
    },
    callOptions,
  );
  return { passkeyId: begun.passkeyId, authenticator, sequence: verified.details?.sequence ?? 0n };
}

let counter = 0;

/** Adds a human user (in the admin token's organization) and returns its id. */
export async function createUser(baseUrl: string, adminToken: string, username?: string): Promise<string> {
  const users = clientFor(UserService, 'connect', baseUrl);
  const name = username ?? `user-${process.pid}-${Date.now().toString(36)}-${++counter}`;
  const { userId } = await users.addHumanUser(
    { username: name, profile: { givenName: 'Test', familyName: name }, email: { email: `${name}@example.com`, isVerified: true } },
    bearer(adminToken),
  );
  return userId;
}
