/**
 * The fast assertion verifier (src/webauthn/assertion-verifier.ts) against SimpleWebAuthn.
 *
 * Every case runs through the SimpleWebAuthn-based `verifyAssertion` (the oracle), `verifyAssertionWith`
 * and, when the key is one it handles, `verifyAssertionFast`; the outcomes (refused, or accepted with
 * signCount / userVerified / backedUp) must be identical. Most cases are re-signed after being changed
 * with the credential's private key, so they reach the checks past the signature instead of all being
 * refused for a bad signature. No database is involved.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AssertionExpectation } from '../src/webauthn/authentication-response.js';
import { prng } from './helpers/prng.js';
import {
  BE,
  BS,
  Differential,
  type Json,
  ORIGIN,
  ORIGINS,
  RP_ID,
  UP,
  UV,
  assertionOf,
  authDataOf,
  b64,
  clientDataText,
  clone,
  expectation,
  pick,
  resign,
  sha256,
  softCredential,
} from './helpers/assertion-builders.js';
import { FIELDS, authDataCases, clientDataCases, randomBytesFrom, randomMutation } from './helpers/assertion-cases.js';

describe.each(['ES256', 'EdDSA', 'RS256'] as const)('%s: fast verifier == SimpleWebAuthn', (alg) => {
  it('valid assertions and the ceremony overrides', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const authenticate = async (o: Parameters<typeof cred.auth.authenticate>[1], challenge = b64(randomBytes(32))) => ({
      json: await cred.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: cred.id, type: 'public-key' }] }, o),
      challenge,
    });
    for (let i = 0; i < 20; i++) {
      const { json, challenge } = await authenticate({ origin: ORIGIN });
      const out = await diff.check(`valid #${i}`, json, expectation(cred, challenge, { requireUserVerification: i % 2 === 0 }));
      expect(out).toEqual({ signCount: i + 1, userVerified: true, backedUp: true });
    }
    const cases: [string, Parameters<typeof cred.auth.authenticate>[1], Partial<AssertionExpectation>, 'accepted' | 'refused'][] = [
      ['other allowed origin', { origin: ORIGINS[1]! }, {}, 'accepted'],
      ['wrong origin', { origin: 'https://evil.example' }, {}, 'refused'],
      ['origin not in an empty list', { origin: ORIGIN }, { origins: [] }, 'refused'],
      ['wrong rpId', { origin: ORIGIN, rpId: 'evil.example' }, {}, 'refused'],
      ['expected rpId differs', { origin: ORIGIN }, { rpId: 'example.com' }, 'refused'],
      ['type webauthn.create', { origin: ORIGIN, type: 'webauthn.create' }, {}, 'refused'],
      ['type payment.get', { origin: ORIGIN, type: 'payment.get' }, {}, 'refused'],
      ['UP off', { origin: ORIGIN, userPresent: false }, {}, 'refused'],
      ['UP off, UV not required', { origin: ORIGIN, userPresent: false }, { requireUserVerification: false }, 'refused'],
      ['UV off, UV required', { origin: ORIGIN, userVerified: false }, { requireUserVerification: true }, 'refused'],
      ['UV off, UV not required', { origin: ORIGIN, userVerified: false }, { requireUserVerification: false }, 'accepted'],
      ['wrong challenge', { origin: ORIGIN, challenge: b64(randomBytes(32)) }, {}, 'refused'],
      ['crossOrigin true without topOrigin', { origin: ORIGIN, crossOrigin: true }, {}, 'accepted'],
      ['counter 0', { origin: ORIGIN, counter: 0 }, {}, 'accepted'],
      ['counter 2^32-1', { origin: ORIGIN, counter: 0xffffffff }, {}, 'accepted'],
    ];
    for (const [name, o, exp, want] of cases) {
      const { json, challenge } = await authenticate(o);
      const out = await diff.check(name, json, expectation(cred, challenge, exp));
      expect(out === 'refused' ? 'refused' : 'accepted', name).toBe(want);
    }
    // Another credential's key never verifies this credential's assertion.
    const other = await softCredential(alg);
    const { json, challenge } = await authenticate({ origin: ORIGIN });
    expect(await diff.check('other credential key', json, expectation(other, challenge))).toBe('refused');
    diff.expectClean();
  });

  it('client data, authenticator data and response members', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const challenge = b64(randomBytes(32));
    const exp = expectation(cred, challenge);
    const validClientData = Buffer.from(clientDataText(challenge));
    for (const [name, cd] of clientDataCases(challenge)) {
      for (const requireUserVerification of [true, false]) {
        await diff.check(`clientData ${name}`, assertionOf(cred, authDataOf(), cd), { ...exp, requireUserVerification });
      }
    }
    for (const [name, ad] of authDataCases(cred)) {
      for (const requireUserVerification of [true, false]) {
        await diff.check(`authData ${name}`, assertionOf(cred, ad, validClientData), { ...exp, requireUserVerification });
      }
    }
    // RP IDs outside ASCII: SimpleWebAuthn hashes one byte per UTF-16 code unit (its low 8 bits).
    for (const rpId of ['lógin.example.com', 'l\u0101gin.example.com', 'login.example.com\u2603']) {
      const lowBytes = Buffer.from([...rpId].map((ch) => ch.charCodeAt(0) & 0xff));
      await diff.check(`rpId ${rpId} (low bytes)`, assertionOf(cred, authDataOf({ rpIdHash: sha256(lowBytes) }), validClientData), { ...exp, rpId });
      await diff.check(`rpId ${rpId} (UTF-8)`, assertionOf(cred, authDataOf({ rpIdHash: sha256(rpId) }), validClientData), { ...exp, rpId });
    }
    // Response members.
    const valid = assertionOf(cred, authDataOf(), validClientData);
    const padded = (s: string) => s + '='.repeat((4 - (s.length % 4)) % 4);
    const members: [string, (j: Json) => void][] = [
      ['id padded', (j) => (j.id = padded(String(j.id)))],
      ['rawId padded', (j) => (j.rawId = `${String(j.rawId)}==`)],
      ['id missing', (j) => delete j.id],
      ['id empty', (j) => (j.id = j.rawId = '')],
      ['type missing', (j) => delete j.type],
      ['type other', (j) => (j.type = 'public-key2')],
      ['userHandle empty', (j) => (j.response.userHandle = '')],
      ['userHandle missing', (j) => delete j.response.userHandle],
      ['userHandle number', (j) => (j.response.userHandle = 7)],
      ['userHandle zero', (j) => (j.response.userHandle = 0)],
      ['userHandle object', (j) => (j.response.userHandle = {})],
      ['userHandle not base64url', (j) => (j.response.userHandle = '***')],
      ['clientDataJSON number', (j) => (j.response.clientDataJSON = 1)],
      ['authenticatorData number', (j) => (j.response.authenticatorData = 1)],
      ['signature missing', (j) => delete j.response.signature],
      ['signature empty', (j) => (j.response.signature = '')],
      [
        'authenticatorData with = inside',
        (j) => (j.response.authenticatorData = `${String(j.response.authenticatorData).slice(0, 8)}=${String(j.response.authenticatorData).slice(8)}`),
      ],
      ['response missing', (j) => delete (j as Record<string, unknown>).response],
      ['extension results odd', (j) => (j.clientExtensionResults = { appid: true, credProps: 1 })],
      ['authenticatorAttachment', (j) => (j.authenticatorAttachment = 'cross-platform')],
    ];
    for (const [name, change] of members) {
      const j = clone(valid);
      change(j);
      await diff.check(`member ${name}`, j, exp);
    }
    // base64url forms of each member: correct padding is fine, wrong padding changes what SimpleWebAuthn decodes.
    for (const field of FIELDS) {
      const s = String(valid.response[field]);
      for (const [name, v] of [
        ['padded', padded(s)],
        ['"==" appended', `${s}==`],
        ['"=" appended', `${s}=`],
        ['standard alphabet', Buffer.from(s, 'base64url').toString('base64')],
      ] as const) {
        const j = clone(valid);
        j.response[field] = v;
        await diff.check(`${field} ${name}`, j, exp);
        if (field !== 'signature') await diff.check(`${field} ${name}, re-signed`, resign(cred, j), exp);
      }
    }
    expect(diff.accepted).toBeGreaterThan(50);
    expect(diff.refused).toBeGreaterThan(50);
    diff.expectClean();
  });

  it('random mutations of clientDataJSON, authenticatorData and signature', async () => {
    const cred = await softCredential(alg);
    const diff = new Differential();
    const seed = { ES256: 0x5eed1, EdDSA: 0x5eed2, RS256: 0x5eed3 }[alg];
    const rnd = prng(seed);
    const N = 450;
    for (let i = 0; i < N; i++) {
      const challenge = b64(randomBytesFrom(rnd, 32));
      const exp = expectation(cred, challenge, { requireUserVerification: rnd() < 0.5 });
      const base = assertionOf(cred, authDataOf({ counter: i, flags: pick(rnd, [UP | UV | BE | BS, UP | UV, UP | BE, UP | UV | BE]) }), Buffer.from(clientDataText(challenge)));
      let { label, json } = randomMutation(rnd, cred, base);
      // Sometimes stack a second mutation.
      if (rnd() < 0.25) {
        const second = randomMutation(rnd, cred, json);
        label = `${label} then ${second.label}`;
        json = second.json;
      }
      await diff.check(`seed ${seed} #${i} ${label}`, json, exp);
    }
    // The mutation set must contain both outcomes, or it proves nothing.
    expect(diff.accepted).toBeGreaterThan(N / 20);
    expect(diff.refused).toBeGreaterThan(N / 4);
    diff.expectClean();
  });
});
