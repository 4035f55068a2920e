import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { loadTrustedMetadata } from '../src/webauthn/metadata.js';
import { createSoftAuthenticator, type SoftAuthenticatorOptions } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf, errorOf } from './helpers/codes.js';
import { createTestMds, type TestMds } from './helpers/fido-mds.js';
import { rest, restOk, uniqueName } from './helpers/machine.js';
import { creationOptionsOf, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const TRUSTED = '4e1a2b3c-0001-4000-8000-00000000aa01';
const REVOKED = '4e1a2b3c-0002-4000-8000-00000000aa02';
const COMPROMISED = '4e1a2b3c-0003-4000-8000-00000000aa03';
const UNLISTED = '4e1a2b3c-0004-4000-8000-00000000aa04';

let mds: TestMds;
const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-mds-'));

const srv = useTestServer(async () => {
  mds = await createTestMds();
  const blob = await mds.blob([
    { aaguid: TRUSTED, statuses: ['FIDO_CERTIFIED_L1'] },
    { aaguid: REVOKED, statuses: ['FIDO_CERTIFIED_L1', 'REVOKED'] },
    { aaguid: COMPROMISED, statuses: ['ATTESTATION_KEY_COMPROMISE'] },
  ]);
  writeFileSync(path.join(dir, 'blob.jwt'), blob);
  writeFileSync(path.join(dir, 'root.pem'), mds.rootPem);
  return { config: { 'fido-mds-file': path.join(dir, 'blob.jwt'), 'fido-mds-root': path.join(dir, 'root.pem') } };
});

const orgs = () => clientFor(OrganizationService, 'grpc', srv.url);

async function orgWithUser(trusted: boolean): Promise<{ orgId: string; userId: string }> {
  const { organizationId: orgId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
  if (trusted) await orgs().setLoginPolicy({ organizationId: orgId, policy: { requireTrustedAttestation: true } }, bearer(srv.admin));
  const username = uniqueName('user');
  const r = await restOk(
    srv.url,
    'POST',
    '/v2/users/human',
    { username, organization: { orgId }, profile: { givenName: 'A', familyName: 'B' }, email: { email: `${username}@example.com` } },
    srv.admin,
  );
  return { orgId, userId: r.userId };
}

const attempt = (userId: string, o: SoftAuthenticatorOptions, protocol: 'grpc' | 'connect' = 'connect') =>
  codeOf(registerPasskey(srv.url, { userId, token: srv.admin, protocol, authenticator: createSoftAuthenticator(o) }));

describe(`trusted attestation against a FIDO MDS3 BLOB (${BACKEND})`, () => {
  it('accepts a packed attestation chained to a listed root; refuses none, self, unlisted, unchained, revoked and compromised', async () => {
    const { orgId, userId } = await orgWithUser(true);
    // The policy asks for an attestation to check, over REST and gRPC alike.
    const begun = await clientFor(UserService, 'grpc', srv.url).registerPasskey({ userId }, bearer(srv.admin));
    expect(creationOptionsOf(begun.publicKeyCredentialCreationOptions).attestation).toBe('direct');
    const viaRest = await restOk(srv.url, 'POST', `/v2/users/${userId}/passkeys`, {}, srv.admin);
    expect(viaRest.publicKeyCredentialCreationOptions.publicKey.attestation).toBe('direct');

    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed', attestationCertificate: mds.chained }, 'grpc')).toBe('ok');
    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed', attestationCertificate: mds.chained })).toBe('ok');

    const none = await errorOf(registerPasskey(srv.url, { userId, token: srv.admin, authenticator: createSoftAuthenticator({ aaguid: TRUSTED }) }));
    expect(none.code).toBe(Code.PermissionDenied);
    expect(none.rawMessage).toContain('no attestation certificate');
    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed' }, 'grpc')).toBe(Code.PermissionDenied);
    expect(await attempt(userId, { aaguid: UNLISTED, attestation: 'packed', attestationCertificate: mds.unchained })).toBe(Code.PermissionDenied);
    // A listed AAGUID whose certificate does not chain to the statement's root fails verification.
    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed', attestationCertificate: mds.unchained }, 'grpc')).toBe(Code.InvalidArgument);
    const revoked = await errorOf(
      registerPasskey(srv.url, {
        userId,
        token: srv.admin,
        authenticator: createSoftAuthenticator({ aaguid: REVOKED, attestation: 'packed', attestationCertificate: mds.chained }),
      }),
    );
    expect(revoked.code).toBe(Code.PermissionDenied);
    expect(revoked.rawMessage).toContain('REVOKED');
    // SimpleWebAuthn refuses a compromised authenticator while verifying (400); the policy would too (403).
    expect([Code.InvalidArgument, Code.PermissionDenied]).toContain(await attempt(userId, { aaguid: COMPROMISED, attestation: 'packed', attestationCertificate: mds.chained }));
    const listed = await restOk(srv.url, 'POST', `/v2/users/${userId}/passkeys/_search`, {}, srv.admin);
    expect(listed.result.map((p: { aaguid: string }) => p.aaguid)).toEqual([TRUSTED, TRUSTED]);

    // Off again: "none" registers as before.
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: {} }, srv.admin);
    expect(await attempt(userId, { aaguid: TRUSTED })).toBe('ok');
    expect((await rest(srv.url, 'POST', `/v2/users/${userId}/passkeys`, {}, srv.admin)).json.publicKeyCredentialCreationOptions.publicKey.attestation).toBe('none');
  });

  it('an organization without the requirement is not affected, except that a listed AAGUID must chain to its root', async () => {
    const { userId } = await orgWithUser(false);
    expect(await attempt(userId, { aaguid: UNLISTED })).toBe('ok');
    expect(await attempt(userId, { aaguid: REVOKED })).toBe('ok');
    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed', attestationCertificate: mds.chained })).toBe('ok');
    expect(await attempt(userId, { aaguid: TRUSTED, attestation: 'packed', attestationCertificate: mds.unchained })).toBe(Code.InvalidArgument);
  });

  it('a BLOB signed under another root does not load (the start fails with a message)', async () => {
    const file = path.join(dir, 'stranger.jwt');
    writeFileSync(file, await mds.blob([{ aaguid: TRUSTED, statuses: [] }], { signer: 'stranger' }));
    await expect(loadTrustedMetadata(file, mds.rootPem)).rejects.toThrow(/PASSKEYD_FIDO_MDS_FILE .*the BLOB does not verify/);
  });
});
