/** The fast assertion verifier on hand-built COSE keys of other types, and keys it hands to SimpleWebAuthn. */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyAssertionFast } from '../src/webauthn/assertion-verifier.js';
import { UnsupportedKeyError, fastPathSupports } from '../src/webauthn/credential-keys.js';
import { parseAssertion } from '../src/webauthn/authentication-response.js';
import { prng } from './helpers/prng.js';
import {
  type Cred,
  Differential,
  type Outcome,
  assertionOf,
  authDataOf,
  b64,
  cbor,
  clientDataText,
  cose,
  derToRaw,
  ecCredential,
  expectation,
  handCredential,
  jwkOf,
  rsaCredential,
  sha256,
  softCredential,
} from './helpers/assertion-builders.js';
import { derVariants, randomMutation } from './helpers/assertion-cases.js';

describe('other key types (hand-built COSE keys)', () => {
  const creds = (): Cred[] => [
    ecCredential('ES384 P-384', 'P-384', 2, -35, 'sha384'),
    ecCredential('ES512 P-521', 'P-521', 3, -36, 'sha512'),
    ecCredential('ES256 alg on P-384 (SHA-256, P-384 sizes)', 'P-384', 2, -7, 'sha256'),
    ecCredential('RS256 alg on P-256 (ECDSA SHA-256)', 'P-256', 1, -257, 'sha256'),
    ecCredential('EdDSA alg on P-256 (ECDSA SHA-512)', 'P-256', 1, -8, 'sha512'),
    ecCredential('RS1 alg on P-256 (ECDSA SHA-1)', 'P-256', 1, -65535, 'sha1'),
    rsaCredential('PS256', -37, 'sha256', 32),
    rsaCredential('PS384', -38, 'sha384', 48),
    rsaCredential('PS512 on 1024-bit key (salt does not fit)', -39, 'sha512', 0, 1024),
    rsaCredential('PS256 signed with salt 20', -37, 'sha256', 20),
    rsaCredential('RS384', -258, 'sha384'),
    rsaCredential('RS512', -259, 'sha512'),
    rsaCredential('RS1', -65535, 'sha1'),
    rsaCredential('RS256 on 1024-bit key', -257, 'sha256', undefined, 1024),
  ];

  it('all take the fast path and agree with SimpleWebAuthn, valid and mutated', async () => {
    const diff = new Differential();
    const rnd = prng(0x0ddba11);
    for (const cred of creds()) {
      expect(fastPathSupports(cred.cose), cred.name).toBe(true);
      const challenge = b64(randomBytes(32));
      const exp = expectation(cred, challenge);
      const valid = assertionOf(cred, authDataOf(), Buffer.from(clientDataText(challenge)));
      const out = await diff.check(`${cred.name} valid`, valid, exp);
      if (!cred.name.includes('does not fit') && !cred.name.includes('salt 20')) expect(out, cred.name).toEqual({ signCount: 1, userVerified: true, backedUp: true });
      else expect(out, cred.name).toBe('refused');
      for (let i = 0; i < 40; i++) {
        const { label, json } = randomMutation(rnd, cred, valid);
        await diff.check(`${cred.name} #${i} ${label}`, json, exp);
      }
    }
    expect(diff.accepted).toBeGreaterThan(20);
    diff.expectClean();
  });

  it('ECDSA signature encodings are judged like SimpleWebAuthn (BER leniencies included)', async () => {
    const diff = new Differential();
    const seen = new Map<string, Set<string>>();
    const ecCreds: Cred[] = [await softCredential('ES256'), ecCredential('ES384 P-384', 'P-384', 2, -35, 'sha384'), ecCredential('ES512 P-521', 'P-521', 3, -36, 'sha512')];
    for (const cred of ecCreds) {
      const size = cred.ecSize!;
      // Several signatures, so r and s with and without the high bit set (and shorter ones) all occur.
      for (let i = 0; i < 12; i++) {
        const challenge = b64(randomBytes(32));
        const ad = authDataOf({ counter: i });
        const cd = Buffer.from(clientDataText(challenge));
        const der = cred.sign(Buffer.concat([ad, sha256(cd)]));
        const raw = derToRaw(der, size);
        for (const [name, sig] of derVariants(raw, size, cred.order)) {
          const out = await diff.check(`${cred.name} ${name} #${i}`, assertionOf(cred, ad, cd, sig), expectation(cred, challenge));
          const key = `${cred.name}: ${name}`;
          if (!seen.has(key)) seen.set(key, new Set());
          seen.get(key)!.add(out === 'refused' ? 'refused' : 'accepted');
        }
      }
    }
    // What SimpleWebAuthn does with some of them (documenting its leniency, which the fast path follows).
    expect(seen.get('ES256: canonical')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: trailing garbage')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: context tag [0]')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: indefinite length')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: extra malformed BOOLEAN')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: high S (n - s)')).toEqual(new Set(['accepted']));
    expect(seen.get('ES256: raw r || s')).toEqual(new Set(['refused']));
    expect(seen.get('ES256: SET tag')).toEqual(new Set(['refused']));
    diff.expectClean();
  });

  it('EdDSA signature edge cases', async () => {
    const cred = await softCredential('EdDSA');
    const diff = new Differential();
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    for (let i = 0; i < 6; i++) {
      const challenge = b64(randomBytes(32));
      const ad = authDataOf({ counter: i });
      const cd = Buffer.from(clientDataText(challenge));
      const sig = cred.sign(Buffer.concat([ad, sha256(cd)]));
      const sLe = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`);
      const sPlusL = Buffer.from((sLe + L).toString(16).padStart(64, '0'), 'hex').reverse();
      for (const [name, s] of [
        ['valid', sig],
        ['S + L', Buffer.concat([sig.subarray(0, 32), sPlusL])],
        ['63 bytes', sig.subarray(0, 63)],
        ['65 bytes', Buffer.concat([sig, Buffer.from([0])])],
        ['all zero', Buffer.alloc(64)],
      ] as const) {
        await diff.check(`EdDSA ${name}`, assertionOf(cred, ad, cd, s), expectation(cred, challenge));
      }
    }
    diff.expectClean();
  });
});

describe('keys the fast path does not take', () => {
  it('go to SimpleWebAuthn through verifyAssertionWith; verifyAssertionFast says so', async () => {
    const ed = generateKeyPairSync('ed25519');
    const edX = jwkOf(ed.publicKey).x!;
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pj = jwkOf(p256.publicKey);
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const kj = jwkOf(k1.publicKey);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rj = jwkOf(rsa.publicKey);
    // A P-256 key whose x has a leading zero byte, sent as 31 bytes.
    let short: { privateKey: KeyObject; x: Buffer; y: Buffer } | undefined;
    for (let i = 0; i < 5000 && !short; i++) {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const j = jwkOf(k.publicKey);
      if (j.x![0] === 0) short = { privateKey: k.privateKey, x: j.x!.subarray(1), y: j.y! };
    }
    const edSign = (d: Buffer, k: KeyObject) => sign(null, d, k);
    const es256 = (d: Buffer, k: KeyObject) => sign('sha256', d, k);
    const fallbacks: Cred[] = [
      handCredential(
        'OKP Ed25519 with alg ES256',
        ed.privateKey,
        cose([
          [1, 1],
          [3, -7],
          [-1, 6],
          [-2, edX],
        ]),
        edSign,
      ),
      handCredential(
        'OKP with string crv',
        ed.privateKey,
        cose([
          [1, 1],
          [3, -8],
          [-1, 'Ed25519'],
          [-2, edX],
        ]),
        edSign,
      ),
      handCredential(
        'OKP without alg',
        ed.privateKey,
        cose([
          [1, 1],
          [-1, 6],
          [-2, edX],
        ]),
        edSign,
      ),
      handCredential(
        'EC2 P-256 with alg ES256K',
        p256.privateKey,
        cose([
          [1, 2],
          [3, -47],
          [-1, 1],
          [-2, pj.x!],
          [-3, pj.y!],
        ]),
        es256,
      ),
      handCredential(
        'EC2 secp256k1',
        k1.privateKey,
        cose([
          [1, 2],
          [3, -47],
          [-1, 8],
          [-2, kj.x!],
          [-3, kj.y!],
        ]),
        es256,
      ),
      handCredential(
        'EC2 without y',
        p256.privateKey,
        cose([
          [1, 2],
          [3, -7],
          [-1, 1],
          [-2, pj.x!],
        ]),
        es256,
      ),
      handCredential(
        'EC2 with a y off the curve',
        p256.privateKey,
        cose([
          [1, 2],
          [3, -7],
          [-1, 1],
          [-2, pj.x!],
          [-3, Buffer.from(pj.y!).fill(7, 0, 4)],
        ]),
        es256,
      ),
      handCredential(
        'EC2 kty as text',
        p256.privateKey,
        cose([
          [1, 'EC2'],
          [3, -7],
          [-1, 1],
          [-2, pj.x!],
          [-3, pj.y!],
        ]),
        es256,
      ),
      handCredential(
        'RSA with alg ES256',
        rsa.privateKey,
        cose([
          [1, 3],
          [3, -7],
          [-1, rj.n!],
          [-2, rj.e!],
        ]),
        (d, k) => sign('sha256', d, k),
      ),
      handCredential(
        'RSA n with a leading zero byte',
        rsa.privateKey,
        cose([
          [1, 3],
          [3, -257],
          [-1, Buffer.concat([Buffer.from([0]), rj.n!])],
          [-2, rj.e!],
        ]),
        (d, k) => sign('sha256', d, k),
      ),
      handCredential(
        'AKP (ML-DSA-44)',
        ed.privateKey,
        cose([
          [1, 7],
          [3, -48],
          [-1, randomBytes(1312)],
        ]),
        edSign,
      ),
      handCredential('not a map', ed.privateKey, cbor(7), edSign),
      handCredential('not CBOR', ed.privateKey, Buffer.from([0xff, 0x00]), edSign),
    ];
    if (short)
      fallbacks.push(
        handCredential(
          'EC2 x of 31 bytes',
          short.privateKey,
          cose([
            [1, 2],
            [3, -7],
            [-1, 1],
            [-2, short.x],
            [-3, short.y],
          ]),
          es256,
        ),
      );

    const diff = new Differential();
    const outcomes = new Map<string, Outcome>();
    for (const cred of fallbacks) {
      expect(fastPathSupports(cred.cose), cred.name).toBe(false);
      const challenge = b64(randomBytes(32));
      const exp = expectation(cred, challenge);
      const json = assertionOf(cred, authDataOf(), Buffer.from(clientDataText(challenge)));
      const parsed = parseAssertion(json);
      expect(() => verifyAssertionFast(parsed, exp), cred.name).toThrow(UnsupportedKeyError);
      outcomes.set(cred.name, await diff.check(`fallback ${cred.name}`, json, exp));
    }
    // SimpleWebAuthn verifies Ed25519 whatever (valid) alg the OKP key names, and accepts RSA n with a leading zero.
    expect(outcomes.get('OKP Ed25519 with alg ES256')).not.toBe('refused');
    expect(outcomes.get('RSA n with a leading zero byte')).not.toBe('refused');
    expect(outcomes.get('EC2 secp256k1')).toBe('refused');
    expect(outcomes.get('AKP (ML-DSA-44)')).toBe('refused');
    diff.expectClean();
  });
});
