import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { UserVerificationRequirement } from '../gen/passkeyd/session/v2/session_pb.js';
import { event } from '../src/domain/events.js';
import { completeLogin } from '../src/store/login-complete.js';
import { createSoftAuthenticator, type SoftAuthenticator } from './helpers/authenticator.js';
import { beginLogin, codeOf, errorOf, eventPayloads, finishLogin, flipByte, login, loginFailures, sign } from './helpers/login.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';

/** What SetSession tells the caller for every credential it refuses before the signature is known good. */
const NOT_ACCEPTED = 'this credential cannot sign in to this session';
import { BACKEND, useTestServer } from './helpers/server.js';

const SECOND_RP = 'login.example.com';
const SECOND_ORIGIN = 'https://login.example.com';

const srv = useTestServer({ config: { 'rp-id': `localhost,${SECOND_RP}`, origins: `http://localhost:8080,${SECOND_ORIGIN}` } });

async function userWithPasskey(authenticator?: SoftAuthenticator) {
  const userId = await createUser(srv.url, srv.admin);
  const registered = await registerPasskey(srv.url, { userId, token: srv.admin, ...(authenticator ? { authenticator } : {}) });
  return { userId, ...registered };
}

const failures = (sessionId: string) => loginFailures(srv.app.store.db, sessionId);

