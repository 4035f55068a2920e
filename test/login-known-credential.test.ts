import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { loginFinishStats } from '../src/domain/login-finish.js';
import { bearer, clientFor } from './helpers/clients.js';
import { beginLogin, codeOf, errorOf, finishLogin, login, loginFailures, sign } from './helpers/login.js';
import { restOk, uniqueName } from './helpers/machine.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

/**
 * SetSession skips its read when the process already knows the credential (CreateSession's allow list
 * or an earlier login taught it the key, RP ID and user), and its one statement checks everything that
 * can change. These tests watch which way each login went (loginFinishStats) and what the caller got.
 */
const srv = useTestServer();
const users = () => clientFor(UserService, 'grpc', srv.url);
const NOT_ACCEPTED = 'this credential cannot sign in to this session';

/** The change in the known/read counts while `f` runs. */
async function counted<T>(f: () => Promise<T>): Promise<{ result: T; known: number; read: number }> {
  const before = loginFinishStats();
  const result = await f();
  const after = loginFinishStats();
  return { result, known: after.known - before.known, read: after.read - before.read };
}

async function userWithPasskey(orgId?: string) {
  let userId: string;
  if (orgId) {
    const username = uniqueName('user');
    userId = (
      await restOk(
        srv.url,
        'POST',
        '/v2/users/human',
        { username, organization: { orgId }, profile: { givenName: 'A', familyName: 'B' }, email: { email: `${username}@example.com` } },
        srv.admin,
      )
    ).userId;
  } else {
    userId = await createUser(srv.url, srv.admin);
  }
  return { userId, ...(await registerPasskey(srv.url, { userId, token: srv.admin })) };
}

async function failureReasons(sessionId: string): Promise<string[]> {
  return (await loginFailures(srv.app.store.db, sessionId)).map((f) => f.reason);
}

describe(`SetSession with a credential this process knows (${BACKEND})`, () => {
  it("a credential from CreateSession's allow list signs in without a read; usernameless, the first login reads and the next does not", async () => {
    const { userId, authenticator } = await userWithPasskey();
    const byId = await counted(() => login(srv.url, authenticator, { userId }));
    expect(byId.result.done.accessToken).toBeTruthy();
    expect({ known: byId.known, read: byId.read }).toEqual({ known: 1, read: 0 });
    // The statement rotated the token and recorded the login as the read path does.
    const row = await srv.app.store.db
      .selectFrom('sessions')
      .select(['user_id', 'passkey_id', 'challenge'])
      .where('id', '=', byId.result.begun.sessionId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ user_id: userId, challenge: null });
    expect(await codeOf(finishLogin(srv.url, byId.result.begun.sessionId, byId.result.assertion))).toBe(Code.Unauthenticated);

    const fresh = await userWithPasskey();
    const first = await counted(() => login(srv.url, fresh.authenticator));
    expect({ known: first.known, read: first.read }).toEqual({ known: 0, read: 1 });
    const second = await counted(() => login(srv.url, fresh.authenticator));
    expect({ known: second.known, read: second.read }).toEqual({ known: 1, read: 0 });
    const session = await srv.app.store.db.selectFrom('sessions').select('user_id').where('id', '=', second.result.begun.sessionId).executeTakeFirstOrThrow();
    expect(session.user_id).toBe(fresh.userId);
  });

  it('a wrong session token, a forged user handle or a missing user verification is refused as before, after the read', async () => {
    const { userId, authenticator } = await userWithPasskey();
    const begun = await beginLogin(srv.url, { userId });
    const good = await sign(authenticator, begun);
    const wrongToken = await counted(() => codeOf(finishLogin(srv.url, begun.sessionId, good, { sessionToken: 'not-the-token' })));
    expect(wrongToken).toEqual({ result: Code.Unauthenticated, known: 0, read: 1 });
    // Someone without the token is refused before anything is recorded.
    expect(await failureReasons(begun.sessionId)).toEqual([]);
    expect((await counted(() => codeOf(finishLogin(srv.url, begun.sessionId, good, { sessionToken: begun.sessionToken })))).result).toBe('ok');

    const other = await userWithPasskey();
    const open = await beginLogin(srv.url);
    const forged = await sign(authenticator, open);
    forged.response.userHandle = other.authenticator.credentials[0]!.userHandle;
    const refused = await counted(() => errorOf(finishLogin(srv.url, open.sessionId, forged)));
    expect(refused.result.code).toBe(Code.Unauthenticated);
    expect(refused.result.rawMessage).toBe(NOT_ACCEPTED);
    expect(refused.read).toBe(1);
    expect(await failureReasons(open.sessionId)).toEqual([expect.stringMatching(/userHandle/)]);

    const unverified = await beginLogin(srv.url, { userId });
    const noUv = await counted(async () => errorOf(finishLogin(srv.url, unverified.sessionId, await sign(authenticator, unverified, { userVerified: false }))));
    expect(noUv.result.rawMessage).toBe(NOT_ACCEPTED);
    expect({ known: noUv.known, read: noUv.read }).toEqual({ known: 0, read: 1 });
    expect(await failureReasons(unverified.sessionId)).toEqual([expect.stringMatching(/[Uu]ser verification/)]);
  });

  it('what changed after CreateSession is refused: a removed passkey, a deactivated user, an organization that now requires SSO', async () => {
    const removed = await userWithPasskey();
    const a = await beginLogin(srv.url, { userId: removed.userId });
    await users().removePasskey({ userId: removed.userId, passkeyId: removed.passkeyId, force: true }, bearer(srv.admin));
    const afterRemoval = await counted(async () => errorOf(finishLogin(srv.url, a.sessionId, await sign(removed.authenticator, a))));
    expect(afterRemoval.result.code).toBe(Code.Unauthenticated);
    expect(afterRemoval.result.rawMessage).toBe(NOT_ACCEPTED);
    expect({ known: afterRemoval.known, read: afterRemoval.read }).toEqual({ known: 0, read: 1 });
    expect(await failureReasons(a.sessionId)).toHaveLength(1);

    const deactivated = await userWithPasskey();
    const b = await beginLogin(srv.url, { userId: deactivated.userId });
    await users().deactivateUser({ userId: deactivated.userId }, bearer(srv.admin));
    const afterDeactivation = await counted(async () => codeOf(finishLogin(srv.url, b.sessionId, await sign(deactivated.authenticator, b))));
    expect(afterDeactivation.result).not.toBe('ok');
    expect(afterDeactivation.known).toBe(0);
    const user = await srv.app.store.db.selectFrom('users').select('state').where('id', '=', deactivated.userId).executeTakeFirstOrThrow();
    expect(user.state).not.toBe('active');

    const orgs = clientFor(OrganizationService, 'grpc', srv.url);
    const { organizationId } = await orgs.addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
    const sso = await userWithPasskey(organizationId);
    const c = await beginLogin(srv.url, { userId: sso.userId });
    await orgs.setLoginPolicy({ organizationId, policy: { ssoRequired: true } }, bearer(srv.admin));
    const afterSso = await counted(async () => errorOf(finishLogin(srv.url, c.sessionId, await sign(sso.authenticator, c))));
    expect(afterSso.result.code).toBe(Code.PermissionDenied);
    expect({ known: afterSso.known, read: afterSso.read }).toEqual({ known: 0, read: 1 });
    // The session's factor was not recorded by any of them.
    const checked = await srv.app.store.db.selectFrom('sessions').select('webauthn_checked_at').where('id', 'in', [a.sessionId, b.sessionId, c.sessionId]).execute();
    expect(checked.every((s) => s.webauthn_checked_at === null)).toBe(true);
  });
});
