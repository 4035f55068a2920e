/**
 * The synchronous "none" registration verifier against SimpleWebAuthn's verifyRegistrationResponse, on
 * the same inputs: each response either goes to SimpleWebAuthn (the fast path declines it) or gets the
 * same verdict from both, with the same message when refused and the same credential when accepted.
 */
import { randomBytes } from 'node:crypto';
import { verifyRegistrationResponse, type RegistrationResponseJSON } from '@simplewebauthn/server';
import { describe, expect, it } from 'vitest';
import { verifyNoneRegistration, type RegisteredCredential } from '../src/webauthn/none-attestation.js';
import { verifyRegistration } from '../src/webauthn/registration-response.js';
import { SUPPORTED_ALGORITHMS } from '../src/webauthn/relying-party.js';
import { AT, BE, BS, ED, ORIGIN, ORIGINS, RP_ID, UP, UV, b64, type Cbor, cbor, cose, sha256 } from './helpers/assertion-builders.js';
import { clientDataCases, mutateBytes } from './helpers/assertion-cases.js';
import { createSoftAuthenticator, type SoftAlg } from './helpers/authenticator.js';
import { prng } from './helpers/prng.js';

type Verdict = { ok: true; credential: Omit<RegisteredCredential, 'attestationObject'> } | { ok: false; message: string };

async function simpleWebAuthn(response: RegistrationResponseJSON, challenge: string, requireUserVerification: boolean): Promise<Verdict> {
  try {
    const r = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge,
      expectedOrigin: ORIGINS,
      expectedRPID: RP_ID,
      expectedType: 'webauthn.create',
      requireUserPresence: true,
      requireUserVerification,
      supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
    });
    if (!r.verified) return { ok: false, message: 'not verified' };
    const i = r.registrationInfo;
    return {
      ok: true,
      credential: {
        fmt: i.fmt,
        aaguid: i.aaguid,
        credentialId: new Uint8Array(Buffer.from(i.credential.id, 'base64url')),
        publicKey: new Uint8Array(i.credential.publicKey),
        counter: i.credential.counter,
        userVerified: i.userVerified,
        multiDevice: i.credentialDeviceType === 'multiDevice',
        backedUp: i.credentialBackedUp,
      },
    };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

