import { Code } from '@connectrpc/connect';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { rotateSigningKey } from '../src/domain/admin.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { beginLogin, codeOf, finishLogin, login, sign } from './helpers/login.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

let jwks: ReturnType<typeof createRemoteJWKSet>;

const srv = useTestServer();
beforeAll(async () => {
  jwks = createRemoteJWKSet(new URL(`${srv.url}/.well-known/jwks.json`));
});

async function verifyOffline(token: string) {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: srv.config.issuer, audience: srv.config.audience, algorithms: ['ES256'] });
  return { payload, protectedHeader };
}

async function eventsOf(aggregateId: string) {
  return srv.app.store.db.selectFrom('events').select(['event_type', 'payload', 'sequence']).where('aggregate_id', '=', aggregateId).orderBy('sequence').execute();
}

describe(`passkey login over every protocol (${BACKEND})`, () => {
  it.each(PROTOCOLS)('%s: register, log in by login name, use the access token', async (protocol) => {
    const username = `Login-${protocol}`;
    const userId = await createUser(srv.url, srv.admin, username);
    const { passkeyId, authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin, protocol });

    // The login name is matched case-insensitively.
    const begun = await beginLogin(srv.url, { loginName: username.toUpperCase(), protocol });
    expect(begun.options.rpId).toBe('localhost');
    expect(begun.options.userVerification).toBe('required');
    expect(begun.options.allowCredentials?.map((c) => c.id)).toEqual([authenticator.credentials[0]!.id]);
    const assertion = await sign(authenticator, begun);
    const done = await finishLogin(srv.url, begun.sessionId, assertion, { protocol, sessionToken: begun.sessionToken });

    const sessionsEvents = await eventsOf(begun.sessionId);
    expect(done.details?.sequence).toBe(2n);
    expect(sessionsEvents.map((e) => e.event_type)).toEqual(['session.added', 'session.webauthn.checked']);
    // The session's own row is its aggregate row: it carries the sequence, and `aggregates` has no row for it.
    const sessionRow = await srv.app.store.db.selectFrom('sessions').select('sequence').where('id', '=', begun.sessionId).executeTakeFirstOrThrow();
    expect(Number(sessionRow.sequence)).toBe(2);
    expect(await srv.app.store.db.selectFrom('aggregates').select('aggregate_type').where('aggregate_id', '=', begun.sessionId).execute()).toEqual([]);
    // The session's event records the passkey's use, with the counter the authenticator reported.
    expect(sessionsEvents[1]!.payload).toMatchObject({ user_id: userId, passkey_id: passkeyId, user_verified: true, sign_count: 1 });

    // The token verifies offline against the served JWKS, with the configured issuer and audience.
    const { payload, protectedHeader } = await verifyOffline(done.accessToken);
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ sub: userId, sid: begun.sessionId, org: await defaultOrgId(srv.app.store.db), iss: srv.config.issuer, aud: srv.config.audience });
    expect(typeof payload.jti).toBe('string');
    expect(payload.exp! - payload.iat!).toBe(srv.config.tokenTtlSeconds);
    expect(Number(done.accessTokenExpirationDate?.seconds)).toBe(payload.exp);

    // ... and works as a Bearer token for the user's own data, not for someone else's.
    const users = clientFor(UserService, protocol, srv.url);
    const me = await users.getUserByID({ userId }, bearer(done.accessToken));
    expect(me.user?.username).toBe(username);
    const other = await createUser(srv.url, srv.admin);
    expect(await codeOf(users.getUserByID({ userId: other }, bearer(done.accessToken)))).toBe(Code.PermissionDenied);

    // The login changed the passkey's row, not the user: the user's history ends with the registration.
    const userEvents = await eventsOf(userId);
    expect(userEvents.at(-1)).toMatchObject({ event_type: 'user.passkey.verified', payload: { passkey_id: passkeyId } });
    const row = await srv.app.store.db.selectFrom('passkeys').select(['sign_count', 'last_used_at', 'backed_up']).where('id', '=', passkeyId).executeTakeFirstOrThrow();
    expect(Number(row.sign_count)).toBe(1);
    expect(row.last_used_at).toBeInstanceOf(Date);
    expect(sessionsEvents[1]!.payload).toMatchObject({ backed_up: row.backed_up });
    expect(me.details?.sequence).toBe(BigInt(userEvents.length));

    // The session shows the factors; the session token was replaced at login (the pre-login one is dead).
    const sessions = clientFor(SessionService, protocol, srv.url);
    expect(done.sessionToken).not.toBe(begun.sessionToken);
    const got = await sessions.getSession({ sessionId: begun.sessionId, sessionToken: done.sessionToken });
    expect(got.session?.factors?.user).toMatchObject({ id: userId, loginName: username, displayName: `Test ${username}` });
    expect(got.session?.factors?.webAuthN?.userVerified).toBe(true);
    expect(got.session?.sequence).toBe(2n);
    expect(await codeOf(sessions.getSession({ sessionId: begun.sessionId, sessionToken: begun.sessionToken }))).toBe(Code.PermissionDenied);
  });

  it.each(PROTOCOLS)('%s: usernameless login (discoverable credential) resolves the user from the assertion', async (protocol) => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin, protocol });
    const { begun, done } = await login(srv.url, authenticator, { protocol });
    expect(begun.options.allowCredentials).toEqual([]);
    const { payload } = await verifyOffline(done.accessToken);
    expect(payload.sub).toBe(userId);
    expect(payload.sid).toBe(begun.sessionId);
    const users = clientFor(UserService, protocol, srv.url);
    expect((await users.getUserByID({ userId }, bearer(done.accessToken))).user?.userId).toBe(userId);
    const added = (await eventsOf(begun.sessionId))[0]!;
    expect(added).toMatchObject({ event_type: 'session.added', payload: { usernameless: true, user_id: null } });
  });

  it('REST: the same login over the HTTP/JSON paths (POST /v2/sessions, PATCH /v2/sessions/{id})', async () => {
    const username = `rest-${Date.now()}`;
    const userId = await createUser(srv.url, srv.admin, username);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const json = { 'content-type': 'application/json' };
    const created: any = await (
      await fetch(`${srv.url}/v2/sessions`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ checks: { user: { loginName: username } }, challenges: { webAuthN: { domain: 'localhost' } } }),
      })
    ).json();
    const assertion = await authenticator.authenticate(created.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey, { origin: 'http://localhost:8080' });
    const res = await fetch(`${srv.url}/v2/sessions/${created.sessionId}`, {
      method: 'PATCH',
      headers: json,
      body: JSON.stringify({ sessionToken: created.sessionToken, checks: { webAuthN: { credentialAssertionData: assertion } } }),
    });
    expect(res.status).toBe(200);
    const done: any = await res.json();
    expect((await verifyOffline(done.accessToken)).payload.sub).toBe(userId);
    const replay = await fetch(`${srv.url}/v2/sessions/${created.sessionId}`, {
      method: 'PATCH',
      headers: json,
      body: JSON.stringify({ checks: { webAuthN: { credentialAssertionData: assertion } } }),
    });
    expect(replay.status).toBe(401);
    const got: any = await (await fetch(`${srv.url}/v2/sessions/${created.sessionId}`, { headers: { authorization: `Bearer ${done.accessToken}` } })).json();
    expect(got.session.factors.user.loginName).toBe(username);
    const del = await fetch(`${srv.url}/v2/sessions/${created.sessionId}`, { method: 'DELETE', headers: { ...json, authorization: `Bearer ${done.accessToken}` }, body: '{}' });
    expect(del.status).toBe(200);
    expect((await fetch(`${srv.url}/v2/users/${userId}`, { headers: { authorization: `Bearer ${done.accessToken}` } })).status).toBe(401);
  });

  it('the allow list names every ready passkey of the user, oldest first, with its transports; any of them signs in', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const transports = [['usb', 'nfc'], [], ['internal', 'hybrid', 'smart-card']];
    const registered = [];
    for (const t of transports) registered.push(await registerPasskey(srv.url, { userId, token: srv.admin, authenticator: createSoftAuthenticator({ transports: t }) }));
    // A pending registration is not offered.
    await clientFor(UserService, 'connect', srv.url).registerPasskey({ userId }, bearer(srv.admin));
    const begun = await beginLogin(srv.url, { userId });
    expect(begun.options.allowCredentials).toEqual(
      registered.map((r, i) => ({ id: r.authenticator.credentials[0]!.id, type: 'public-key', ...(transports[i]!.length ? { transports: transports[i] } : {}) })),
    );
    const done = await finishLogin(srv.url, begun.sessionId, await sign(registered[1]!.authenticator, begun), { sessionToken: begun.sessionToken });
    expect(done.accessToken).toBeTruthy();
  });

  it('a login by user id works like one by login name', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const { done } = await login(srv.url, authenticator, { userId, protocol: 'grpc' });
    expect((await verifyOffline(done.accessToken)).payload.sub).toBe(userId);
  });
});

