import type { JsonObject } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { SignUpService } from '../gen/passkeyd/user/v2/signup_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf, errorOf } from './helpers/codes.js';
import { login } from './helpers/login.js';
import { rest, restOk, uniqueName } from './helpers/machine.js';
import { creationOptionsOf, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer({ config: { 'availability-rate-limit': '1000', 'rate-limit': '1000' } });

const signUps = () => clientFor(SignUpService, 'grpc', srv.url);
const orgs = () => clientFor(OrganizationService, 'connect', srv.url);

async function newOrg(policy: { allowSelfRegistration?: boolean; ssoRequired?: boolean; deniedAaguids?: string[] }): Promise<string> {
  const { organizationId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
  await orgs().setLoginPolicy({ organizationId, policy }, bearer(srv.admin));
  return organizationId;
}

describe(`self-service sign-up (${BACKEND})`, () => {
  it('over gRPC: creates the user and passkey at once and signs the user in; the same username again is refused', async () => {
    const orgId = await newOrg({ allowSelfRegistration: true });
    expect((await signUps().getSignUpSettings({ organizationId: orgId })).allowSelfRegistration).toBe(true);
    const username = uniqueName('newcomer');
    const started = await signUps().startSignUp({ username, email: `${username}@example.com`, organizationId: orgId });
    const authenticator = createSoftAuthenticator({ attestation: 'packed' });
    const credential = await authenticator.register(creationOptionsOf(started.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    const done = await signUps().finishSignUp({ signupId: started.signupId, publicKeyCredential: credential as unknown as JsonObject, passkeyName: 'laptop' });
    expect(done.details?.sequence).toBe(3n);
    expect(done.details?.resourceOwner).toBe(orgId);

    // The access token works at once, as the user themself; the session is signed in.
    const users = clientFor(UserService, 'grpc', srv.url);
    const me = await users.getUserByID({ userId: done.userId }, bearer(done.accessToken));
    expect(me.user?.username).toBe(username);
    const listed = await users.listPasskeys({ userId: done.userId }, bearer(done.accessToken));
    expect(listed.result.map((p) => [p.id, p.name])).toEqual([[done.passkeyId, 'laptop']]);
    const session = await restOk(srv.url, 'GET', `/v2/sessions/${done.sessionId}?sessionToken=${done.sessionToken}`);
    expect(session.session.factors.user.id).toBe(done.userId);
    expect(session.session.factors.webAuthN.verifiedAt).toBeTruthy();
    const events = await srv.app.store.db.selectFrom('events').select('event_type').where('aggregate_id', 'in', [done.userId, done.sessionId]).orderBy('position').execute();
    expect(events.map((e) => e.event_type)).toEqual(['user.human.added', 'user.passkey.added', 'user.passkey.verified', 'session.added', 'session.webauthn.checked']);

    // The passkey signs in later like any other, and counts as the user's only one: they may not remove it.
    expect((await login(srv.url, authenticator, { loginName: username })).done.accessToken).toBeTruthy();
    expect(await codeOf(users.removePasskey({ userId: done.userId, passkeyId: done.passkeyId }, bearer(done.accessToken)))).toBe(Code.FailedPrecondition);
    // With a second one, either may go, and the other is then the last.
    const second = await registerPasskey(srv.url, { userId: done.userId, token: done.accessToken });
    expect(await codeOf(users.removePasskey({ userId: done.userId, passkeyId: done.passkeyId }, bearer(done.accessToken)))).toBe('ok');
    expect(await codeOf(users.removePasskey({ userId: done.userId, passkeyId: second.passkeyId }, bearer(done.accessToken)))).toBe(Code.FailedPrecondition);

    // Finishing twice, or the name again (any case), is refused.
    expect(await codeOf(signUps().finishSignUp({ signupId: started.signupId, publicKeyCredential: credential as unknown as JsonObject }))).toBe(Code.FailedPrecondition);
    const again = await errorOf(signUps().startSignUp({ username: username.toUpperCase(), organizationId: orgId }));
    expect(again.code).toBe(Code.AlreadyExists);
    expect(again.rawMessage).toContain('already taken');
    expect((await rest(srv.url, 'POST', '/v2/signup', { username, organizationId: orgId })).status).toBe(409);
  });

  it('over REST, in the default organization; two sign-ups racing for one name: one wins', async () => {
    const defaultOrg = (await srv.app.store.db.selectFrom('orgs').select('id').where('is_default', '=', true).executeTakeFirstOrThrow()).id;
    await restOk(srv.url, 'PUT', `/v2/organizations/${defaultOrg}/login_policy`, { policy: { allowSelfRegistration: true } }, srv.admin);
    try {
      expect((await restOk(srv.url, 'GET', '/v2/signup/settings')).allowSelfRegistration).toBe(true);
      const username = uniqueName('rest');
      const a = await restOk(srv.url, 'POST', '/v2/signup', { username });
      const b = await restOk(srv.url, 'POST', '/v2/signup', { username });
      const finish = async (s: { signupId: string; publicKeyCredentialCreationOptions: JsonObject }) => {
        const credential = await createSoftAuthenticator().register(creationOptionsOf(s.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
        return rest(srv.url, 'POST', `/v2/signup/${s.signupId}`, { publicKeyCredential: credential });
      };
      const first = await finish(a);
      expect(first.status).toBe(200);
      expect(first.json.accessToken).toBeTruthy();
      expect(first.json.details.resourceOwner).toBe(defaultOrg);
      expect((await finish(b)).status).toBe(409);
      // A response that does not verify is the client's mistake, and burns nothing.
      const c = await restOk(srv.url, 'POST', '/v2/signup', { username: uniqueName('bad') });
      const bad = await rest(srv.url, 'POST', `/v2/signup/${c.signupId}`, {
        publicKeyCredential: { id: 'x', rawId: 'x', type: 'public-key', response: { clientDataJSON: 'e30', attestationObject: 'oA' } },
      });
      expect(bad.status).toBe(400);
      expect((await finish(c)).status).toBe(200);
    } finally {
      await restOk(srv.url, 'DELETE', `/v2/organizations/${defaultOrg}/login_policy`, undefined, srv.admin);
    }
    expect((await restOk(srv.url, 'GET', '/v2/signup/settings')).allowSelfRegistration ?? false).toBe(false);
  });

  it('with the policy off (or SSO on, or the authenticator denied) the RPCs are PERMISSION_DENIED; turning it back on restores them', async () => {
    const orgId = await newOrg({ allowSelfRegistration: false });
    expect((await signUps().getSignUpSettings({ organizationId: orgId })).allowSelfRegistration).toBe(false);
    expect(await codeOf(signUps().startSignUp({ username: uniqueName('x'), organizationId: orgId }))).toBe(Code.PermissionDenied);
    expect((await rest(srv.url, 'POST', '/v2/signup', { username: uniqueName('x'), organizationId: orgId })).status).toBe(403);
    expect((await rest(srv.url, 'POST', '/v2/signup', { username: uniqueName('x'), organizationId: 'no-such-org' })).status).toBe(403);

    await orgs().setLoginPolicy({ organizationId: orgId, policy: { allowSelfRegistration: true } }, bearer(srv.admin));
    const started = await signUps().startSignUp({ username: uniqueName('y'), organizationId: orgId });
    // Closed between the two calls: the sign-up under way is refused too.
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { allowSelfRegistration: true, ssoRequired: true } }, bearer(srv.admin));
    const credential = await createSoftAuthenticator().register(creationOptionsOf(started.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    const finish = () => signUps().finishSignUp({ signupId: started.signupId, publicKeyCredential: credential as unknown as JsonObject });
    expect(await codeOf(finish())).toBe(Code.PermissionDenied);
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { allowSelfRegistration: true, deniedAaguids: ['00000000-0000-0000-0000-000000000000'] } }, bearer(srv.admin));
    expect(await codeOf(finish())).toBe(Code.PermissionDenied);
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { allowSelfRegistration: true } }, bearer(srv.admin));
    expect(await codeOf(finish())).toBe('ok');
  });
});