/** The fast path's verdict, or undefined when it declines the response. */
function fast(response: RegistrationResponseJSON, challenge: string, requireUserVerification: boolean): Verdict | undefined {
  try {
    const r = verifyNoneRegistration(response, { challenge, origins: ORIGINS, rpId: RP_ID, requireUserVerification, supportedAlgorithms: SUPPORTED_ALGORITHMS });
    if (!r) return undefined;
    const { attestationObject: _, ...credential } = r;
    return { ok: true, credential: { ...credential, credentialId: new Uint8Array(credential.credentialId), publicKey: new Uint8Array(credential.publicKey) } };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

interface Base {
  alg: SoftAlg;
  challenge: string;
  response: RegistrationResponseJSON;
  authData: Buffer;
  clientData: Buffer;
  /** The attested credential data (aaguid, id length, id, COSE key) inside authData. */
  attested: Buffer;
  coseKey: Buffer;
}

async function base(alg: SoftAlg): Promise<Base> {
  const auth = createSoftAuthenticator({ alg, aaguid: 'ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4' });
  const challenge = b64(randomBytes(32));
  const response = (await auth.register(
    {
      rp: { id: RP_ID, name: 'passkeyd test' },
      user: { id: b64(randomBytes(16)), name: 'alice', displayName: 'Alice' },
      challenge,
      pubKeyCredParams: [-7, -8, -257].map((a) => ({ type: 'public-key' as const, alg: a })),
    },
    { origin: ORIGIN },
  )) as RegistrationResponseJSON;
  const authData = Buffer.from(response.response.authenticatorData!, 'base64url');
  const attested = authData.subarray(37);
  const idLength = attested.readUInt16BE(16);
  return { alg, challenge, response, authData, clientData: Buffer.from(response.response.clientDataJSON, 'base64url'), attested, coseKey: attested.subarray(18 + idLength) };
}

/** The base response with another authData, client data, statement or format. */
function variant(b: Base, o: { authData?: Cbor; clientData?: Buffer; attStmt?: Cbor; fmt?: Cbor; json?: Partial<RegistrationResponseJSON> }): RegistrationResponseJSON {
  const attestationObject = cbor(
    new Map<string, Cbor>([
      ['fmt', o.fmt ?? 'none'],
      ['attStmt', o.attStmt ?? new Map()],
      ['authData', o.authData ?? b.authData],
    ]),
  );
  return {
    ...b.response,
    ...o.json,
    response: { ...b.response.response, clientDataJSON: b64(o.clientData ?? b.clientData), attestationObject: b64(attestationObject) },
  };
}

function authData(b: Base, o: { rpIdHash?: Buffer; flags?: number; counter?: number; attested?: Buffer | null; tail?: Buffer }): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(o.counter ?? 0);
  const attested = o.attested === null ? Buffer.alloc(0) : (o.attested ?? b.attested);
  return Buffer.concat([o.rpIdHash ?? sha256(RP_ID), Buffer.from([o.flags ?? UP | UV | BE | BS | AT]), counter, attested, o.tail ?? Buffer.alloc(0)]);
}

function withKey(b: Base, key: Buffer): Buffer {
  const idLength = b.attested.readUInt16BE(16);
  return Buffer.concat([b.attested.subarray(0, 18 + idLength), key]);
}

function cases(b: Base): [string, RegistrationResponseJSON, boolean][] {
  const list: [string, RegistrationResponseJSON, boolean][] = [];
  const add = (name: string, r: RegistrationResponseJSON, uv = false) => list.push([`${b.alg}: ${name}`, r, uv]);
  add('as the authenticator made it', b.response);
  add('as made, user verification required', b.response, true);
  add('re-encoded', variant(b, {}));
  add('another RP ID hash', variant(b, { authData: authData(b, { rpIdHash: sha256('evil.example.com') }) }));
  add('no user presence', variant(b, { authData: authData(b, { flags: UV | AT }) }));
  add('no user verification, required', variant(b, { authData: authData(b, { flags: UP | AT }) }), true);
  add('no user verification, not required', variant(b, { authData: authData(b, { flags: UP | AT }) }));
  add('backed up, not backup eligible', variant(b, { authData: authData(b, { flags: UP | UV | BS | AT }) }));
  add('backup eligible, not backed up', variant(b, { authData: authData(b, { flags: UP | UV | BE | AT }) }));
  add('single device', variant(b, { authData: authData(b, { flags: UP | UV | AT }) }));
  add('no attested credential data', variant(b, { authData: authData(b, { flags: UP | UV, attested: null }) }));
  add('AT flag without data', variant(b, { authData: authData(b, { attested: null }) }));
  add('counter 7', variant(b, { authData: authData(b, { counter: 7 }) }));
  add('trailing bytes', variant(b, { authData: authData(b, { tail: Buffer.from([0, 1, 2]) }) }));
  add('extension data', variant(b, { authData: authData(b, { flags: UP | UV | AT | ED, tail: cbor(new Map([['credProtect', 2]])) }) }));
  add('ED flag, no extension data', variant(b, { authData: authData(b, { flags: UP | UV | AT | ED }) }));
  add('short authData', variant(b, { authData: sha256(RP_ID) }));
  add(
    'ES384 key',
    variant(b, {
      authData: authData(b, {
        attested: withKey(
          b,
          cose([
            [1, 2],
            [3, -35],
            [-1, 2],
            [-2, randomBytes(48)],
            [-3, randomBytes(48)],
          ]),
        ),
      }),
    }),
  );
  add(
    'key without alg',
    variant(b, {
      authData: authData(b, {
        attested: withKey(
          b,
          cose([
            [1, 2],
            [-1, 1],
            [-2, randomBytes(32)],
            [-3, randomBytes(32)],
          ]),
        ),
      }),
    }),
  );
  add(
    'key with a text alg',
    variant(b, {
      authData: authData(b, {
        attested: withKey(
          b,
          cbor(
            new Map<number, Cbor>([
              [1, 2],
              [3, 'ES256'],
            ]),
          ),
        ),
      }),
    }),
  );
  add('non-empty statement', variant(b, { attStmt: new Map([['alg', -7]]) }));
  add('statement not a map', variant(b, { attStmt: 'none' }));
  add('authData a text string', variant(b, { authData: 'authData' }));
  add('format packed, no signature', variant(b, { fmt: 'packed' }));
  add('format unknown', variant(b, { fmt: 'nonesuch' }));
  add('format a number', variant(b, { fmt: 0 }));
  add('id differs from rawId', { ...b.response, rawId: b64(randomBytes(32)) });
  add('id differs from the authenticator data', { ...b.response, id: b64(randomBytes(32)), rawId: b64(randomBytes(32)) });
  add('type other', { ...b.response, type: 'other' as 'public-key' });
  const swap = (t: Buffer) =>
    Buffer.from(t.toString('utf8').replaceAll('webauthn.get', '\u0000').replaceAll('webauthn.create', 'webauthn.get').replaceAll('\u0000', 'webauthn.create'), 'utf8');
  for (const [name, text] of clientDataCases(b.challenge)) add(`client data: ${name}`, variant(b, { clientData: swap(text) }));
  add('client data: another challenge', variant(b, { clientData: Buffer.from(JSON.stringify({ type: 'webauthn.create', challenge: b64(randomBytes(32)), origin: ORIGIN })) }));
  const rnd = prng(0x5eed + b.alg.length);
  for (let i = 0; i < 150; i++) add(`authData mutation ${i}`, variant(b, { authData: mutateBytes(rnd, b.authData) }));
  for (let i = 0; i < 50; i++) add(`client data mutation ${i}`, variant(b, { clientData: mutateBytes(rnd, b.clientData) }));
  return list;
}

describe('"none" registration responses: the synchronous verifier and SimpleWebAuthn agree', () => {
  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    it(`${alg}: the same verdict and message, or declined, for each response`, async () => {
      const b = await base(alg);
      let handled = 0;
      let accepted = 0;
      for (const [name, response, uv] of cases(b)) {
        const mine = fast(response, b.challenge, uv);
        if (mine === undefined) {
          // Declined: only for what is not a well-formed "none" attestation object.
          expect(
            ['format packed, no signature', 'format unknown', 'format a number', 'statement not a map', 'authData a text string'].some((n) => name.endsWith(n)) ||
              name.includes('mutation'),
            name,
          ).toBe(true);
          continue;
        }
        handled++;
        if (mine.ok) accepted++;
        expect(mine, name).toEqual(await simpleWebAuthn(response, b.challenge, uv));
      }
      expect(handled).toBeGreaterThan(250);
      expect(accepted).toBeGreaterThan(5);
    });
  }

  it('verifyRegistration answers a declined format through SimpleWebAuthn, with its message', async () => {
    const b = await base('ES256');
    const expectation = { challenge: b.challenge, origins: ORIGINS, rpId: RP_ID, requireUserVerification: false };
    await expect(verifyRegistration(variant(b, { fmt: 'packed' }), expectation)).rejects.toThrow(/registration response refused: .+/);
    const accepted = await verifyRegistration(b.response, expectation);
    expect(accepted).toMatchObject({ attestationFormat: 'none', credentialIdText: b.response.id, aaguid: 'ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4', deviceType: 'multi_device' });
  });
});