describe(`sessions: read, list, log out (${BACKEND})`, () => {
  it('logout ends the session: its access tokens are refused here at once, while still verifying offline', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const first = await login(srv.url, authenticator, { userId });
    const second = await login(srv.url, authenticator, { userId });
    const users = clientFor(UserService, 'grpc', srv.url);
    const sessions = clientFor(SessionService, 'grpc', srv.url);

    const deleted = await sessions.deleteSession({ sessionId: first.begun.sessionId }, bearer(first.done.accessToken));
    expect(deleted.details?.sequence).toBe(3n);
    expect((await eventsOf(first.begun.sessionId)).map((e) => e.event_type)).toEqual(['session.added', 'session.webauthn.checked', 'session.terminated']);

    expect(await codeOf(users.getUserByID({ userId }, bearer(first.done.accessToken)))).toBe(Code.Unauthenticated);
    expect(await codeOf(sessions.getSession({ sessionId: first.begun.sessionId }, bearer(second.done.accessToken)))).toBe(Code.NotFound);
    // An offline verifier cannot know: the signature and expiry still hold. That is why tokens are short-lived.
    expect((await verifyOffline(first.done.accessToken)).payload.sid).toBe(first.begun.sessionId);
    // The other session lives on.
    expect((await users.getUserByID({ userId }, bearer(second.done.accessToken))).user?.userId).toBe(userId);
    // Logout with the session token, no Bearer.
    await sessions.deleteSession({ sessionId: second.begun.sessionId, sessionToken: second.done.sessionToken });
    expect(await codeOf(users.getUserByID({ userId }, bearer(second.done.accessToken)))).toBe(Code.Unauthenticated);
  });

  it('an expired session refuses its tokens and is gone from reads', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const { begun, done } = await login(srv.url, authenticator, { userId });
    const users = clientFor(UserService, 'connect', srv.url);
    expect(await codeOf(users.getUserByID({ userId }, bearer(done.accessToken)))).toBe('ok');
    await srv.app.store.db
      .updateTable('sessions')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', begun.sessionId)
      .execute();
    expect(await codeOf(users.getUserByID({ userId }, bearer(done.accessToken)))).toBe(Code.Unauthenticated);
    const sessions = clientFor(SessionService, 'connect', srv.url);
    expect(await codeOf(sessions.getSession({ sessionId: begun.sessionId, sessionToken: done.sessionToken }))).toBe(Code.NotFound);
  });

  it('GetSession, DeleteSession and ListSessions: own sessions, org admins their organization, instance admins all', async () => {
    const alice = await createUser(srv.url, srv.admin);
    const bob = await createUser(srv.url, srv.admin);
    const a = (await registerPasskey(srv.url, { userId: alice, token: srv.admin })).authenticator;
    const b = (await registerPasskey(srv.url, { userId: bob, token: srv.admin })).authenticator;
    const a1 = await login(srv.url, a, { userId: alice });
    const a2 = await login(srv.url, a);
    const b1 = await login(srv.url, b, { userId: bob });
    const sessions = clientFor(SessionService, 'connect', srv.url);
    const aliceToken = bearer(a1.done.accessToken);

    // Own sessions only.
    const mine = await sessions.listSessions({}, aliceToken);
    expect(mine.sessions.map((s) => s.id).sort()).toEqual([a1.begun.sessionId, a2.begun.sessionId].sort());
    expect(mine.details?.totalResult).toBe(2n);
    const paged = await sessions.listSessions({ query: { limit: 1, asc: true } }, aliceToken);
    expect(paged.sessions.map((s) => s.id)).toEqual([a1.begun.sessionId]);
    expect(paged.details?.totalResult).toBe(2n);
    const byId = await sessions.listSessions({ queries: [{ query: { case: 'idsQuery', value: { ids: [a2.begun.sessionId, b1.begun.sessionId] } } }] }, aliceToken);
    expect(byId.sessions.map((s) => s.id)).toEqual([a2.begun.sessionId]);

    expect(await codeOf(sessions.getSession({ sessionId: b1.begun.sessionId }, aliceToken))).toBe(Code.PermissionDenied);
    expect(await codeOf(sessions.deleteSession({ sessionId: b1.begun.sessionId }, aliceToken))).toBe(Code.PermissionDenied);
    expect(await codeOf(sessions.getSession({ sessionId: b1.begun.sessionId, sessionToken: a1.done.sessionToken }))).toBe(Code.PermissionDenied);
    expect(await codeOf(sessions.getSession({ sessionId: 'no-such-session' }, aliceToken))).toBe(Code.NotFound);
    expect(await codeOf(sessions.getSession({ sessionId: b1.begun.sessionId }))).toBe(Code.Unauthenticated);
    expect(await codeOf(sessions.listSessions({}))).toBe(Code.Unauthenticated);

    // Admins: the org admin of the users' organization sees them; one of another organization does not.
    const orgAdmin = bearer(await srv.adminToken('org_admin'));
    const theirs = await sessions.listSessions({ queries: [{ query: { case: 'userIdQuery', value: { id: bob } } }] }, orgAdmin);
    expect(theirs.sessions.map((s) => s.id)).toEqual([b1.begun.sessionId]);
    expect(theirs.sessions[0]?.factors?.user?.id).toBe(bob);
    const { OrganizationService } = await import('../gen/passkeyd/org/v2/org_service_pb.js');
    const { organizationId } = await clientFor(OrganizationService, 'connect', srv.url).addOrganization({ name: `elsewhere-${Date.now()}` }, bearer(srv.admin));
    const otherAdmin = bearer(await srv.adminToken('org_admin', organizationId));
    expect(await codeOf(sessions.getSession({ sessionId: b1.begun.sessionId }, otherAdmin))).toBe(Code.PermissionDenied);
    expect((await sessions.listSessions({}, otherAdmin)).sessions).toEqual([]);
    expect((await sessions.getSession({ sessionId: b1.begun.sessionId }, bearer(srv.admin))).session?.id).toBe(b1.begun.sessionId);
    const all = await sessions.listSessions({ queries: [{ query: { case: 'idsQuery', value: { ids: [a1.begun.sessionId, b1.begun.sessionId] } } }] }, bearer(srv.admin));
    expect(all.details?.totalResult).toBe(2n);

    await sessions.deleteSession({ sessionId: b1.begun.sessionId }, orgAdmin);
    expect(await codeOf(sessions.getSession({ sessionId: b1.begun.sessionId }, bearer(srv.admin)))).toBe(Code.NotFound);
  });

  it('a session opened without a challenge gets one with SetSession and its session token', async () => {
    const userId = await createUser(srv.url, srv.admin, `later-${Date.now()}`);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const sessions = clientFor(SessionService, 'connect', srv.url);
    const created = await sessions.createSession({ checks: { user: { search: { case: 'userId', value: userId } } } });
    expect(created.challenges).toBeUndefined();
    expect(
      await codeOf(
        finishLogin(srv.url, created.sessionId, await authenticator.authenticate({ challenge: 'AAAA', rpId: 'localhost' }, { origin: 'http://localhost:8080' }), {
          sessionToken: created.sessionToken,
        }),
      ),
    ).toBe(Code.FailedPrecondition);
    expect(await codeOf(sessions.setSession({ sessionId: created.sessionId, challenges: { webAuthN: {} } }))).toBe(Code.Unauthenticated);
    const challenged = await sessions.setSession({ sessionId: created.sessionId, sessionToken: created.sessionToken, challenges: { webAuthN: {} } });
    const options = challenged.challenges!.webAuthN!.publicKeyCredentialRequestOptions!.publicKey as any;
    expect(options.allowCredentials.map((c: { id: string }) => c.id)).toEqual([authenticator.credentials[0]!.id]);
    const assertion = await authenticator.authenticate(options, { origin: 'http://localhost:8080' });
    const done = await finishLogin(srv.url, created.sessionId, assertion, { sessionToken: created.sessionToken });
    expect((await verifyOffline(done.accessToken)).payload.sub).toBe(userId);
    expect((await eventsOf(created.sessionId)).map((e) => e.event_type)).toEqual([
      'session.added',
      'session.webauthn.failed',
      'session.webauthn.challenged',
      'session.webauthn.checked',
    ]);
  });
});

