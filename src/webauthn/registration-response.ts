import { verifyRegistrationResponse, type RegistrationResponseJSON } from '@simplewebauthn/server';
import { cose, decodeCredentialPublicKey, isoCBOR } from '@simplewebauthn/server/helpers';
import { invalid } from '../errors.js';
import { authenticatorNameOf } from './authenticator-names.js';
import { cborItemLength } from './cbor-length.js';
import { verifyNoneRegistration, type RegisteredCredential } from './none-attestation.js';
import { SUPPORTED_ALGORITHMS } from './relying-party.js';

// Unpadded or padded base64url; some authenticators' JSON (and old browsers) keep the padding.
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const MAX_TRANSPORTS = 16;
const MAX_TRANSPORT_LENGTH = 32;
// AuthenticatorTransport values ("usb", "smart-card", "hybrid", ...) and any future one are lower-case
// tokens; anything else (a NUL character, which the database cannot store, among them) is refused.
const TRANSPORT_NAME = new RegExp(`^[a-z0-9-]{1,${MAX_TRANSPORT_LENGTH}}$`);

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function requiredBase64url(obj: JsonObject, key: string, path: string): string {
  const v = obj[key];
  if (v === undefined) throw invalid(`public_key_credential.${path}: is required`);
  if (typeof v !== 'string') throw invalid(`public_key_credential.${path}: must be a base64url string`);
  if (v.length === 0) throw invalid(`public_key_credential.${path}: must not be empty`);
  if (!BASE64URL.test(v) || v.length % 4 === 1) throw invalid(`public_key_credential.${path}: is not valid base64url`);
  return v;
}

// Browsers may send null for an absent optional member; anything else of the wrong type is refused.
function optional<T>(obj: JsonObject, key: string, path: string, check: (v: unknown) => v is T, what: string): T | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!check(v)) throw invalid(`public_key_credential.${path}: must be ${what}`);
  return v;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/**
 * Checks that a Struct holds the JSON of a browser's registration PublicKeyCredential
 * (RegistrationResponseJSON) before any of it is decoded, so a malformed request is INVALID_ARGUMENT
 * with a message naming the member, never a crash deeper down.
 */
export function parseRegistrationResponse(json: unknown): RegistrationResponseJSON {
  if (!isObject(json)) throw invalid('public_key_credential: must be a JSON object');
  const id = requiredBase64url(json, 'id', 'id');
  const rawId = requiredBase64url(json, 'rawId', 'rawId');
  if (json.type === undefined) throw invalid('public_key_credential.type: is required');
  if (json.type !== 'public-key') throw invalid('public_key_credential.type: must be "public-key"');
  const response = json.response;
  if (response === undefined) throw invalid('public_key_credential.response: is required');
  if (!isObject(response)) throw invalid('public_key_credential.response: must be an object');
  const clientDataJSON = requiredBase64url(response, 'clientDataJSON', 'response.clientDataJSON');
  const attestationObject = requiredBase64url(response, 'attestationObject', 'response.attestationObject');
  const transports = optional(response, 'transports', 'response.transports', isStringList, 'a list of strings');
  if (transports && (transports.length > MAX_TRANSPORTS || transports.some((t) => !TRANSPORT_NAME.test(t)))) {
    throw invalid(`public_key_credential.response.transports: at most ${MAX_TRANSPORTS} names of 1 to ${MAX_TRANSPORT_LENGTH} lower-case letters, digits and hyphens`);
  }
  const authenticatorData = optional(response, 'authenticatorData', 'response.authenticatorData', isString, 'a base64url string');
  const publicKey = optional(response, 'publicKey', 'response.publicKey', isString, 'a base64url string');
  const publicKeyAlgorithm = optional(response, 'publicKeyAlgorithm', 'response.publicKeyAlgorithm', isNumber, 'an integer');
  const attachment = optional(json, 'authenticatorAttachment', 'authenticatorAttachment', isString, 'a string');
  if (attachment !== undefined && attachment !== 'platform' && attachment !== 'cross-platform') {
    throw invalid('public_key_credential.authenticatorAttachment: must be "platform" or "cross-platform"');
  }
  const extensions = optional(json, 'clientExtensionResults', 'clientExtensionResults', isObject, 'an object');
  return {
    id,
    rawId,
    type: 'public-key',
    response: {
      clientDataJSON,
      attestationObject,
      ...(transports ? { transports: [...new Set(transports)] } : {}),
      ...(authenticatorData !== undefined ? { authenticatorData } : {}),
      ...(publicKey !== undefined ? { publicKey } : {}),
      ...(publicKeyAlgorithm !== undefined ? { publicKeyAlgorithm } : {}),
    },
    ...(attachment ? { authenticatorAttachment: attachment } : {}),
    clientExtensionResults: (extensions ?? {}) as RegistrationResponseJSON['clientExtensionResults'],
  };
}

/** What the registration ceremony must match. */
export interface RegistrationExpectation {
  challenge: string;
  origins: string[];
  rpId: string;
  requireUserVerification: boolean;
}

