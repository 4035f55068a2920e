import { verifyAuthenticationResponse, type AuthenticationResponseJSON } from '@simplewebauthn/server';
import { invalid, unauthenticated } from '../errors.js';
import { base64url as encodeBase64url } from './base64url.js';

// Unpadded or padded base64url, as browsers and libraries send it.
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const FIELD = 'checks.web_auth_n.credential_assertion_data';
/** rpIdHash (32) + flags (1) + signCount (4): the smallest authenticator data there is. */
export const MIN_AUTHENTICATOR_DATA = 37;

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function base64url(obj: JsonObject, key: string, path: string): string {
  const v = obj[key];
  if (v === undefined || v === null) throw invalid(`${FIELD}.${path}: is required`);
  if (typeof v !== 'string' || v.length === 0) throw invalid(`${FIELD}.${path}: must be a non-empty base64url string`);
  if (!BASE64URL.test(v) || v.length % 4 === 1) throw invalid(`${FIELD}.${path}: is not valid base64url`);
  return v;
}

/** A parsed assertion: the JSON SimpleWebAuthn verifies, plus the decoded parts the caller needs first. */
export interface ParsedAssertion {
  json: AuthenticationResponseJSON;
  /** The raw credential id (the passkey lookup key). */
  credentialId: Buffer;
  /** response.userHandle decoded, when the authenticator sent one (discoverable credentials do). */
  userHandle: Buffer | undefined;
  /** The challenge member of clientDataJSON as sent (a login is refused unless it is the session's). */
  challenge: string;
}

/**
 * Checks that a Struct holds the JSON of a browser's assertion (AuthenticationResponseJSON) and that
 * its parts decode (clientDataJSON is a JSON object, authenticator data is long enough), so a
 * malformed request is INVALID_ARGUMENT naming the member. Whether it verifies is decided later.
 */
export function parseAssertion(json: unknown): ParsedAssertion {
  if (!isObject(json)) throw invalid(`${FIELD}: must be a JSON object`);
  const id = base64url(json, 'id', 'id');
  const rawId = base64url(json, 'rawId', 'rawId');
  const credentialId = Buffer.from(id, 'base64url');
  if (!credentialId.equals(Buffer.from(rawId, 'base64url'))) throw invalid(`${FIELD}.rawId: must be the same credential id as id`);
  if (credentialId.length === 0 || credentialId.length > 1023) throw invalid(`${FIELD}.id: must be 1 to 1023 bytes`);
  if (json.type !== 'public-key') throw invalid(`${FIELD}.type: must be "public-key"`);
  const response = json.response;
  if (!isObject(response)) throw invalid(`${FIELD}.response: must be an object`);
  const clientDataJSON = base64url(response, 'clientDataJSON', 'response.clientDataJSON');
  const authenticatorData = base64url(response, 'authenticatorData', 'response.authenticatorData');
  const signature = base64url(response, 'signature', 'response.signature');
  let userHandle: string | undefined;
  if (response.userHandle !== undefined && response.userHandle !== null && response.userHandle !== '') {
    userHandle = base64url(response, 'userHandle', 'response.userHandle');
  }
  let clientData: unknown;
  try {
    clientData = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8'));
  } catch {
    throw invalid(`${FIELD}.response.clientDataJSON: is not JSON`);
  }
  if (!isObject(clientData) || typeof clientData.type !== 'string' || typeof clientData.challenge !== 'string' || typeof clientData.origin !== 'string') {
    throw invalid(`${FIELD}.response.clientDataJSON: must hold type, challenge and origin`);
  }
  if (Buffer.from(authenticatorData, 'base64url').length < MIN_AUTHENTICATOR_DATA) {
    throw invalid(`${FIELD}.response.authenticatorData: is shorter than ${MIN_AUTHENTICATOR_DATA} bytes`);
  }
  const attachment = json.authenticatorAttachment;
  const extensions = json.clientExtensionResults;
  return {
    json: {
      id,
      rawId,
      type: 'public-key',
      response: { clientDataJSON, authenticatorData, signature, ...(userHandle ? { userHandle } : {}) },
      ...(attachment === 'platform' || attachment === 'cross-platform' ? { authenticatorAttachment: attachment } : {}),
      clientExtensionResults: (isObject(extensions) ? extensions : {}) as AuthenticationResponseJSON['clientExtensionResults'],
    },
    credentialId,
    userHandle: userHandle === undefined ? undefined : Buffer.from(userHandle, 'base64url'),
    challenge: clientData.challenge,
  };
}

/** What an assertion must match. */
export interface AssertionExpectation {
  challenge: string;
  origins: string[];
  /** The RP ID stored with the credential (and the challenge's). */
  rpId: string;
  requireUserVerification: boolean;
  /** COSE public key as stored at registration. */
  publicKey: Uint8Array;
}

/** What a verified assertion says about the authenticator. */
export interface VerifiedAssertion {
  signCount: number;
  userVerified: boolean;
  backedUp: boolean;
}

/**
 * Verifies an assertion with SimpleWebAuthn: client data type, challenge, origin, RP ID hash, user
 * presence (and verification when required) and the signature. The sign counter is passed as 0 so
 * the counter policy (reject or log) stays ours. Any refusal is UNAUTHENTICATED: the input decoded,
 * but it does not prove possession of this credential for this ceremony.
 */
export async function verifyAssertion(parsed: ParsedAssertion, expected: AssertionExpectation): Promise<VerifiedAssertion> {
  let result: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    result = await verifyAuthenticationResponse({
      response: parsed.json,
      expectedChallenge: expected.challenge,
      expectedOrigin: expected.origins,
      expectedRPID: expected.rpId,
      expectedType: 'webauthn.get',
      requireUserVerification: expected.requireUserVerification,
      credential: { id: parsed.json.id, publicKey: new Uint8Array(expected.publicKey), counter: 0 },
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw unauthenticated(`assertion refused: ${message.slice(0, 300)}`);
  }
  if (!result.verified) throw unauthenticated('assertion refused: the signature does not verify');
  const info = result.authenticationInfo;
  return { signCount: info.newCounter, userVerified: info.userVerified, backedUp: info.credentialBackedUp };
}

/**
 * PublicKeyCredentialRequestOptionsJSON as a plain JSON object (a Struct): no undefined members. Built
 * here rather than by SimpleWebAuthn's generateAuthenticationOptions, which is async and re-encodes the
 * challenge and every id through a JavaScript base64 codec on each CreateSession (it showed in the
 * login's profile); the ids are already unpadded base64url (stored, or derived by pseudo-credentials).
 */
export function requestOptions(input: {
  rpId: string;
  challenge: Uint8Array;
  allow: { id: string; transports: string[] }[];
  userVerification: 'required' | 'preferred' | 'discouraged';
  timeoutMs: number;
}): JsonObject {
  return {
    challenge: encodeBase64url(input.challenge),
    timeout: input.timeoutMs,
    rpId: input.rpId,
    allowCredentials: input.allow.map((c) => (c.transports.length ? { id: c.id, type: 'public-key', transports: [...c.transports] } : { id: c.id, type: 'public-key' })),
    userVerification: input.userVerification,
  };
}