describe(`signing key rotation (${BACKEND})`, () => {
  it('old-key tokens keep working until they expire, new tokens use the new key, JWKS lists both', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const before = await login(srv.url, authenticator, { userId });
    const oldKid = decodeProtectedHeader(before.done.accessToken).kid;
    // A short-lived token from the old key, to watch it expire.
    const orgId = await defaultOrgId(srv.app.store.db);
    const shortLived = await srv.app.tokens.issue({ subject: userId, orgId, sessionId: before.begun.sessionId, ttlSeconds: 3 });

    const newKid = await rotateSigningKey(srv.app.store.db, srv.app.tokens);
    expect(newKid).not.toBe(oldKid);
    const after = await login(srv.url, authenticator, { userId });
    expect(decodeProtectedHeader(after.done.accessToken).kid).toBe(newKid);

    const served = (await (await fetch(`${srv.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    expect(served.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
    // A fresh verifier (no cached JWKS) accepts both.
    const fresh = createRemoteJWKSet(new URL(`${srv.url}/.well-known/jwks.json`));
    for (const t of [before.done.accessToken, after.done.accessToken]) {
      expect((await jwtVerify(t, fresh, { issuer: srv.config.issuer, audience: srv.config.audience })).payload.sub).toBe(userId);
    }
    const users = clientFor(UserService, 'grpc', srv.url);
    for (const t of [before.done.accessToken, after.done.accessToken, shortLived.token]) {
      expect(await codeOf(users.getUserByID({ userId }, bearer(t)))).toBe('ok');
    }
    await new Promise((r) => setTimeout(r, Math.max(0, shortLived.expiresAt.getTime() - Date.now()) + 100));
    expect(await codeOf(users.getUserByID({ userId }, bearer(shortLived.token)))).toBe(Code.Unauthenticated);
    expect(await codeOf(users.getUserByID({ userId }, bearer(before.done.accessToken)))).toBe('ok');
  });
});
