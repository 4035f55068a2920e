/**
 * Registration responses with attestation format "none" (what browsers send when the relying party asks
 * for no attestation, passkeyd's default), verified synchronously.
 *
 * It makes the checks SimpleWebAuthn's `verifyRegistrationResponse` (v14) makes for such a response,
 * called the way `verifyRegistration` calls it (one expected challenge string, a list of origins, one
 * RP ID, expectedType 'webauthn.create', user presence required), in the same order and with the same
 * messages, and decodes with SimpleWebAuthn's own helpers. What differs is the cost: the RP ID is hashed
 * with node:crypto instead of WebCrypto (two promise and thread-pool round trips per registration), and
 * the client data hash, which no "none" statement uses, is not computed.
 *
 * Anything else (another format, an attestation object that does not decode into a map with a byte
 * string `authData` and a map `attStmt`) returns undefined, and the caller hands the response to
 * SimpleWebAuthn, which then decides and words the refusal as it always did.
 */
import { createHash } from 'node:crypto';
import type { RegistrationResponseJSON } from '@simplewebauthn/server';
import {
  convertAAGUIDToString,
  cose,
  decodeAttestationObject,
  decodeClientDataJSON,
  decodeCredentialPublicKey,
  isoBase64URL,
  parseAuthenticatorData,
} from '@simplewebauthn/server/helpers';

/** What a verified registration yields, whichever verifier ran. */
export interface RegisteredCredential {
  fmt: string;
  aaguid: string;
  credentialId: Uint8Array;
  /** COSE public key. */
  publicKey: Uint8Array;
  counter: number;
  userVerified: boolean;
  multiDevice: boolean;
  backedUp: boolean;
  /** The attestation object's bytes (its statement is read again for formats other than "none"). */
  attestationObject: Uint8Array;
}

export interface NoneExpectation {
  challenge: string;
  origins: readonly string[];
  rpId: string;
  requireUserVerification: boolean;
  supportedAlgorithms: readonly number[];
}

/** The same bytes check as SimpleWebAuthn's `isoUint8Array.areEqual`. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** The attestation object when it is a well-formed "none" one, else undefined (SimpleWebAuthn decides). */
function noneAttestation(attestationObject: Uint8Array<ArrayBuffer>): { authData: Uint8Array<ArrayBuffer>; attStmt: Map<unknown, unknown> } | undefined {
  let decoded: unknown;
  try {
    decoded = decodeAttestationObject(attestationObject);
  } catch {
    return undefined;
  }
  if (!(decoded instanceof Map) || decoded.get('fmt') !== 'none') return undefined;
  const authData = decoded.get('authData');
  const attStmt = decoded.get('attStmt');
  if (!(authData instanceof Uint8Array) || !(attStmt instanceof Map)) return undefined;
  return { authData: authData as Uint8Array<ArrayBuffer>, attStmt };
}

/**
 * Verifies a "none" registration response; undefined when the response is not one (see the module
 * comment). Throws an Error with SimpleWebAuthn's message when the response is refused.
 */
export function verifyNoneRegistration(response: RegistrationResponseJSON, expected: NoneExpectation): RegisteredCredential | undefined {
  const attestationObject = isoBase64URL.toBuffer(response.response.attestationObject);
  const none = noneAttestation(attestationObject);
  if (!none) return undefined;
  if (!response.id) throw new Error('Missing credential ID');
  if (response.id !== response.rawId) throw new Error('Credential ID was not base64url-encoded');
  if (response.type !== 'public-key') throw new Error(`Unexpected credential type ${response.type}, expected "public-key"`);
  // Named as SimpleWebAuthn names it: a client data that is JSON null fails its destructuring with the same message.
  const clientDataJSON = decodeClientDataJSON(response.response.clientDataJSON);
  const { type, origin, challenge, tokenBinding } = clientDataJSON;
  if (type !== 'webauthn.create') throw new Error(`Unexpected registration response type "${type}", expected "webauthn.create"`);
  if (challenge !== expected.challenge) throw new Error(`Unexpected registration response challenge "${challenge}", expected "${expected.challenge}"`);
  if (!expected.origins.includes(origin)) throw new Error(`Unexpected registration response origin "${origin}", expected one of: ${expected.origins.join(', ')}`);
  if (tokenBinding) {
    if (typeof tokenBinding !== 'object') throw new Error(`Unexpected value for TokenBinding "${tokenBinding}"`);
    if (!['present', 'supported', 'not-supported'].includes(tokenBinding.status)) throw new Error(`Unexpected tokenBinding.status value of "${tokenBinding.status}"`);
  }
  const { aaguid, rpIdHash, flags, credentialID, counter, credentialPublicKey } = parseAuthenticatorData(none.authData);
  if (!sameBytes(rpIdHash, createHash('sha256').update(expected.rpId, 'ascii').digest())) throw new Error('Unexpected RP ID hash');
  if (!flags.up) throw new Error('User presence was required, but user was not present');
  if (expected.requireUserVerification && !flags.uv) throw new Error('User verification was required, but user could not be verified');
  if (!credentialID) throw new Error('No credential ID was provided by authenticator');
  if (!credentialPublicKey) throw new Error('No public key was provided by authenticator');
  if (!aaguid) throw new Error('No AAGUID was present during registration');
  // Named as SimpleWebAuthn names it: a key that is not a CBOR map fails `.get` with the same message.
  const decodedPublicKey = decodeCredentialPublicKey(credentialPublicKey);
  const alg = decodedPublicKey.get(cose.COSEKEYS.alg);
  if (typeof alg !== 'number') throw new Error('Credential public key was missing numeric alg');
  if (!expected.supportedAlgorithms.includes(alg)) {
    throw new Error(`Unexpected public key alg "${alg}", expected one of "${expected.supportedAlgorithms.join(', ')}"`);
  }
  if (none.attStmt.size > 0) throw new Error('None attestation had unexpected attestation statement');
  if (!flags.be && flags.bs) throw new Error('Single-device credential indicated that it was backed up, which should be impossible.');
  return {
    fmt: 'none',
    aaguid: convertAAGUIDToString(aaguid),
    credentialId: credentialID,
    publicKey: credentialPublicKey,
    counter,
    userVerified: flags.uv,
    multiDevice: flags.be,
    backedUp: flags.bs,
    attestationObject,
  };
}
