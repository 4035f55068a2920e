import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { AttestationConveyance, UserVerificationPolicy } from '../gen/passkeyd/org/v2/org_pb.js';
import { UserVerificationRequirement } from '../gen/passkeyd/session/v2/session_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf, errorOf } from './helpers/codes.js';
import { beginLogin, finishLogin, sign } from './helpers/login.js';
import { rest, restOk, uniqueName } from './helpers/machine.js';
import { creationOptionsOf, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer({ config: { 'availability-min-latency-ms': '0', 'availability-rate-limit': '1000' } });

const orgs = () => clientFor(OrganizationService, 'grpc', srv.url);
const users = () => clientFor(UserService, 'grpc', srv.url);

/** A new organization (over gRPC) with one human user in it (over REST); their ids and the user's name. */
async function orgWithUser(): Promise<{ orgId: string; userId: string; username: string }> {
  const { organizationId: orgId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
  return orgWithUserIn(orgId);
}

/** A new human user (over REST) in an organization. */
async function orgWithUserIn(orgId: string): Promise<{ orgId: string; userId: string; username: string }> {
  const username = uniqueName('user');
  const r = await restOk(
    srv.url,
    'POST',
    '/v2/users/human',
    { username, organization: { orgId }, profile: { givenName: 'A', familyName: 'B' }, email: { email: `${username}@example.com` } },
    srv.admin,
  );
  return { orgId, userId: r.userId, username };
}

async function orgAdminToken(orgId: string): Promise<string> {
  return (await srv.app.tokens.issue({ subject: uniqueName('admin'), orgId, roles: ['org_admin'], ttlSeconds: 600 })).token;
}

async function policyEvents(orgId: string): Promise<string[]> {
  const rows = await srv.app.store.db.selectFrom('events').select('event_type').where('aggregate_type', '=', 'org').where('aggregate_id', '=', orgId).orderBy('sequence').execute();
  return rows.map((r) => r.event_type).filter((t) => t.startsWith('org.policy.'));
}

/** CheckPasskeyAvailability over REST (proto3 JSON leaves out false members, so they are filled in here). */
async function availability(loginName: string): Promise<{ hasPasskey: boolean; ssoRequired: boolean }> {
  const r = await restOk(srv.url, 'POST', '/v2/passkeys/availability', { loginName });
  return { hasPasskey: r.hasPasskey ?? false, ssoRequired: r.ssoRequired ?? false };
}

describe(`login policy (${BACKEND})`, () => {
  it('is read and set over REST and gRPC, recorded as events, and reset to the instance default', async () => {
    const { orgId } = await orgWithUser();
    const token = await orgAdminToken(orgId);
    const inherited = await restOk(srv.url, 'GET', `/v2/organizations/${orgId}/login_policy`, undefined, token);
    expect(inherited.isDefault).toBe(true);
    expect(inherited.policy.maxPasskeysPerUser).toBe(10);

    const set = await restOk(
      srv.url,
      'PUT',
      `/v2/organizations/${orgId}/login_policy`,
      { policy: { ssoRequired: true, maxPasskeysPerUser: 3, deniedAaguids: ['AAAAAAAA-0000-0000-0000-000000000001'] } },
      token,
    );
    expect(set.details.resourceOwner).toBe(orgId);
    const read = await orgs().getLoginPolicy({ organizationId: orgId }, bearer(token));
    expect(read.isDefault).toBe(false);
    expect(read.policy?.ssoRequired).toBe(true);
    expect(read.policy?.maxPasskeysPerUser).toBe(3);
    expect(read.policy?.deniedAaguids).toEqual(['aaaaaaaa-0000-0000-0000-000000000001']);
    expect(read.details?.sequence).toBe(BigInt(set.details.sequence));

    await orgs().resetLoginPolicy({ organizationId: orgId }, bearer(token));
    expect((await orgs().getLoginPolicy({ organizationId: orgId }, bearer(token))).isDefault).toBe(true);
    expect(await policyEvents(orgId)).toEqual(['org.policy.login.set', 'org.policy.login.reset']);

    // Bad input is the client's mistake; another organization's admin is refused; the default is instance-admin only.
    const bad = await rest(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { allowedAaguids: ['not-an-aaguid'] } }, token);
    expect(bad.status).toBe(400);
    const other = await orgWithUser();
    expect(await codeOf(orgs().getLoginPolicy({ organizationId: other.orgId }, bearer(token)))).toBe(Code.PermissionDenied);
    expect((await rest(srv.url, 'PUT', '/v2/login_policy', { policy: {} }, token)).status).toBe(403);
    expect(await codeOf(orgs().getLoginPolicy({ organizationId: 'no-such-org' }, bearer(srv.admin)))).toBe(Code.NotFound);
  });

  it('sso_required: registration and passkey login 403, availability and ListPasskeys say so; other organizations unaffected; off again restores', async () => {
    const sso = await orgWithUser();
    const plain = await orgWithUser();
    const before = await registerPasskey(srv.url, { userId: sso.userId, token: srv.admin, protocol: 'grpc' });
    await orgs().setLoginPolicy({ organizationId: sso.orgId, policy: { ssoRequired: true } }, bearer(srv.admin));

    const viaGrpc = await errorOf(users().registerPasskey({ userId: sso.userId }, bearer(srv.admin)));
    expect(viaGrpc.code).toBe(Code.PermissionDenied);
    expect(viaGrpc.rawMessage).toContain('SSO');
    const viaRest = await rest(srv.url, 'POST', `/v2/users/${sso.userId}/passkeys`, {}, srv.admin);
    expect(viaRest.status).toBe(403);
    expect(await codeOf(beginLogin(srv.url, { loginName: sso.username, protocol: 'grpc' }))).toBe(Code.PermissionDenied);
    expect((await rest(srv.url, 'POST', '/v2/sessions', { checks: { user: { loginName: sso.username } }, challenges: { webAuthN: { domain: '' } } })).status).toBe(403);
    // A usernameless login (the user is known only from the assertion) with the passkey from before: refused at SetSession.
    const usernameless = async () => {
      const begun = await beginLogin(srv.url, { protocol: 'grpc' });
      return codeOf(finishLogin(srv.url, begun.sessionId, await sign(before.authenticator, begun), { protocol: 'grpc' }));
    };
    expect(await usernameless()).toBe(Code.PermissionDenied);

    expect(await availability(sso.username)).toEqual({ hasPasskey: true, ssoRequired: true });
    expect((await users().checkPasskeyAvailability({ loginName: sso.username })).ssoRequired).toBe(true);
    expect((await users().listPasskeys({ userId: sso.userId }, bearer(srv.admin))).ssoRequired).toBe(true);
    const listed = await restOk(srv.url, 'POST', `/v2/users/${sso.userId}/passkeys/_search`, {}, srv.admin);
    expect(listed.ssoRequired).toBe(true);
    expect(listed.result[0].id).toBe(before.passkeyId);

    // The organization next door registers and signs in as before.
    await registerPasskey(srv.url, { userId: plain.userId, token: srv.admin, protocol: 'grpc' });
    expect(await availability(plain.username)).toEqual({ hasPasskey: true, ssoRequired: false });
    expect(await codeOf(beginLogin(srv.url, { loginName: plain.username }))).toBe('ok');
    expect((await restOk(srv.url, 'POST', `/v2/users/${plain.userId}/passkeys/_search`, {}, srv.admin)).ssoRequired).toBeFalsy();

    await restOk(srv.url, 'PUT', `/v2/organizations/${sso.orgId}/login_policy`, { policy: { ssoRequired: false } }, srv.admin);
    expect(await codeOf(registerPasskey(srv.url, { userId: sso.userId, token: srv.admin }))).toBe('ok');
    expect(await availability(sso.username)).toEqual({ hasPasskey: true, ssoRequired: false });
    expect(await codeOf(beginLogin(srv.url, { loginName: sso.username }))).toBe('ok');
    expect(await usernameless()).toBe('ok');
  });

  it('availability of an unknown name follows the default organization, with the same shape as a known one', async () => {
    const unknown = uniqueName('nobody');
    const knownName = uniqueName('known');
    await restOk(
      srv.url,
      'POST',
      '/v2/users/human',
      { username: knownName, profile: { givenName: 'A', familyName: 'B' }, email: { email: `${knownName}@example.com` } },
      srv.admin,
    );
    const raw = async (loginName: string) => (await rest(srv.url, 'POST', '/v2/passkeys/availability', { loginName })).json;
    expect(await raw(unknown)).toEqual(await raw(knownName));
    expect(await availability(unknown)).toEqual({ hasPasskey: false, ssoRequired: false });
    await orgs().setDefaultLoginPolicy({ policy: { ssoRequired: true } }, bearer(srv.admin));
    try {
      expect(await availability(unknown)).toEqual({ hasPasskey: false, ssoRequired: true });
      expect(await raw(unknown)).toEqual(await raw(knownName));
      expect((await users().checkPasskeyAvailability({ loginName: unknown })).ssoRequired).toBe(true);
      expect((await orgs().getDefaultLoginPolicy({}, bearer(srv.admin))).policy?.ssoRequired).toBe(true);
      // An organization with its own policy is not affected by the default.
      const own = await orgWithUser();
      await orgs().setLoginPolicy({ organizationId: own.orgId, policy: {} }, bearer(srv.admin));
      expect((await availability(own.username)).ssoRequired).toBe(false);
      expect(await policyEvents('')).toContain('org.policy.login.set');
    } finally {
      await restOk(srv.url, 'PUT', '/v2/login_policy', { policy: {} }, srv.admin);
    }
    expect(await availability(unknown)).toEqual({ hasPasskey: false, ssoRequired: false });
  });

  it('max_passkeys_per_user 1: the second registration is 409 over REST and gRPC; removing the first allows a new one', async () => {
    const { orgId, userId } = await orgWithUser();
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { maxPasskeysPerUser: 1 } }, srv.admin);
    const first = await registerPasskey(srv.url, { userId, token: srv.admin });
    const second = await errorOf(users().registerPasskey({ userId }, bearer(srv.admin)));
    expect(second.code).toBe(Code.AlreadyExists);
    expect(second.rawMessage).toContain('max_passkeys_per_user 1');
    expect((await rest(srv.url, 'POST', `/v2/users/${userId}/passkeys`, {}, srv.admin)).status).toBe(409);

    // Two registrations begun before either completes: the second to finish is refused too.
    await restOk(srv.url, 'DELETE', `/v2/users/${userId}/passkeys/${first.passkeyId}?force=true`, undefined, srv.admin);
    const a = await users().registerPasskey({ userId }, bearer(srv.admin));
    const b = await users().registerPasskey({ userId }, bearer(srv.admin));
    const finish = async (begun: typeof a) => {
      const credential = await createSoftAuthenticator().register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), { origin: 'http://localhost:8080' });
      return users().verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: credential as never, passkeyName: 'x' }, bearer(srv.admin));
    };
    expect(await codeOf(finish(a))).toBe('ok');
    expect(await codeOf(finish(b))).toBe(Code.AlreadyExists);

    await orgs().setLoginPolicy({ organizationId: orgId, policy: { maxPasskeysPerUser: 2 } }, bearer(srv.admin));
    expect(await codeOf(registerPasskey(srv.url, { userId, token: srv.admin }))).toBe('ok');
  });

  it('max_passkeys_per_user 1: two registrations verified at the same moment store one passkey, the other is 409', async () => {
    const { orgId } = await orgWithUser();
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { maxPasskeysPerUser: 1 } }, bearer(srv.admin));
    for (let round = 0; round < 4; round++) {
      const { userId } = await orgWithUserIn(orgId);
      const begun = [await users().registerPasskey({ userId }, bearer(srv.admin)), await users().registerPasskey({ userId }, bearer(srv.admin))];
      // Both responses are signed before either is sent, so the two verifications race in the server.
      const signed = await Promise.all(
        begun.map((b) => createSoftAuthenticator().register(creationOptionsOf(b.publicKeyCredentialCreationOptions), { origin: 'http://localhost:8080' })),
      );
      const codes = await Promise.all(
        begun.map((b, i) =>
          codeOf(users().verifyPasskeyRegistration({ userId, passkeyId: b.passkeyId, publicKeyCredential: signed[i] as never, passkeyName: `p${i}` }, bearer(srv.admin))),
        ),
      );
      expect(codes.sort(), `round ${round}`).toEqual(['ok', Code.AlreadyExists].sort());
      expect((await users().listPasskeys({ userId }, bearer(srv.admin))).result).toHaveLength(1);
    }
  });

  it('allowed and denied AAGUIDs decide which authenticators may register', async () => {
    const { orgId, userId } = await orgWithUser();
    const aaguid = 'f8a011f3-8c0a-4d15-8006-17111f9edc7d';
    const attempt = (protocol: 'grpc' | 'connect') =>
      codeOf(registerPasskey(srv.url, { userId, token: srv.admin, protocol, authenticator: createSoftAuthenticator({ aaguid, attestation: 'packed' }) }));
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { deniedAaguids: [aaguid] } }, srv.admin);
    expect(await attempt('grpc')).toBe(Code.PermissionDenied);
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { allowedAaguids: ['00000000-0000-0000-0000-000000000001'] } }, srv.admin);
    expect(await attempt('connect')).toBe(Code.PermissionDenied);
    expect(await codeOf(registerPasskey(srv.url, { userId, token: srv.admin }))).toBe(Code.PermissionDenied);
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { allowedAaguids: [aaguid.toUpperCase()] } }, srv.admin);
    expect(await attempt('grpc')).toBe('ok');
    await orgs().resetLoginPolicy({ organizationId: orgId }, bearer(srv.admin));
    expect(await codeOf(registerPasskey(srv.url, { userId, token: srv.admin }))).toBe('ok');
  });

  it('attestation: the conveyance registration asks for, over gRPC and REST; another organization and a reset keep the default', async () => {
    const { orgId, userId } = await orgWithUser();
    const other = await orgWithUser();
    const conveyanceOf = async (id: string) => creationOptionsOf((await users().registerPasskey({ userId: id }, bearer(srv.admin))).publicKeyCredentialCreationOptions).attestation;
    const overRest = async (id: string) => (await restOk(srv.url, 'POST', `/v2/users/${id}/passkeys`, {}, srv.admin)).publicKeyCredentialCreationOptions.publicKey.attestation;
    expect([await conveyanceOf(userId), await overRest(userId)]).toEqual(['none', 'none']);
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { attestation: AttestationConveyance.INDIRECT } }, bearer(srv.admin));
    expect([await conveyanceOf(userId), await overRest(userId)]).toEqual(['indirect', 'indirect']);
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { attestation: 'ATTESTATION_CONVEYANCE_ENTERPRISE' } }, srv.admin);
    expect([await conveyanceOf(userId), await overRest(userId)]).toEqual(['enterprise', 'enterprise']);
    // A passkey registers under it (the software authenticator's attestation is its own choice).
    expect(await codeOf(registerPasskey(srv.url, { userId, token: srv.admin, authenticator: createSoftAuthenticator({ attestation: 'packed' }) }))).toBe('ok');
    expect(await conveyanceOf(other.userId)).toBe('none');
    await orgs().resetLoginPolicy({ organizationId: orgId }, bearer(srv.admin));
    expect(await conveyanceOf(userId)).toBe('none');
    expect(await policyEvents(orgId)).toEqual(['org.policy.login.set', 'org.policy.login.set', 'org.policy.login.reset']);
  });

  it('user_verification: preferred is what registration and login ask for; required again restores it', async () => {
    const { orgId, userId, username } = await orgWithUser();
    await registerPasskey(srv.url, { userId, token: srv.admin });
    const uvOf = async () =>
      creationOptionsOf((await users().registerPasskey({ userId }, bearer(srv.admin))).publicKeyCredentialCreationOptions).authenticatorSelection?.userVerification;
    expect(await uvOf()).toBe('required');
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { userVerification: UserVerificationPolicy.PREFERRED } }, bearer(srv.admin));
    expect(await uvOf()).toBe('preferred');
    expect((await beginLogin(srv.url, { loginName: username })).options.userVerification).toBe('preferred');
    await restOk(srv.url, 'PUT', `/v2/organizations/${orgId}/login_policy`, { policy: { userVerification: 'USER_VERIFICATION_POLICY_REQUIRED' } }, srv.admin);
    expect(await uvOf()).toBe('required');
    expect((await beginLogin(srv.url, { loginName: username })).options.userVerification).toBe('required');
    // A policy that itself says REQUIRED is not weakened by the request (without one, the request decides).
    const discouraged = { loginName: username, userVerification: UserVerificationRequirement.DISCOURAGED };
    expect((await beginLogin(srv.url, discouraged)).options.userVerification).toBe('required');
    await orgs().resetLoginPolicy({ organizationId: orgId }, bearer(srv.admin));
    expect((await beginLogin(srv.url, discouraged)).options.userVerification).toBe('discouraged');
  });
});