describe(`login refusals, each with its code (${BACKEND})`, () => {
  it('a successful assertion cannot be used again: not on its session, not on another, not twice at once', async () => {
    // A counter that is always 0 (synced passkeys): only the single-use challenge stops a replay.
    const { userId, authenticator } = await userWithPasskey(createSoftAuthenticator({ counter: 'zero' }));
    const { begun, assertion } = await login(srv.url, authenticator, { userId });
    const replay = await errorOf(finishLogin(srv.url, begun.sessionId, assertion));
    expect(replay.code).toBe(Code.Unauthenticated);
    const other = await beginLogin(srv.url, { userId });
    expect(await codeOf(finishLogin(srv.url, other.sessionId, assertion))).toBe(Code.Unauthenticated);
    expect((await failures(begun.sessionId)).at(-1)?.reason).toMatch(/already used/);

    // The same assertion sent twice at once: one login, one refusal.
    const raced = await beginLogin(srv.url, { userId });
    const signed = await sign(authenticator, raced);
    const results = await Promise.all([
      codeOf(finishLogin(srv.url, raced.sessionId, signed, { protocol: 'grpc' })),
      codeOf(finishLogin(srv.url, raced.sessionId, signed, { protocol: 'connect' })),
    ]);
    expect(results.sort()).toEqual([Code.Unauthenticated, 'ok'].sort());
  });

  it('the login statement itself refuses a wrong or used challenge and an ended session, each with its own error, and leaves no trace', async () => {
    // What a race past SetSession's read meets in its write (the read refuses these cases before).
    const { userId } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const db = srv.app.store.db;
    const session = await db.selectFrom('sessions').select(['id', 'challenge', 'org_id']).where('id', '=', begun.sessionId).executeTakeFirstOrThrow();
    // Sessions are owned by the default organization; a session's row is its aggregate row (its sequence).
    const owner = (await db.selectFrom('orgs').select('id').where('is_default', '=', true).executeTakeFirstOrThrow()).id;
    const passkey = await db.selectFrom('passkeys').select(['id', 'org_id', 'rp_id']).where('user_id', '=', userId).executeTakeFirstOrThrow();
    const sequence = async () => Number((await db.selectFrom('sessions').select('sequence').where('id', '=', session.id).executeTakeFirstOrThrow()).sequence);
    const refusals = {
      consumed: () => new Error('consumed'),
      ended: () => new Error('ended'),
      metadataFull: () => new Error('full'),
      notAccepted: () => new Error('not accepted'),
    };
    const complete = (challenge: string) =>
      completeLogin(
        db,
        {
          session: { type: 'session', id: session.id, owner },
          challenge,
          rpId: passkey.rp_id,
          userHandle: undefined,
          tokenHash: Buffer.alloc(32, 1),
          passkey: { id: passkey.id, userId, orgId: passkey.org_id },
          at: new Date(),
          signCount: 0,
          userVerified: true,
          backedUp: false,
          rejectCounterRegression: false,
        },
        [event('session.webauthn.checked', { user_id: userId, passkey_id: passkey.id, user_verified: true })],
        [],
        refusals,
      );
    const before = await sequence();
    await expect(complete('not-the-challenge')).rejects.toThrow('consumed');
    await db
      .updateTable('sessions')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', session.id)
      .execute();
    await expect(complete(session.challenge!)).rejects.toThrow('ended');
    expect(await sequence()).toBe(before);
    await db
      .updateTable('sessions')
      .set({ expires_at: new Date(Date.now() + 60_000) })
      .where('id', '=', session.id)
      .execute();
    await complete(session.challenge!);
    expect(await sequence()).toBe(before + 1);
    expect((await db.selectFrom('sessions').select(['challenge_id', 'challenge']).where('id', '=', session.id).executeTakeFirstOrThrow()).challenge_id).toBeNull();
    await expect(complete(session.challenge!)).rejects.toThrow('consumed');
    expect(await sequence()).toBe(before + 1);
  });

  it("an assertion over another session's challenge is refused, and the session stays usable", async () => {
    const { userId, authenticator } = await userWithPasskey();
    const a = await beginLogin(srv.url, { userId });
    const b = await beginLogin(srv.url, { userId });
    const forB = await sign(authenticator, b);
    const err = await errorOf(finishLogin(srv.url, a.sessionId, forB));
    expect(err.code).toBe(Code.Unauthenticated);
    // The caller learns nothing about why (no enumeration); the audit event says.
    expect(err.rawMessage).toBe(NOT_ACCEPTED);
    expect((await failures(a.sessionId))[0]?.reason).toMatch(/challenge/);
    expect(await codeOf(finishLogin(srv.url, a.sessionId, await sign(authenticator, a)))).toBe('ok');
  });

  it('an expired challenge is FAILED_PRECONDITION, even with a valid assertion', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const assertion = await sign(authenticator, begun);
    await srv.app.store.db
      .updateTable('sessions')
      .set({ challenge_expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', begun.sessionId)
      .execute();
    expect(await codeOf(finishLogin(srv.url, begun.sessionId, assertion))).toBe(Code.FailedPrecondition);
    expect((await failures(begun.sessionId))[0]).toMatchObject({ code: 'failed_precondition', reason: expect.stringMatching(/expired/) });
  });

  it('a wrong origin is refused', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const err = await errorOf(finishLogin(srv.url, begun.sessionId, await sign(authenticator, begun, { origin: 'https://evil.example' })));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(NOT_ACCEPTED);
    expect((await failures(begun.sessionId))[0]?.reason).toMatch(/origin "https:\/\/evil.example"/);
  });

  it("a wrong RP ID is refused: in the authenticator data, or a challenge for another RP than the credential's", async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const err = await errorOf(finishLogin(srv.url, begun.sessionId, await sign(authenticator, begun, { rpId: 'evil.example' })));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(NOT_ACCEPTED);
    expect((await failures(begun.sessionId))[0]?.reason).toMatch(/RP ID/);

    // The credential is stored for localhost; a challenge issued for the second RP ID cannot be used with it.
    const elsewhere = await beginLogin(srv.url, { userId, domain: SECOND_RP });
    const signed = await authenticator.authenticate(elsewhere.options, { origin: SECOND_ORIGIN, credentialId: authenticator.credentials[0]!.id, rpId: 'localhost' });
    expect(await codeOf(finishLogin(srv.url, elsewhere.sessionId, signed))).toBe(Code.Unauthenticated);
    const signedForSecond = await authenticator.authenticate(elsewhere.options, { origin: SECOND_ORIGIN, credentialId: authenticator.credentials[0]!.id });
    expect(await codeOf(finishLogin(srv.url, elsewhere.sessionId, signedForSecond))).toBe(Code.Unauthenticated);
    expect(await codeOf(beginLogin(srv.url, { userId, domain: 'evil.example' }))).toBe(Code.InvalidArgument);

    // A passkey registered for the second RP ID logs in there, from its origin.
    const second = createSoftAuthenticator();
    await registerPasskey(srv.url, { userId, token: srv.admin, authenticator: second, domain: SECOND_RP, origin: SECOND_ORIGIN });
    const there = await beginLogin(srv.url, { userId, domain: SECOND_RP });
    expect(there.options.rpId).toBe(SECOND_RP);
    expect(there.options.allowCredentials?.map((c) => c.id)).toEqual([second.credentials[0]!.id]);
    expect(await codeOf(finishLogin(srv.url, there.sessionId, await second.authenticate(there.options, { origin: SECOND_ORIGIN })))).toBe('ok');
  });

  it('a tampered signature, authenticator data or client data is refused; the untouched assertion still works', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const good = await sign(authenticator, begun);
    const clientData = JSON.parse(Buffer.from(good.response.clientDataJSON, 'base64url').toString());
    const tampered = [
      { ...good, response: { ...good.response, signature: flipByte(good.response.signature, -1) } },
      // The counter bytes: still parses, no longer what was signed.
      { ...good, response: { ...good.response, authenticatorData: flipByte(good.response.authenticatorData, 36) } },
      { ...good, response: { ...good.response, clientDataJSON: Buffer.from(JSON.stringify({ ...clientData, crossOrigin: false, extra: 'x' })).toString('base64url') } },
    ];
    for (const t of tampered) expect(await codeOf(finishLogin(srv.url, begun.sessionId, t))).toBe(Code.Unauthenticated);
    expect(await failures(begun.sessionId)).toHaveLength(3);
    expect(await codeOf(finishLogin(srv.url, begun.sessionId, good))).toBe('ok');
  });

  it("another user's credential is refused, including through a forged userHandle", async () => {
    const alice = await userWithPasskey();
    const bob = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId: alice.userId });
    const bobs = await bob.authenticator.authenticate(begun.options, { origin: 'http://localhost:8080', credentialId: bob.authenticator.credentials[0]!.id });
    const err = await errorOf(finishLogin(srv.url, begun.sessionId, bobs));
    expect(err.code).toBe(Code.Unauthenticated);

    // Usernameless: Alice's credential presented with Bob's user handle.
    const open = await beginLogin(srv.url);
    const forged = await sign(alice.authenticator, open);
    forged.response.userHandle = bob.authenticator.credentials[0]!.userHandle;
    expect(await codeOf(finishLogin(srv.url, open.sessionId, forged))).toBe(Code.Unauthenticated);
    const noHandle = await sign(alice.authenticator, open);
    delete noHandle.response.userHandle;
    expect(await codeOf(finishLogin(srv.url, open.sessionId, noHandle))).toBe(Code.InvalidArgument);

    // A login for a name that does not exist fails exactly like a wrong credential.
    const ghost = await beginLogin(srv.url, { loginName: `ghost-${Date.now()}` });
    const tried = await alice.authenticator.authenticate(ghost.options, { origin: 'http://localhost:8080', credentialId: alice.authenticator.credentials[0]!.id });
    const ghostErr = await errorOf(finishLogin(srv.url, ghost.sessionId, tried));
    expect(ghostErr.code).toBe(Code.Unauthenticated);
    expect(ghostErr.rawMessage).toBe(err.rawMessage);
  });

  it('a sign counter that went backwards is refused and recorded; a passkey whose counter is always 0 keeps working', async () => {
    const { userId, passkeyId, authenticator } = await userWithPasskey();
    await login(srv.url, authenticator, { userId });
    for (const counter of [1, 0]) {
      const begun = await beginLogin(srv.url, { userId });
      const err = await errorOf(finishLogin(srv.url, begun.sessionId, await sign(authenticator, begun, { counter })));
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toMatch(/sign counter/);
    }
    expect(await eventPayloads(srv.app.store.db, userId, 'user.passkey.signcount.rejected')).toEqual([
      expect.objectContaining({ passkey_id: passkeyId, stored: 1, received: 1, policy: 'reject' }),
      expect.objectContaining({ passkey_id: passkeyId, stored: 1, received: 0, policy: 'reject' }),
    ]);
    expect(await codeOf(login(srv.url, authenticator, { userId, overrides: { counter: 7 } }))).toBe('ok');

    const synced = createSoftAuthenticator({ counter: 'zero' });
    const other = await userWithPasskey(synced);
    for (let i = 0; i < 3; i++) expect(await codeOf(login(srv.url, synced, { userId: other.userId }))).toBe('ok');
    const row = await srv.app.store.db.selectFrom('passkeys').select('sign_count').where('id', '=', other.passkeyId).executeTakeFirstOrThrow();
    expect(Number(row.sign_count)).toBe(0);
  });

  it('user verification: missing when required is refused; allowed when the challenge discouraged it', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const err = await errorOf(finishLogin(srv.url, begun.sessionId, await sign(authenticator, begun, { userVerified: false })));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toBe(NOT_ACCEPTED);
    expect((await failures(begun.sessionId))[0]?.reason).toMatch(/[Uu]ser verification/);

    const relaxed = await beginLogin(srv.url, { userId, userVerification: UserVerificationRequirement.DISCOURAGED });
    expect(relaxed.options.userVerification).toBe('discouraged');
    const done = await finishLogin(srv.url, relaxed.sessionId, await sign(authenticator, relaxed, { userVerified: false }));
    const checked = await srv.app.store.db.selectFrom('sessions').select('webauthn_user_verified').where('id', '=', relaxed.sessionId).executeTakeFirstOrThrow();
    expect(checked.webauthn_user_verified).toBe(false);
    expect(done.accessToken).toBeTruthy();
  });

  it('malformed input is INVALID_ARGUMENT; an unknown session NOT_FOUND; a wrong session token UNAUTHENTICATED', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const good = await sign(authenticator, begun);
    const pad = 'x'.repeat(60);
    const bad: unknown[] = [
      { pad },
      { ...good, rawId: authenticator.credentials[0]!.id.slice(1), pad },
      { ...good, type: 'password' },
      { ...good, response: { ...good.response, clientDataJSON: Buffer.from('not json').toString('base64url') } },
      { ...good, response: { ...good.response, authenticatorData: 'AAAA' } },
      { ...good, response: { ...good.response, signature: '***' } },
    ];
    for (const b of bad) expect(await codeOf(finishLogin(srv.url, begun.sessionId, b))).toBe(Code.InvalidArgument);
    expect(await codeOf(finishLogin(srv.url, 'no-such-session', good))).toBe(Code.NotFound);
    expect(await codeOf(finishLogin(srv.url, begun.sessionId, good, { sessionToken: 'not-the-token' }))).toBe(Code.Unauthenticated);
    expect(await codeOf(finishLogin(srv.url, begun.sessionId, good, { sessionToken: begun.sessionToken }))).toBe('ok');
  });
});
