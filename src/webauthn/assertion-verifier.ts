/**
 * A synchronous WebAuthn assertion verifier for the login hot path.
 *
 * It makes the same checks as SimpleWebAuthn's `verifyAuthenticationResponse` (v14) called the way
 * `verifyAssertion` calls it (expectedType 'webauthn.get', one expected challenge string, a list of
 * origins, one RP ID, a stored counter of 0, no expectedTopOrigin, no advancedFIDOConfig), in the same
 * order and with the same accept/refuse outcome. What differs is the cost:
 *
 * - the COSE public key is decoded once per distinct key into a node:crypto KeyObject and cached
 *   (SimpleWebAuthn decodes it twice and runs WebCrypto importKey on every call);
 * - hashing and signature verification are synchronous node:crypto calls. `crypto.verify` runs the
 *   same native SignJob that Node's WebCrypto `subtle.verify` runs, with the same key handle, hash,
 *   padding, salt length and signature encoding, only synchronously (no promise/job round trips);
 * - base64url is decoded natively when the string is in a form where that gives the same bytes as
 *   SimpleWebAuthn's decoder (see decodeBase64url).
 *
 * Where SimpleWebAuthn's behaviour is intricate and rare, this module calls the very same code
 * instead of re-creating it: `parseAuthenticatorData` when the AT or ED flag is set (CBOR decode and
 * re-encode of extensions and attested data), `isoBase64URL.toBuffer` for unusually padded base64url,
 * and `AsnParser` + `ECDSASigValue` for ECDSA signatures that are not plain DER (asn1js is a lenient
 * BER parser: it accepts trailing bytes, long or indefinite lengths, context tags, extra elements...).
 *
 * Keys the fast path cannot map with certainty (AKP/ML-DSA, odd kty/alg/crv combinations, malformed
 * keys) are never guessed at: `verifyAssertionFast` throws UnsupportedKeyError for them and
 * `verifyAssertionWith` hands them to the SimpleWebAuthn-based `verifyAssertion`.
 */
