/** The fast assertion verifier on real-device vectors (fido2-helpers), and its public key cache. */
import { createPublicKey, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { clearKeyCache, verifyAssertionFast, verifyAssertionWith } from '../src/webauthn/assertion-verifier.js';
import { cachedKeyObject, fastPathSupports, keyCacheStats } from '../src/webauthn/credential-keys.js';
import { parseAssertion, type AssertionExpectation } from '../src/webauthn/authentication-response.js';
import { prng } from './helpers/prng.js';
import { Differential, type Json, ORIGIN, RP_ID, b64, clone, cose, expectation, jwkOf, pick, settle, softCredential } from './helpers/assertion-builders.js';
import { FIELDS, mutateBytes, mutateString } from './helpers/assertion-cases.js';

describe('real-device assertions (fido2-helpers)', () => {
  interface VectorJson {
    id: string;
    rawId: string;
    response: Record<string, string>;
  }
  const helpers = createRequire(import.meta.url)('fido2-helpers') as { server: Record<string, VectorJson>; lib: Record<string, string> };

  function coseFromPem(pem: string, alg: number): Buffer {
    const key = createPublicKey(pem);
    const j = jwkOf(key);
    return key.asymmetricKeyType === 'ec'
      ? cose([
          [1, 2],
          [3, alg],
          [-1, 1],
          [-2, j.x!],
          [-3, j.y!],
        ])
      : cose([
          [1, 3],
          [3, alg],
          [-1, j.n!],
          [-2, j.e!],
        ]);
  }

  const VECTORS = [
    {
      name: 'U2F security key (ES256)',
      json: 'assertionResponseMsgB64Url',
      pem: 'assnPublicKey',
      alg: -7,
      rpId: 'localhost',
      origin: 'https://localhost:8443',
      uv: false,
      want: { signCount: 363, userVerified: false, backedUp: false },
    },
    {
      name: 'Windows Hello (RS256)',
      json: 'assertionResponseWindowsHelloMsgB64Url',
      pem: 'assnPublicKeyWindowsHello',
      alg: -257,
      rpId: 'webauthn.org',
      origin: 'https://webauthn.org',
      uv: true,
      want: { signCount: 1, userVerified: true, backedUp: false },
    },
  ] as const;

  it.each(VECTORS)('$name verifies the same way, and so do its mutations', async (v) => {
    const vector = helpers.server[v.json]!;
    const json: Json = { id: vector.id, rawId: vector.rawId, type: 'public-key', response: { ...vector.response }, clientExtensionResults: {} };
    const publicKey = coseFromPem(helpers.lib[v.pem]!, v.alg);
    expect(fastPathSupports(publicKey)).toBe(true);
    const challenge = (JSON.parse(Buffer.from(vector.response.clientDataJSON!, 'base64url').toString('utf8')) as { challenge: string }).challenge;
    const exp: AssertionExpectation = { challenge, origins: [v.origin], rpId: v.rpId, requireUserVerification: v.uv, publicKey };
    const diff = new Differential();
    expect(await diff.check('as recorded', json, exp)).toEqual(v.want);
    expect(verifyAssertionFast(parseAssertion(json), exp)).toEqual(v.want);
    expect(await diff.check('UV required', json, { ...exp, requireUserVerification: true })).toEqual(v.uv ? v.want : 'refused');
    expect(await diff.check('other origin', json, { ...exp, origins: ['https://example.org'] })).toBe('refused');
    expect(await diff.check('other RP ID', json, { ...exp, rpId: 'example.org' })).toBe('refused');
    expect(await diff.check('other challenge', json, { ...exp, challenge: `${challenge}x` })).toBe('refused');
    // Padding on or off changes nothing when it is right.
    for (const field of FIELDS) {
      const s = String(json.response[field]);
      const bare = s.replace(/=+$/, '');
      for (const form of [bare, bare + '='.repeat((4 - (bare.length % 4)) % 4)]) {
        const j = clone(json);
        j.response[field] = form;
        expect(await diff.check(`${field} as ${form.slice(-4)}`, j, exp)).toEqual(v.want);
      }
    }
    const rnd = prng(v.alg === -7 ? 0xfeed1 : 0xfeed2);
    for (let i = 0; i < 200; i++) {
      const j = clone(json);
      const field = pick(rnd, FIELDS);
      const s = String(j.response[field]);
      j.response[field] = rnd() < 0.5 ? mutateString(rnd, s) : b64(mutateBytes(rnd, Buffer.from(s, 'base64url')));
      await diff.check(`vector #${i} ${field}`, j, exp);
    }
    diff.expectClean();
  });
});

describe('public key cache', () => {
  it('parses a key once, and keeps keys apart', async () => {
    const a = await softCredential('ES256');
    const b = await softCredential('ES256');
    const c = await softCredential('EdDSA');
    const run = async (cred: typeof a, signer = cred) => {
      const challenge = b64(randomBytes(32));
      const json = await signer.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: signer.id, type: 'public-key' }] }, { origin: ORIGIN });
      return settle(() => verifyAssertionFast(parseAssertion(json), expectation(cred, challenge)));
    };

    clearKeyCache();
    expect(keyCacheStats()).toEqual({ parses: 0, hits: 0, size: 0 });
    expect(await run(a)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 0, size: 1 });
    expect(await run(a)).not.toBe('refused');
    // The same bytes in another array are the same key.
    const aCopy = { ...a, cose: new Uint8Array(Array.from(a.cose)) };
    expect(await run(aCopy, a)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 2, size: 1 });

    expect(await run(b)).not.toBe('refused');
    expect(await run(c)).not.toBe('refused');
    expect(keyCacheStats()).toEqual({ parses: 3, hits: 2, size: 3 });

    // Each cached KeyObject is its own credential's key and no other's.
    const keyA = cachedKeyObject(a.cose)!;
    const keyB = cachedKeyObject(b.cose)!;
    const keyC = cachedKeyObject(c.cose)!;
    const publicOf = (cred: typeof a) => createPublicKey(cred.auth.credentials[0]!.privateKey);
    expect(keyA.equals(publicOf(a))).toBe(true);
    expect(keyB.equals(publicOf(b))).toBe(true);
    expect(keyC.equals(publicOf(c))).toBe(true);
    expect(keyA.equals(keyB)).toBe(false);
    expect(keyA.equals(publicOf(b))).toBe(false);

    // Assertions signed by one credential are refused under the other's (cached) key, in both directions,
    // and each still verifies under its own afterwards.
    expect(await run(a, b)).toBe('refused');
    expect(await run(b, a)).toBe('refused');
    expect(await run(a)).not.toBe('refused');
    expect(await run(b)).not.toBe('refused');
    expect(keyCacheStats().parses).toBe(3);

    // verifyAssertionWith uses the same cache; clearing it forces a new parse.
    clearKeyCache();
    const challenge = b64(randomBytes(32));
    const json = await a.auth.authenticate({ challenge, rpId: RP_ID, allowCredentials: [{ id: a.id, type: 'public-key' }] }, { origin: ORIGIN });
    await verifyAssertionWith(parseAssertion(json), expectation(a, challenge));
    expect(keyCacheStats()).toEqual({ parses: 1, hits: 0, size: 1 });
  });
});
