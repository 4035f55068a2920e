/**
 * Sign out everywhere (DeleteSessions) and lockout protection for self-service only (issue 13).
 */
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { codeOf, login } from './helpers/login.js';
import { addPat, createMachineUser, grant } from './helpers/machine.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, type TestServerHandle, useTestServer } from './helpers/server.js';

async function rest(srv: TestServerHandle, method: string, path: string, body: unknown, token: string): Promise<{ status: number; json: any }> {
  const res = await fetch(srv.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const works = async (srv: TestServerHandle, token: string, userId: string) => codeOf(clientFor(UserService, 'connect', srv.url).getUserByID({ userId }, bearer(token)));

describe(`sign out everywhere (${BACKEND})`, () => {
  const srv = useTestServer();

  it('ends every other session of the user and their access tokens at once; the current one keeps working', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const devices = [];
    for (let i = 0; i < 3; i++) devices.push(await login(srv.url, authenticator, { userId }));
    const [current, ...others] = devices;
    const r = await rest(srv, 'DELETE', `/v2/users/${userId}/sessions`, {}, current!.done.accessToken);
    expect(r.status).toBe(200);
    expect(r.json.sessionIds).toHaveLength(2);
    expect(r.json.sessionIds).not.toContain(current!.begun.sessionId);
    for (const o of others) {
      expect(r.json.sessionIds).toContain(o.begun.sessionId);
      expect(await works(srv, o.done.accessToken, userId)).toBe(Code.Unauthenticated);
    }
    expect(await works(srv, current!.done.accessToken, userId)).toBe('ok');
    const ended = await srv.app.store.db
      .selectFrom('events')
      .select(['payload', 'creator'])
      .where('event_type', '=', 'session.terminated.others')
      .where('aggregate_id', '=', others[0]!.begun.sessionId)
      .execute();
    expect(ended).toEqual([{ payload: { user_id: userId, kept_session_id: current!.begun.sessionId }, creator: userId }]);
    // Nothing left to end: an empty answer, not an error.
    expect((await rest(srv, 'DELETE', `/v2/users/${userId}/sessions`, {}, current!.done.accessToken)).json.sessionIds ?? []).toEqual([]);
  });

  it.each(PROTOCOLS)('over %s: an admin ends all of a user’s sessions; another user may not', async (protocol) => {
    const sessions = clientFor(SessionService, protocol, srv.url);
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const a = await login(srv.url, authenticator, { userId });
    const b = await login(srv.url, authenticator, { userId });
    const otherId = await createUser(srv.url, srv.admin);
    const other = await login(srv.url, (await registerPasskey(srv.url, { userId: otherId, token: srv.admin })).authenticator, { userId: otherId });
    expect(await codeOf(sessions.deleteSessions({ userId }, bearer(other.done.accessToken)))).toBe(Code.PermissionDenied);
    const r = await sessions.deleteSessions({ userId }, bearer(srv.admin));
    expect(r.sessionIds.sort()).toEqual([a.begun.sessionId, b.begun.sessionId].sort());
    expect(await works(srv, a.done.accessToken, userId)).toBe(Code.Unauthenticated);
    expect(await works(srv, b.done.accessToken, userId)).toBe(Code.Unauthenticated);
    expect(await works(srv, other.done.accessToken, otherId)).toBe('ok');
  });
});

describe.skipIf(BACKEND !== 'postgres')('sign out everywhere on two instances of one PostgreSQL database', () => {
  const first = useTestServer();
  const second = useTestServer(() => ({ schema: first.schema }));

  it('the ended sessions’ tokens are refused on both instances at once, the kept one works on both', async () => {
    const userId = await createUser(first.url, first.admin);
    const { authenticator } = await registerPasskey(first.url, { userId, token: first.admin });
    const phone = await login(second.url, authenticator, { userId });
    const laptop = await login(first.url, authenticator, { userId });
    for (const srv of [first, second]) expect(await works(srv, phone.done.accessToken, userId)).toBe('ok');
    await clientFor(SessionService, 'grpc', second.url).deleteSessions({ userId }, bearer(laptop.done.accessToken));
    for (const srv of [first, second]) {
      expect(await works(srv, phone.done.accessToken, userId)).toBe(Code.Unauthenticated);
      expect(await works(srv, laptop.done.accessToken, userId)).toBe('ok');
    }
  });
});

describe(`lockout protection is for self-service (${BACKEND})`, () => {
  const srv = useTestServer();

  it('the user may not remove their own last passkey; an admin may, and the event names who removed it', async () => {
    const users = clientFor(UserService, 'connect', srv.url);
    const userId = await createUser(srv.url, srv.admin);
    const first = await registerPasskey(srv.url, { userId, token: srv.admin });
    const second = await registerPasskey(srv.url, { userId, token: srv.admin });
    const { done } = await login(srv.url, first.authenticator, { userId });
    await users.removePasskey({ userId, passkeyId: second.passkeyId }, bearer(done.accessToken));
    expect(await codeOf(users.removePasskey({ userId, passkeyId: first.passkeyId }, bearer(done.accessToken)))).toBe(Code.FailedPrecondition);
    expect(await codeOf(users.removePasskey({ userId, passkeyId: first.passkeyId, force: true }, bearer(done.accessToken)))).toBe(Code.PermissionDenied);
    const orgAdmin = await srv.adminToken('org_admin');
    // The admin's removal over gRPC (the user's calls above went over Connect; REST is in session-context.test.ts).
    await clientFor(UserService, 'grpc', srv.url).removePasskey({ userId, passkeyId: first.passkeyId }, bearer(orgAdmin));
    const removed = await srv.app.store.db
      .selectFrom('events')
      .select(['payload', 'creator'])
      .where('aggregate_id', '=', userId)
      .where('event_type', '=', 'user.passkey.removed')
      .orderBy('sequence')
      .execute();
    const adminId = JSON.parse(Buffer.from(orgAdmin.split('.')[1]!, 'base64url').toString()).sub;
    expect(removed.map((e) => e.payload)).toEqual([
      expect.objectContaining({ passkey_id: second.passkeyId, forced: false, removed_by: userId, self_service: true }),
      expect.objectContaining({ passkey_id: first.passkeyId, forced: true, removed_by: adminId, self_service: false }),
    ]);
    expect(removed.map((e) => e.creator)).toEqual([userId, adminId]);
  });

  it('a machine user holding org_admin (a user-management service) removes a last passkey with its PAT, no force', async () => {
    const orgId = await defaultOrgId(srv.app.store.db);
    const service = await createMachineUser(srv.url, srv.admin, orgId, 'user-mgmt');
    await grant(srv.url, srv.admin, service.id, ['org_admin'], orgId);
    const pat = await addPat(srv.url, srv.admin, service.id);
    const userId = await createUser(srv.url, srv.admin);
    const { passkeyId } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const r = await rest(srv, 'DELETE', `/v2/users/${userId}/passkeys/${passkeyId}`, undefined, pat.token);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const [event] = await srv.app.store.db.selectFrom('events').select('payload').where('aggregate_id', '=', userId).where('event_type', '=', 'user.passkey.removed').execute();
    expect(event?.payload).toMatchObject({ passkey_id: passkeyId, forced: true, removed_by: service.id, self_service: false });
  });
});