import { createHash, verify as cryptoVerify } from 'node:crypto';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { AsnParser } from '@peculiar/asn1-schema';
import { isoBase64URL, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import { LRUCache } from 'lru-cache';
import { unauthenticated } from '../errors.js';
import { clearParsedKeys, errorMessage, keyEntry, UnsupportedKeyError, type FastKey } from './credential-keys.js';
import { MIN_AUTHENTICATOR_DATA, verifyAssertion, type AssertionExpectation, type ParsedAssertion, type VerifiedAssertion } from './authentication-response.js';

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;
const FLAG_ED = 0x80;
/** The counter we pass to SimpleWebAuthn: 0, so the counter policy stays the caller's. */
const STORED_COUNTER: number = 0;
const TOKEN_BINDING_STATUSES = ['present', 'supported', 'notSupported'];

/** What SimpleWebAuthn's isoBase64URL.isBase64URL accepts: base64url characters, '=' anywhere. */
const BASE64URL_LOOSE = /^[A-Za-z0-9_=-]*$/;
const BASE64URL_UNPADDED = /^[A-Za-z0-9_-]*$/;
const BASE64URL_PADDED = /^[A-Za-z0-9_-]*={1,2}$/;

/** Same decoder instance settings as SimpleWebAuthn's (utf-8, replacement characters, BOM stripped). */
const UTF8 = new TextDecoder();

const rpIdHashes = new LRUCache<string, Buffer>({ max: 256 });

/** Empties the key and RP ID hash caches and zeroes the key statistics (tests). */
export function clearKeyCache(): void {
  clearParsedKeys();
  rpIdHashes.clear();
}

/**
 * The bytes SimpleWebAuthn's isoBase64URL.toBuffer gives. Node's decoder gives the same bytes for
 * unpadded strings and correctly padded ones (length a multiple of 4); for other paddings SimpleWebAuthn's
 * decoder sizes the output as length * 3/4 minus the '=' count (e.g. "VkN8==" is 2 bytes, not 3), so
 * those strings go through it.
 */
function decodeBase64url(s: string): Buffer {
  if (BASE64URL_UNPADDED.test(s) || (s.length % 4 === 0 && BASE64URL_PADDED.test(s))) return Buffer.from(s, 'base64url');
  const bytes = isoBase64URL.toBuffer(s);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** SHA-256 of the RP ID as matchExpectedRPID hashes it: one byte per UTF-16 code unit, low 8 bits. */
function rpIdHash(rpId: string): Buffer {
  let hash = rpIdHashes.get(rpId);
  if (!hash) {
    const bytes = Buffer.allocUnsafe(rpId.length);
    for (let i = 0; i < rpId.length; i++) bytes[i] = rpId.charCodeAt(i) & 0xff;
    hash = createHash('sha256').update(bytes).digest();
    rpIdHashes.set(rpId, hash);
  }
  return hash;
}

/** A client-controlled JSON value, quoted and bounded, for an error message. */
function show(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = undefined;
  }
  s ??= typeof v;
  return s.length > 120 ? `${s.slice(0, 120)}...` : s;
}

function refuse(reason: string): never {
  throw unauthenticated(`assertion refused: ${reason.slice(0, 300)}`);
}

/**
 * Verifies an assertion exactly as `verifyAssertion` (SimpleWebAuthn) would, synchronously. Refusals
 * throw UNAUTHENTICATED "assertion refused: ...". Throws UnsupportedKeyError (before any other check)
 * when the public key is not one the fast path handles; `verifyAssertionWith` covers every key.
 */
export function verifyAssertionFast(parsed: ParsedAssertion, expected: AssertionExpectation): VerifiedAssertion {
  const key = keyEntry(expected.publicKey);
  if (key.kind === 'fallback') throw new UnsupportedKeyError(key.reason);
  return verifyWithKey(parsed, expected, key);
}

/** The fast verifier when the key allows it, otherwise the SimpleWebAuthn-based `verifyAssertion`. */
export async function verifyAssertionWith(parsed: ParsedAssertion, expected: AssertionExpectation): Promise<VerifiedAssertion> {
  const key = keyEntry(expected.publicKey);
  if (key.kind === 'fallback') return verifyAssertion(parsed, expected);
  return verifyWithKey(parsed, expected, key);
}

function verifyWithKey(parsed: ParsedAssertion, expected: AssertionExpectation, key: FastKey): VerifiedAssertion {
  // Read the JSON as untyped: every member is checked as SimpleWebAuthn checks it.
  const credential = parsed.json as unknown as Record<string, unknown> | null | undefined;
  if (credential === null || credential === undefined) refuse('no credential');
  const { id, rawId, type } = credential;
  if (!id) refuse('missing credential id');
  if (id !== rawId) refuse('credential id and rawId differ');
  if (type !== 'public-key') refuse(`unexpected credential type ${show(type)}, expected "public-key"`);
  const response = credential.response as Record<string, unknown> | undefined;
  if (!response) refuse('credential has no response');
  const { clientDataJSON, authenticatorData, signature, userHandle } = response;
  if (typeof clientDataJSON !== 'string') refuse('clientDataJSON is not a string');

  // Client data: decoded like decodeClientDataJSON (base64url -> UTF-8 without BOM -> JSON).
  const clientDataBytes = decodeBase64url(clientDataJSON);
  let clientData: unknown;
  try {
    clientData = JSON.parse(UTF8.decode(clientDataBytes));
  } catch {
    refuse('clientDataJSON is not JSON');
  }
  if (clientData === null || clientData === undefined) refuse('clientDataJSON is null');
  const { type: clientDataType, challenge, origin, tokenBinding, crossOrigin, topOrigin } = clientData as Record<string, unknown>;
  if (clientDataType !== 'webauthn.get') refuse(`unexpected client data type ${show(clientDataType)}, expected "webauthn.get"`);
  if (challenge !== expected.challenge) refuse(`unexpected challenge ${show(challenge)}`);
  // No expected top origin is configured, so any (truthy) topOrigin is refused, cross-origin or not.
  if (topOrigin) {
    refuse(crossOrigin ? `unexpected cross-origin top origin ${show(topOrigin)}` : `top origin ${show(topOrigin)} in a response that is not cross-origin`);
  }
  if (!expected.origins.includes(origin as string)) refuse(`unexpected origin ${show(origin)}, expected one of: ${expected.origins.join(', ')}`);
  if (typeof authenticatorData !== 'string' || !BASE64URL_LOOSE.test(authenticatorData)) refuse('authenticatorData is not a base64url string');
  if (typeof signature !== 'string' || !BASE64URL_LOOSE.test(signature)) refuse('signature is not a base64url string');
  if (userHandle && typeof userHandle !== 'string') refuse('userHandle is not a string');
  if (tokenBinding) {
    if (typeof tokenBinding !== 'object') refuse('clientDataJSON tokenBinding is not an object');
    const status = (tokenBinding as Record<string, unknown>).status;
    if (TOKEN_BINDING_STATUSES.indexOf(status as string) < 0) refuse(`unexpected tokenBinding status ${show(status)}`);
  }

  // Authenticator data, as parseAuthenticatorData reads it.
  const authData = decodeBase64url(authenticatorData);
  if (authData.length < MIN_AUTHENTICATOR_DATA) refuse(`authenticator data is ${authData.length} bytes, expected at least ${MIN_AUTHENTICATOR_DATA}`);
  const flags = authData[32]!;
  let counter: number;
  if (flags & (FLAG_AT | FLAG_ED)) {
    // Attested credential data or extensions: SimpleWebAuthn's own parser decides (CBOR decoding,
    // re-encoding and the leftover-bytes check), on a private copy as it may patch bytes while parsing.
    try {
      counter = parseAuthenticatorData(new Uint8Array(authData)).counter;
    } catch (err) {
      refuse(`authenticator data does not parse: ${errorMessage(err)}`);
    }
  } else {
    if (authData.length > MIN_AUTHENTICATOR_DATA) refuse('leftover bytes after the authenticator data');
    counter = authData.readUInt32BE(33);
  }
  if (rpIdHash(expected.rpId).compare(authData, 0, 32, 0, 32) !== 0) refuse('unexpected RP ID hash');
  if (!(flags & FLAG_UP)) refuse('user not present');
  if (expected.requireUserVerification && !(flags & FLAG_UV)) refuse('user verification required, but the user was not verified');

  const clientDataHash = createHash('sha256').update(clientDataBytes).digest();
  const sig = decodeBase64url(signature);
  // With a stored counter of 0 this never refuses (the counter policy is the caller's); kept for parity.
  if ((counter > 0 || STORED_COUNTER > 0) && counter <= STORED_COUNTER) refuse(`counter ${counter} is not above ${STORED_COUNTER}`);
  // parseBackupFlags: backed up (BS) but not backup eligible (BE) is impossible.
  if (flags & FLAG_BS && !(flags & FLAG_BE)) refuse('single-device credential says it is backed up');

  const signed = Buffer.allocUnsafe(authData.length + clientDataHash.length);
  authData.copy(signed, 0);
  clientDataHash.copy(signed, authData.length);
  let ok: boolean;
  try {
    ok = verifySignature(key, signed, sig);
  } catch (err) {
    refuse(`signature does not verify: ${errorMessage(err)}`);
  }
  if (!ok) refuse('the signature does not verify');
  return { signCount: counter, userVerified: (flags & FLAG_UV) !== 0, backedUp: (flags & FLAG_BS) !== 0 };
}

function verifySignature(key: FastKey, data: Buffer, sig: Buffer): boolean {
  switch (key.kind) {
    case 'ecdsa':
      return cryptoVerify(key.hash, data, key.options, unwrapEcdsaSignature(sig, key.componentLength));
    case 'ed25519':
      return cryptoVerify(null, data, key.key, sig);
    case 'rsa':
      return cryptoVerify(key.hash, data, key.options, sig);
  }
}

// ---------------------------------------------------------------------------------------------
// ECDSA signature unwrapping, as SimpleWebAuthn's unwrapEC2Signature

/**
 * DER ECDSA-Sig-Value -> r || s, each left-padded to the curve's component length. Plain DER
 * (SEQUENCE of two INTEGERs with short lengths, nothing after it, which is what authenticators send)
 * is read here; asn1js reads exactly these content bytes for it. Any other encoding goes through
 * the same AsnParser.parse(signature, ECDSASigValue) SimpleWebAuthn uses, so BER leniencies are the same.
 */
function unwrapEcdsaSignature(sig: Buffer, size: number): Buffer {
  const out = Buffer.alloc(2 * size);
  const plain = plainDerPositions(sig);
  if (plain) {
    placeComponent(sig.subarray(plain.r, plain.r + plain.rLength), out, 0, size);
    placeComponent(sig.subarray(plain.s, plain.s + plain.sLength), out, size, size);
  } else {
    const value = AsnParser.parse(new Uint8Array(sig), ECDSASigValue);
    placeComponent(new Uint8Array(value.r), out, 0, size);
    placeComponent(new Uint8Array(value.s), out, size, size);
  }
  return out;
}

/** Offsets of r and s in 30 L 02 Lr r 02 Ls s (L short or 0x81 form, Lr/Ls short and > 0), else undefined. */
function plainDerPositions(sig: Buffer): { r: number; rLength: number; s: number; sLength: number } | undefined {
  if (sig.length < 8 || sig[0] !== 0x30) return undefined;
  let at = 2;
  let length = sig[1]!;
  if (length === 0x81) {
    length = sig[2]!;
    at = 3;
  } else if (length >= 0x80) {
    return undefined;
  }
  if (at + length !== sig.length) return undefined;
  if (sig[at] !== 0x02) return undefined;
  const rLength = sig[at + 1]!;
  const r = at + 2;
  if (rLength === 0 || rLength >= 0x80) return undefined;
  at = r + rLength;
  if (at + 2 > sig.length || sig[at] !== 0x02) return undefined;
  const sLength = sig[at + 1]!;
  const s = at + 2;
  if (sLength === 0 || sLength >= 0x80 || s + sLength !== sig.length) return undefined;
  return { r, rLength, s, sLength };
}

/** SimpleWebAuthn's toNormalizedBytes: pad short values, drop one sign byte, refuse anything else. */
function placeComponent(bytes: Uint8Array, out: Buffer, offset: number, size: number): void {
  if (bytes.length <= size) {
    out.set(bytes, offset + size - bytes.length);
  } else if (bytes.length === size + 1 && bytes[0] === 0 && (bytes[1]! & 0x80) === 0x80) {
    out.set(bytes.subarray(1), offset);
  } else {
    throw new Error(`invalid signature component length ${bytes.length}, expected ${size}`);
  }
}
