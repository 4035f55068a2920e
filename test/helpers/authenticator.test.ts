import { describe, it, expect } from 'vitest';
import { generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse } from '@simplewebauthn/server';
import { createSoftAuthenticator, fromB64url, b64url, type SoftAlg } from './authenticator.js';

const origin = 'http://localhost:8080';
const rpID = 'localhost';

function regOptions(attestationType: 'none' | 'direct', supportedAlgorithmIDs = [-8, -7, -257]) {
  return generateRegistrationOptions({ rpName: 'Test RP', rpID, userName: 'alice', attestationType, supportedAlgorithmIDs });
}

async function registerAndVerify(auth: ReturnType<typeof createSoftAuthenticator>, attestationType: 'none' | 'direct') {
  const options = await regOptions(attestationType);
  const response = await auth.register(options, { origin });
  const result = await verifyRegistrationResponse({
    response,
    expectedChallenge: options.challenge,
    expectedOrigin: origin,
    expectedRPID: rpID,
    requireUserVerification: true,
  });
  return { options, response, result };
}

describe('soft authenticator', () => {
  const algs: SoftAlg[] = ['ES256', 'EdDSA', 'RS256'];
  const atts = ['none', 'packed'] as const;
  const counters = ['increment', 'zero'] as const;

  for (const alg of algs) {
    for (const attestation of atts) {
      for (const counter of counters) {
        it(`${alg} / ${attestation} / counter=${counter}: registers and authenticates`, async () => {
          const auth = createSoftAuthenticator({ alg, attestation, counter });
          const { options, result } = await registerAndVerify(auth, attestation === 'packed' ? 'direct' : 'none');
          expect(result.verified).toBe(true);
          if (!result.verified) return;
          const info = result.registrationInfo;
          expect(info.fmt).toBe(attestation);
          expect(info.userVerified).toBe(true);
          expect(info.credentialDeviceType).toBe('multiDevice');
          expect(info.credentialBackedUp).toBe(true);
          expect(info.credential.counter).toBe(0);
          expect(info.credential.id).toBe(auth.credentials[0]!.id);

          const authOptions = await generateAuthenticationOptions({
            rpID,
            allowCredentials: [{ id: info.credential.id }],
          });
          const assertion = await auth.authenticate(authOptions, { origin });
          expect(assertion.response.userHandle).toBe(options.user.id);
          const verified = await verifyAuthenticationResponse({
            response: assertion,
            expectedChallenge: authOptions.challenge,
            expectedOrigin: origin,
            expectedRPID: rpID,
            credential: info.credential,
            requireUserVerification: true,
          });
          expect(verified.verified).toBe(true);
          expect(verified.authenticationInfo.newCounter).toBe(counter === 'increment' ? 1 : 0);
        });
      }
    }
  }

  it('supports discoverable (empty allowCredentials) assertions and forced counters', async () => {
    const auth = createSoftAuthenticator();
    const { result } = await registerAndVerify(auth, 'none');
    if (!result.verified) throw new Error('registration failed');
    const authOptions = await generateAuthenticationOptions({ rpID });
    const assertion = await auth.authenticate(authOptions, { origin, counter: 42 });
    expect(assertion.id).toBe(auth.credentials[0]!.id);
    const authData = fromB64url(assertion.response.authenticatorData);
    expect(authData.readUInt32BE(33)).toBe(42);
    expect(authData[32]! & 0x40).toBe(0); // no AT flag in assertions
    const verified = await verifyAuthenticationResponse({
      response: assertion,
      expectedChallenge: authOptions.challenge,
      expectedOrigin: origin,
      expectedRPID: rpID,
      credential: result.registrationInfo.credential,
    });
    expect(verified.authenticationInfo.newCounter).toBe(42);
    expect(b64url(fromB64url(assertion.rawId))).toBe(assertion.rawId);
  });

  it('rejects a registration from the wrong origin', async () => {
    const auth = createSoftAuthenticator();
    const options = await regOptions('none');
    const response = await auth.register(options, { origin: 'https://evil.example' });
    await expect(verifyRegistrationResponse({ response, expectedChallenge: options.challenge, expectedOrigin: origin, expectedRPID: rpID })).rejects.toThrow(/origin/i);
  });

  it('rejects UV=false when user verification is required', async () => {
    const auth = createSoftAuthenticator();
    const options = await regOptions('none');
    const response = await auth.register(options, { origin, userVerified: false });
    await expect(
      verifyRegistrationResponse({
        response,
        expectedChallenge: options.challenge,
        expectedOrigin: origin,
        expectedRPID: rpID,
        requireUserVerification: true,
      }),
    ).rejects.toThrow(/verif/i);

    const { result } = await registerAndVerify(auth, 'none');
    if (!result.verified) throw new Error('registration failed');
    const authOptions = await generateAuthenticationOptions({ rpID });
    const assertion = await auth.authenticate(authOptions, { origin, userVerified: false, credentialId: result.registrationInfo.credential.id });
    await expect(
      verifyAuthenticationResponse({
        response: assertion,
        expectedChallenge: authOptions.challenge,
        expectedOrigin: origin,
        expectedRPID: rpID,
        credential: result.registrationInfo.credential,
        requireUserVerification: true,
      }),
    ).rejects.toThrow(/verif/i);
  });

  it('rejects assertions with the wrong origin, rpId or challenge', async () => {
    const auth = createSoftAuthenticator();
    const { result } = await registerAndVerify(auth, 'none');
    if (!result.verified) throw new Error('registration failed');
    const authOptions = await generateAuthenticationOptions({ rpID });
    const verify = (response: Awaited<ReturnType<typeof auth.authenticate>>) =>
      verifyAuthenticationResponse({
        response,
        expectedChallenge: authOptions.challenge,
        expectedOrigin: origin,
        expectedRPID: rpID,
        credential: result.registrationInfo.credential,
      });
    await expect(verify(await auth.authenticate(authOptions, { origin: 'https://evil.example' }))).rejects.toThrow(/origin/i);
    await expect(verify(await auth.authenticate(authOptions, { origin, rpId: 'evil.example' }))).rejects.toThrow(/RP ID/i);
    await expect(verify(await auth.authenticate(authOptions, { origin, challenge: b64url(new Uint8Array(32)) }))).rejects.toThrow(/challenge/i);
  });

  it('honors excludeCredentials and pubKeyCredParams', async () => {
    const auth = createSoftAuthenticator({ alg: 'EdDSA' });
    await registerAndVerify(auth, 'none');
    const options = await generateRegistrationOptions({
      rpName: 'Test RP',
      rpID,
      userName: 'alice',
      excludeCredentials: [{ id: auth.credentials[0]!.id }],
    });
    await expect(auth.register(options, { origin })).rejects.toThrow(/excluded/);
    await expect(auth.register(await regOptions('none', [-7, -257]), { origin })).rejects.toThrow(/not offered/);
  });
});
