/**
 * Real-device attestations (the `fido2-helpers` vectors) through VerifyPasskeyRegistration.
 *
 * The vectors signed fixed challenges for fixed origins. The test runs a server configured for their RP
 * IDs and origins, begins a real registration, and then (test-only, straight in the test's database,
 * which no API can do) replaces the pending challenge with the one the device signed.
 */
import { createRequire } from 'node:module';
import type { JsonObject } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { createUser } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

interface Vector {
  id: string;
  rawId: string;
  response: { clientDataJSON: string; attestationObject: string };
}

const helpers = createRequire(import.meta.url)('fido2-helpers') as { server: Record<string, Vector> };

/** The vectors, their RP ID, and what a successful verification must store. */
const VECTORS = [
  {
    name: 'none',
    key: 'challengeResponseAttestationNoneMsgB64Url',
    rpId: 'localhost',
    fmt: 'none',
    aaguid: '00000000-0000-0000-0000-000000000000',
    authenticatorName: '',
    algorithm: -7,
  },
  {
    name: 'fido-u2f (Yubico security key)',
    key: 'challengeResponseAttestationU2fMsgB64Url',
    rpId: 'localhost',
    fmt: 'fido-u2f',
    aaguid: '00000000-0000-0000-0000-000000000000',
    authenticatorName: '',
    algorithm: -7,
  },
  {
    name: 'fido-u2f (Hypersecu security key)',
    key: 'challengeResponseAttestationU2fHypersecuB64UrlMsg',
    rpId: 'webauthn.org',
    fmt: 'fido-u2f',
    aaguid: '00000000-0000-0000-0000-000000000000',
    authenticatorName: '',
    algorithm: -7,
  },
  {
    name: 'packed with x5c (Feitian BioPass security key)',
    key: 'challengeResponseAttestationPackedB64UrlMsg',
    rpId: 'webauthn.org',
    fmt: 'packed',
    aaguid: '42383245-4437-3343-3846-423445354132',
    authenticatorName: '',
    algorithm: -7,
  },
  {
    name: 'tpm (Windows Hello)',
    key: 'challengeResponseAttestationTpmB64UrlMsg',
    rpId: 'webauthn.org',
    fmt: 'tpm',
    aaguid: '08987058-cadc-4b81-b6e1-30de50dcbe96',
    authenticatorName: 'Windows Hello',
    algorithm: -257,
  },
] as const;

const srv = useTestServer({
  config: {
    'rp-id': 'localhost,webauthn.org',
    origins: 'https://localhost:8443,https://webauthn.org',
    // These devices did not verify the user (UV flag clear); a deployment may ask for "preferred".
    'user-verification': 'preferred',
    attestation: 'direct',
  },
});

/** The browser's PublicKeyCredential JSON for a vector (the vectors predate `type` and `clientExtensionResults`). */
function credentialOf(v: Vector): JsonObject {
  return { id: v.id, rawId: v.rawId, type: 'public-key', response: { ...v.response }, clientExtensionResults: {} };
}

function signedChallenge(v: Vector): string {
  return (JSON.parse(Buffer.from(v.response.clientDataJSON, 'base64url').toString('utf8')) as { challenge: string }).challenge;
}

async function pendingFor(rpId: string, challenge?: string): Promise<{ userId: string; passkeyId: string }> {
  const userId = await createUser(srv.url, srv.admin);
  const users = clientFor(UserService, 'connect', srv.url);
  const { passkeyId } = await users.registerPasskey({ userId, domain: rpId }, bearer(srv.admin));
  if (challenge !== undefined) {
    await srv.app.store.db.updateTable('challenges').set({ challenge, rp_id: rpId }).where('passkey_id', '=', passkeyId).execute();
  }
  return { userId, passkeyId };
}

async function verify(p: { userId: string; passkeyId: string }, credential: JsonObject): Promise<Code | 'ok'> {
  try {
    await clientFor(UserService, 'connect', srv.url).verifyPasskeyRegistration({ ...p, publicKeyCredential: credential, passkeyName: 'device' }, bearer(srv.admin));
    return 'ok';
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** Flips one byte near the end of the attestation statement's signature (the first `sig` value). */
function tamperSignature(v: Vector): JsonObject {
  const att = Buffer.from(v.response.attestationObject, 'base64url');
  const at = att.indexOf(Buffer.from('63736967', 'hex')); // text(3) "sig"
  expect(at).toBeGreaterThan(0);
  const copy = Buffer.from(att);
  copy[at + 4 + 10] = copy[at + 4 + 10]! ^ 0x01; // inside the signature bytes, past their CBOR header
  return { ...credentialOf(v), response: { ...v.response, attestationObject: copy.toString('base64url') } };
}

describe(`real-device attestations (fido2-helpers) through VerifyPasskeyRegistration (${BACKEND})`, () => {
  it.each(VECTORS)('$name verifies and is stored with its format, AAGUID and key', async (t) => {
    const v = helpers.server[t.key]!;
    const p = await pendingFor(t.rpId, signedChallenge(v));
    expect(await verify(p, credentialOf(v))).toBe('ok');
    const row = await srv.app.store.db.selectFrom('passkeys').selectAll().where('id', '=', p.passkeyId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      state: 'ready',
      attestation_format: t.fmt,
      aaguid: t.aaguid,
      authenticator_name: t.authenticatorName,
      algorithm: t.algorithm,
      rp_id: t.rpId,
      name: 'device',
    });
    expect(Buffer.from(row.credential_id!).equals(Buffer.from(v.rawId, 'base64url'))).toBe(true);
    const listed = await clientFor(UserService, 'grpc', srv.url).listPasskeys({ userId: p.userId }, bearer(srv.admin));
    expect(listed.result.map((k) => [k.id, k.attestationFormat, k.aaguid, k.authenticatorName])).toEqual([[p.passkeyId, t.fmt, t.aaguid, t.authenticatorName]]);

    // The same device response for another user: a duplicate credential id.
    const dup = await pendingFor(t.rpId, signedChallenge(v));
    expect(await verify(dup, credentialOf(v))).toBe(Code.AlreadyExists);
  });

  it.each(VECTORS)('$name is refused against a challenge it did not sign', async (t) => {
    const v = helpers.server[t.key]!;
    const p = await pendingFor(t.rpId);
    expect(await verify(p, credentialOf(v))).toBe(Code.InvalidArgument);
  });

  it.each(VECTORS.filter((t) => t.fmt !== 'none'))('$name with a tampered attestation signature is refused', async (t) => {
    const v = helpers.server[t.key]!;
    const p = await pendingFor(t.rpId, signedChallenge(v));
    expect(await verify(p, tamperSignature(v))).toBe(Code.InvalidArgument);
    const row = await srv.app.store.db.selectFrom('passkeys').select('state').where('id', '=', p.passkeyId).executeTakeFirstOrThrow();
    expect(row.state).toBe('not_ready');
  });

  it('a vector verified for the wrong RP ID is refused (RP ID hash)', async () => {
    const v = helpers.server.challengeResponseAttestationPackedB64UrlMsg!;
    const p = await pendingFor('localhost', signedChallenge(v));
    expect(await verify(p, credentialOf(v))).toBe(Code.InvalidArgument);
  });
});
