import { randomBytes } from 'node:crypto';
import { generateRegistrationOptions } from '@simplewebauthn/server';
import { describe, expect, it } from 'vitest';
import { creationOptions, type CreationOptionsInput } from '../src/webauthn/creation-options.js';
import { SUPPORTED_ALGORITHMS } from '../src/webauthn/relying-party.js';

// passkeyd builds the creation options itself; SimpleWebAuthn's generateRegistrationOptions is the
// reference: for the same inputs, the same JSON, member for member and in the same order.

/** What generateRegistrationOptions gives for passkeyd's inputs, passed as passkeyd used to pass them. */
async function reference(input: CreationOptionsInput) {
  const options = await generateRegistrationOptions({
    rpName: input.rpName,
    rpID: input.rpId,
    userID: new Uint8Array(input.userHandle),
    userName: input.userName,
    userDisplayName: input.userDisplayName,
    challenge: new Uint8Array(input.challenge),
    timeout: input.timeoutMs,
    attestationType: input.attestation === 'indirect' ? 'none' : input.attestation,
    excludeCredentials: input.exclude.map((c) => (c.transports.length ? { id: c.id, transports: c.transports as never } : { id: c.id })),
    authenticatorSelection: {
      residentKey: 'required',
      userVerification: input.userVerification,
      ...(input.attachment ? { authenticatorAttachment: input.attachment } : {}),
    },
    supportedAlgorithmIDs: [...SUPPORTED_ALGORITHMS],
  });
  options.attestation = input.attestation as typeof options.attestation;
  return options;
}

function input(over: Partial<CreationOptionsInput> = {}): CreationOptionsInput {
  return {
    rpId: 'login.example.com',
    rpName: 'Example',
    userHandle: randomBytes(32),
    userName: 'alice@example.com',
    userDisplayName: 'Alice Example',
    exclude: [],
    userVerification: 'required',
    attachment: undefined,
    attestation: 'none',
    challenge: randomBytes(32),
    timeoutMs: 300_000,
    ...over,
  };
}

const ids = (n: number) => Array.from({ length: n }, () => randomBytes(16 + n).toString('base64url'));

describe('creation options (RegisterPasskey, sign-up)', () => {
  const cases: [string, Partial<CreationOptionsInput>][] = [
    ['no passkeys yet, defaults', {}],
    ['excluded credentials with and without transports', { exclude: ids(3).map((id, i) => ({ id, transports: i === 1 ? [] : ['internal', 'hybrid'].slice(0, i + 1) })) }],
    ['a platform authenticator asked for, user verification preferred', { attachment: 'platform', userVerification: 'preferred' }],
    ['a security key, verification discouraged', { attachment: 'cross-platform', userVerification: 'discouraged' }],
    ['direct attestation', { attestation: 'direct' }],
    ['indirect attestation (which SimpleWebAuthn types leave out)', { attestation: 'indirect' }],
    ['enterprise attestation', { attestation: 'enterprise' }],
    ['a display name with non-ASCII characters', { userName: 'zoë', userDisplayName: 'Zoë Ünal 🦊' }],
  ];
  for (const [name, over] of cases) {
    it(`are SimpleWebAuthn's, member for member: ${name}`, async () => {
      const i = input(over);
      const ours = creationOptions(i);
      expect(JSON.stringify(ours)).toBe(JSON.stringify(await reference(i)));
    });
  }

  it('carry the challenge and the user handle as unpadded base64url, and take the input as it is', () => {
    const i = input({ challenge: new Uint8Array(Buffer.alloc(31, 0xfb)), userHandle: new Uint8Array(Buffer.alloc(5, 0xff)) });
    const ours = creationOptions(i);
    expect(ours.challenge).toBe(Buffer.alloc(31, 0xfb).toString('base64url'));
    expect(ours.challenge).not.toMatch(/[=+/]/);
    expect(ours.user.id).toBe('______8');
    // A view into a larger buffer encodes only its own bytes.
    const big = randomBytes(64);
    expect(creationOptions(input({ challenge: big.subarray(16, 48) })).challenge).toBe(big.subarray(16, 48).toString('base64url'));
  });
});