/** A verified new credential, ready to store. */
export interface VerifiedCredential {
  credentialId: Uint8Array;
  /** base64url, unpadded. */
  credentialIdText: string;
  /** COSE public key. */
  publicKey: Uint8Array;
  algorithm: number;
  signCount: number;
  aaguid: string;
  authenticatorName: string;
  backupEligible: boolean;
  backedUp: boolean;
  deviceType: 'single_device' | 'multi_device';
  transports: string[];
  attestationFormat: string;
  /** The attestation statement carries a certificate chain (x5c): full attestation, not none or self. */
  attestationCertified: boolean;
  userVerified: boolean;
  authenticatorAttachment: string;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * Verifies a registration response: client data type, challenge, origin, RP ID hash, user presence
 * (and verification when required), the algorithm, and the attestation statement of whichever format
 * was sent ("none" synchronously in {@link verifyNoneRegistration}, every other format with
 * SimpleWebAuthn). The attestation object must be exactly one CBOR item (extra bytes after it are not
 * covered by any signature). Everything refused, including undecodable CBOR or keys, is the client's
 * mistake: INVALID_ARGUMENT with a message that is safe to show.
 */
export async function verifyRegistration(response: RegistrationResponseJSON, expected: RegistrationExpectation): Promise<VerifiedCredential> {
  const attestationObject = Buffer.from(response.response.attestationObject, 'base64url');
  const cborLength = cborItemLength(attestationObject);
  if (cborLength === undefined) throw invalid('registration response refused: response.attestationObject is not well-formed CBOR');
  if (cborLength !== attestationObject.length) throw invalid('registration response refused: response.attestationObject has bytes after its CBOR map');
  let info: RegisteredCredential;
  try {
    info = verifyNoneRegistration(response, { ...expected, supportedAlgorithms: SUPPORTED_ALGORITHMS }) ?? (await verifyWithSimpleWebAuthn(response, expected));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw invalid(`registration response refused: ${message.slice(0, 300)}`);
  }
  const credentialId = Buffer.from(info.credentialId);
  // The credential id comes from authenticator data; the JSON's id must name the same one.
  if (!equalBytes(credentialId, Buffer.from(response.id, 'base64url')) || !equalBytes(credentialId, Buffer.from(response.rawId, 'base64url'))) {
    throw invalid('registration response refused: id does not match the credential id in the authenticator data');
  }
  const algorithm = coseAlgorithmOf(info.publicKey);
  const stmt =
    info.fmt === 'none' ? undefined : (isoCBOR.decodeFirst<Map<string, unknown>>(new Uint8Array(info.attestationObject)).get('attStmt') as Map<string, unknown> | undefined);
  if (info.fmt === 'packed') {
    // WebAuthn §8.2: a self attestation's alg must be the credential key's. SimpleWebAuthn only uses it
    // to pick the hash, so a statement naming another algorithm would otherwise pass.
    if (stmt && !stmt.has('x5c') && stmt.get('alg') !== algorithm) {
      throw invalid('registration response refused: the self attestation names another algorithm than the credential key');
    }
  }
  return {
    credentialId,
    credentialIdText: credentialId.toString('base64url'),
    publicKey: info.publicKey,
    algorithm,
    signCount: info.counter,
    aaguid: info.aaguid,
    authenticatorName: authenticatorNameOf(info.aaguid),
    backupEligible: info.multiDevice,
    backedUp: info.backedUp,
    deviceType: info.multiDevice ? 'multi_device' : 'single_device',
    transports: response.response.transports ?? [],
    attestationFormat: info.fmt,
    attestationCertified: stmt instanceof Map && Array.isArray(stmt.get('x5c')) && (stmt.get('x5c') as unknown[]).length > 0,
    userVerified: info.userVerified,
    authenticatorAttachment: response.authenticatorAttachment ?? '',
  };
}

/** Any attestation format, with SimpleWebAuthn; throws its Error when the response is refused. */
async function verifyWithSimpleWebAuthn(response: RegistrationResponseJSON, expected: RegistrationExpectation): Promise<RegisteredCredential> {
  const result = await verifyRegistrationResponse({
    response,
    expectedChallenge: expected.challenge,
    expectedOrigin: expected.origins,
    expectedRPID: expected.rpId,
    expectedType: 'webauthn.create',
    requireUserPresence: true,
    requireUserVerification: expected.requireUserVerification,
    supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
  });
  if (!result.verified) throw new Error('the attestation statement did not verify');
  const info = result.registrationInfo;
  return {
    fmt: info.fmt,
    aaguid: info.aaguid,
    credentialId: Buffer.from(info.credential.id, 'base64url'),
    publicKey: info.credential.publicKey,
    counter: info.credential.counter,
    userVerified: info.userVerified,
    multiDevice: info.credentialDeviceType === 'multiDevice',
    backedUp: info.credentialBackedUp,
    attestationObject: info.attestationObject,
  };
}

/** The `alg` of a COSE key; SimpleWebAuthn has already checked it is one we offered. */
function coseAlgorithmOf(coseKey: Uint8Array): number {
  const alg = decodeCredentialPublicKey(new Uint8Array(coseKey)).get(cose.COSEKEYS.alg);
  return typeof alg === 'number' ? alg : 0;
}
