import { generateKeyPairSync } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { codeOf, outcomeOf } from './helpers/codes.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer();
let instanceAdmin: string;
let orgA: string;
let orgB: string;
let userA: string;
let userB: string;

const human = (username: string, orgId?: string) => ({
  username,
  ...(orgId ? { organization: { org: { case: 'orgId' as const, value: orgId } } } : {}),
  profile: { givenName: 'T', familyName: username },
  email: { email: `${username}@example.com` },
});

beforeAll(async () => {
  instanceAdmin = srv.admin;
  const orgs = clientFor(OrganizationService, 'connect', srv.url);
  orgA = (await orgs.addOrganization({ name: 'A' }, bearer(instanceAdmin))).organizationId;
  orgB = (await orgs.addOrganization({ name: 'B' }, bearer(instanceAdmin))).organizationId;
  const users = clientFor(UserService, 'connect', srv.url);
  userA = (await users.addHumanUser(human('alice', orgA), bearer(instanceAdmin))).userId;
  userB = (await users.addHumanUser(human('bob', orgB), bearer(instanceAdmin))).userId;
});

describe(`authentication and permissions (${BACKEND})`, () => {
  it.each(PROTOCOLS)('%s: no token → UNAUTHENTICATED; garbage header → UNAUTHENTICATED', async (protocol) => {
    const users = clientFor(UserService, protocol, srv.url);
    expect(await codeOf(users.getUserByID({ userId: userA }))).toBe(Code.Unauthenticated);
    expect(await codeOf(users.getUserByID({ userId: userA }, { headers: { authorization: 'Basic abc' } }))).toBe(Code.Unauthenticated);
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer('not.a.jwt')))).toBe(Code.Unauthenticated);
  });

  it.each(PROTOCOLS)('%s: an org admin acts in its own organization only', async (protocol) => {
    const users = clientFor(UserService, protocol, srv.url);
    const adminA = await srv.adminToken('org_admin', orgA);
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(adminA)))).toBe('ok');
    expect(await codeOf(users.getUserByID({ userId: userB }, bearer(adminA)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.deleteUser({ userId: userB }, bearer(adminA)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.addHumanUser(human(`intruder-${protocol}`, orgB), bearer(adminA)))).toBe(Code.PermissionDenied);
    // Without an organization, the user lands in the admin's own.
    const own = await users.addHumanUser(human(`newbie-${protocol}`), bearer(adminA));
    expect(own.details?.resourceOwner).toBe(orgA);
    // Listing is scoped to the admin's organization whatever the query asks.
    const listed = await users.listUsers({ queries: [{ query: { case: 'organizationIdQuery', value: { organizationId: orgB } } }] }, bearer(adminA));
    expect(listed.result).toEqual([]);
    const mine = await users.listUsers({}, bearer(adminA));
    expect(mine.result.every((u) => u.details?.resourceOwner === orgA)).toBe(true);
    expect(mine.result.map((u) => u.userId)).toContain(userA);
    // Organizations are instance-admin business.
    const orgs = clientFor(OrganizationService, protocol, srv.url);
    expect(await codeOf(orgs.addOrganization({ name: 'nope' }, bearer(adminA)))).toBe(Code.PermissionDenied);
  });

  it.each(PROTOCOLS)('%s: a user reads and changes itself, not others', async (protocol) => {
    const users = clientFor(UserService, protocol, srv.url);
    const { token } = await srv.app.tokens.issue({ subject: userA, orgId: orgA, ttlSeconds: 60 });
    const self = await users.getUserByID({ userId: userA }, bearer(token));
    expect(self.user?.username).toBe('alice');
    expect(await codeOf(users.updateHumanUser({ userId: userA, profile: { givenName: 'Alice', familyName: 'A' } }, bearer(token)))).toBe('ok');
    expect(await codeOf(users.getUserByID({ userId: userB }, bearer(token)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.listUsers({}, bearer(token)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.deleteUser({ userId: userA }, bearer(token)))).toBe(Code.PermissionDenied);
  });

  it('a token that worked is refused once it expires (verified tokens are remembered only until their expiry)', async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    // Lives 4–5 s (exp is in whole seconds): a 1 s token once expired before three calls ended on a loaded machine.
    const shortLived = await srv.adminToken('instance_admin', undefined, undefined, 5);
    for (let i = 0; i < 3; i++) expect(await codeOf(users.getUserByID({ userId: userA }, bearer(shortLived)))).toBe('ok');
    const exp = JSON.parse(Buffer.from(shortLived.split('.')[1]!, 'base64url').toString()).exp as number;
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 50));
    const refused = await outcomeOf(users.getUserByID({ userId: userA }, bearer(shortLived)));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.message).toMatch(/token expired/);
  });

  it('expired, foreign-signed, wrong-issuer and wrong-audience tokens → UNAUTHENTICATED', async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    // Signed by the service's own key, but expired ten seconds ago (the CLI refuses such a TTL, so the token service signs it).
    const { token: expired } = await srv.app.tokens.issue({ subject: 'admin:instance_admin', orgId: 'any', roles: ['instance_admin'], ttlSeconds: -10 });
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(expired)))).toBe(Code.Unauthenticated);

    const { kid } = (await srv.app.tokens.jwks()).keys[0] as { kid: string };
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forge = (iss: string, aud: string) =>
      new SignJWT({ org: orgA, roles: ['instance_admin'] })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(iss)
        .setAudience(aud)
        .setSubject('mallory')
        .setJti('x')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    // Same kid as a real key, signed by another key.
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(await forge(srv.config.issuer, srv.config.audience))))).toBe(Code.Unauthenticated);

    const real = (iss: string, aud: string) =>
      new SignJWT({ org: orgA, roles: ['instance_admin'] })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(iss)
        .setAudience(aud)
        .setSubject('x')
        .setJti('y')
        .setIssuedAt()
        .setExpirationTime('5m');
    const keys = await srv.app.store.db.selectFrom('signing_keys').select('private_jwk').where('kid', '=', kid).executeTakeFirstOrThrow();
    const { createPrivateKey } = await import('node:crypto');
    const ownKey = createPrivateKey({ key: keys.private_jwk as any, format: 'jwk' });
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(await real(srv.config.issuer, srv.config.audience).sign(ownKey))))).toBe('ok');
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(await real('https://evil.example', srv.config.audience).sign(ownKey))))).toBe(Code.Unauthenticated);
    expect(await codeOf(users.getUserByID({ userId: userA }, bearer(await real(srv.config.issuer, 'someone-else').sign(ownKey))))).toBe(Code.Unauthenticated);
  });

  it('an unknown user is NOT_FOUND for an admin of any organization', async () => {
    const users = clientFor(UserService, 'connect', srv.url);
    const adminA = await srv.adminToken('org_admin', orgA);
    expect(await codeOf(users.getUserByID({ userId: 'no-such-user' }, bearer(adminA)))).toBe(Code.NotFound);
  });
});
