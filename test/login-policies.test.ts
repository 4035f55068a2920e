import { Code } from '@connectrpc/connect';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { clientFor } from './helpers/clients.js';
import { codeOf, finishLogin, login, requestOptionsOf, sign } from './helpers/login.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer({ config: { 'sign-count-policy': 'log', 'session-ttl': '1h', 'token-ttl': '10m', 'user-verification': 'preferred' } });

describe(`configured login policies (${BACKEND})`, () => {
  it("sign counter policy 'log': a counter that went backwards is recorded, the login allowed, the stored counter kept", async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { passkeyId, authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    await login(srv.url, authenticator, { userId, overrides: { counter: 5 } });
    expect(await codeOf(login(srv.url, authenticator, { userId, overrides: { counter: 2 } }))).toBe('ok');
    // The rejected counter goes on the user's history (a plain login adds nothing there); both logins on their sessions'.
    const events = await srv.app.store.db.selectFrom('events').select(['event_type', 'payload']).where('aggregate_id', '=', userId).orderBy('sequence').execute();
    expect(events.slice(-2).map((e) => e.event_type)).toEqual(['user.passkey.verified', 'user.passkey.signcount.rejected']);
    expect(events.at(-1)?.payload).toMatchObject({ passkey_id: passkeyId, stored: 5, received: 2, policy: 'log' });
    const checked = await srv.app.store.db
      .selectFrom('events')
      .select('payload')
      .where('creator', '=', userId)
      .where('event_type', '=', 'session.webauthn.checked')
      .orderBy('position')
      .execute();
    expect(checked.map((e) => e.payload)).toMatchObject([
      { passkey_id: passkeyId, sign_count: 5 },
      { passkey_id: passkeyId, sign_count: 2 },
    ]);
    const row = await srv.app.store.db.selectFrom('passkeys').select('sign_count').where('id', '=', passkeyId).executeTakeFirstOrThrow();
    expect(Number(row.sign_count)).toBe(5);
  });

  it('the configured user verification default applies; sessions last the configured time, or the shorter lifetime asked for', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const { begun, done } = await login(srv.url, authenticator, { userId, overrides: { userVerified: false } });
    expect(begun.options.userVerification).toBe('preferred');
    const sessions = clientFor(SessionService, 'connect', srv.url);
    const got = await sessions.getSession({ sessionId: begun.sessionId, sessionToken: done.sessionToken });
    const ttl = Number(got.session!.expirationDate!.seconds) - Number(got.session!.creationDate!.seconds);
    expect(Math.abs(ttl - 3600)).toBeLessThanOrEqual(1);
    expect(got.session?.factors?.webAuthN?.userVerified).toBe(false);
    const claims = decodeJwt(done.accessToken);
    expect(claims.exp! - claims.iat!).toBe(600);

    // A 30 s session: its access token does not outlive it.
    const short = await sessions.createSession({
      checks: { user: { search: { case: 'userId', value: userId } } },
      challenges: { webAuthN: {} },
      lifetime: { seconds: 30n, nanos: 0 },
    });
    const options = requestOptionsOf(short.challenges?.webAuthN?.publicKeyCredentialRequestOptions);
    const shortDone = await finishLogin(srv.url, short.sessionId, await sign(authenticator, { sessionId: short.sessionId, sessionToken: short.sessionToken, options }), {
      sessionToken: short.sessionToken,
    });
    const shortClaims = decodeJwt(shortDone.accessToken);
    expect(shortClaims.exp! - shortClaims.iat!).toBeLessThanOrEqual(30);
    expect(shortClaims.exp! - shortClaims.iat!).toBeGreaterThanOrEqual(28);
    expect(await codeOf(sessions.createSession({ challenges: { webAuthN: {} }, lifetime: { seconds: -5n, nanos: 0 } }))).toBe(Code.InvalidArgument);
    expect(await codeOf(sessions.createSession({}))).toBe(Code.InvalidArgument);
  });
});
