/**
 * A login back end as a machine user with `session_manager` on its organization (ZITADEL's way): it
 * opens a session for a human user of its organization (CreateSession with checks.user), hands the
 * WebAuthn options to the browser (a software authenticator here), and finishes with SetSession WITHOUT
 * the session token, its PAT as Bearer; then GetSession and DeleteSession, also without the token. Over
 * REST and gRPC (@grpc/grpc-js). For another organization's user it is refused (PERMISSION_DENIED):
 * CreateSession, and SetSession/GetSession/DeleteSession of a session of that organization.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { decodeJwt } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import type { SoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { jsonClient, type CallResult, type JsonClient } from './helpers/four-clients.js';
import { requestOptionsOf } from './helpers/login.js';
import { addPat, createMachineUser, grant, pollUntil, uniqueName } from './helpers/machine.js';
import { createUser, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const S = SessionService.method;

const srv = useTestServer();

let orgA: string;
/** The session_manager's PAT (a machine user of org A). */
let manager: string;
/** Human users with a passkey each: one of org A, one of org B. */
let userA: { id: string; authenticator: SoftAuthenticator };
let userB: { id: string; authenticator: SoftAuthenticator };

beforeAll(async () => {
  orgA = await defaultOrgId(srv.app.store.db);
  const { organizationId: orgB } = await clientFor(OrganizationService, 'connect', srv.url).addOrganization({ name: uniqueName('org-b') }, bearer(srv.admin));
  const login = await createMachineUser(srv.url, srv.admin, orgA, 'login-backend');
  await grant(srv.url, srv.admin, login.id, ['session_manager'], orgA);
  manager = (await addPat(srv.url, srv.admin, login.id)).token;

  const a = await createUser(srv.url, srv.admin);
  userA = { id: a, authenticator: (await registerPasskey(srv.url, { userId: a, token: srv.admin })).authenticator };
  // An org admin of org B creates org B's user (AddHumanUser puts it in the caller's organization).
  const b = await createUser(srv.url, await srv.adminToken('org_admin', orgB));
  userB = { id: b, authenticator: (await registerPasskey(srv.url, { userId: b, token: srv.admin })).authenticator };

  // The role is looked up per call and cached for half a second: wait until it is seen.
  const seen = await pollUntil(
    () => jsonClient('connect', srv.url).call(S.createSession, { checks: { user: { userId: userA.id } } }, manager),
    (r) => r.ok,
  );
  expect(seen.result.ok).toBe(true);
});

function okJson(r: CallResult, what: string): any {
  if (!r.ok) throw new Error(`${what} failed with ${Code[r.code]}: ${r.message}`);
  return r.json;
}
const codeName = (r: CallResult) => (r.ok ? 'ok' : Code[r.code]);

describe.each(['rest', 'grpc-js'] as const)(`a session_manager drives logins over %s (${BACKEND})`, (clientName) => {
  let c: JsonClient;
  beforeAll(() => {
    c = jsonClient(clientName, srv.url);
  });

  it('CreateSession for its organization’s user → the browser signs → SetSession, GetSession and DeleteSession without the session token', async () => {
    const created = okJson(await c.call(S.createSession, { checks: { user: { userId: userA.id } }, challenges: { webAuthN: { domain: 'localhost' } } }, manager), 'CreateSession');
    expect(created).toMatchObject({ sessionId: expect.any(String), sessionToken: expect.any(String) });
    const options = requestOptionsOf(created.challenges.webAuthN.publicKeyCredentialRequestOptions);
    expect(options.allowCredentials?.length).toBe(1);

    // The browser's part: only the options go there, and only the assertion comes back.
    const assertion = await userA.authenticator.authenticate(options, { origin: DEFAULT_ORIGIN });
    const set = okJson(
      await c.call(S.setSession, { sessionId: created.sessionId, checks: { webAuthN: { credentialAssertionData: assertion as unknown as JsonObject } } }, manager),
      'SetSession',
    );
    expect(set).toMatchObject({ sessionToken: expect.any(String), accessToken: expect.any(String), accessTokenExpirationDate: expect.any(String) });
    // The user's access token names the user and the session, not the manager.
    expect(decodeJwt(set.accessToken)).toMatchObject({ sub: userA.id, sid: created.sessionId, org: orgA });

    const got = okJson(await c.call(S.getSession, { sessionId: created.sessionId }, manager), 'GetSession');
    expect(got.session).toMatchObject({ id: created.sessionId, factors: { user: { id: userA.id, organizationId: orgA }, webAuthN: { userVerified: true } } });

    okJson(await c.call(S.deleteSession, { sessionId: created.sessionId }, manager), 'DeleteSession');
    // The session is over: its access token is refused, and reading it is NOT_FOUND.
    const after = await c.call(S.getSession, { sessionId: created.sessionId }, manager);
    expect(codeName(after)).toBe('NotFound');
    const usesToken = await c.call(S.getSession, { sessionId: created.sessionId }, set.accessToken);
    expect(codeName(usesToken)).toBe('Unauthenticated');
  });

  it('ListSessions shows the sessions of its organization only', async () => {
    const mine = okJson(await c.call(S.createSession, { checks: { user: { userId: userA.id } } }, manager), 'CreateSession');
    const theirs = okJson(await c.call(S.createSession, { checks: { user: { userId: userB.id } } }), 'CreateSession (public)');
    const listed = await clientFor(SessionService, 'connect', srv.url).listSessions({}, bearer(manager));
    const ids = listed.sessions.map((s) => s.id);
    expect(ids).toContain(mine.sessionId);
    expect(ids).not.toContain(theirs.sessionId);
  });

  it("is refused (PERMISSION_DENIED) for another organization's user: CreateSession, and SetSession/GetSession/DeleteSession of its session", async () => {
    const refused = await c.call(S.createSession, { checks: { user: { userId: userB.id } }, challenges: { webAuthN: {} } }, manager);
    expect(codeName(refused)).toBe('PermissionDenied');

    // A session of org B's user, opened by its own browser (no token), signed by it.
    const theirs = okJson(await c.call(S.createSession, { checks: { user: { userId: userB.id } }, challenges: { webAuthN: {} } }), 'CreateSession (public)');
    const assertion = await userB.authenticator.authenticate(requestOptionsOf(theirs.challenges.webAuthN.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
    const set = await c.call(S.setSession, { sessionId: theirs.sessionId, checks: { webAuthN: { credentialAssertionData: assertion as unknown as JsonObject } } }, manager);
    expect(codeName(set)).toBe('PermissionDenied');
    expect(codeName(await c.call(S.getSession, { sessionId: theirs.sessionId }, manager))).toBe('PermissionDenied');
    expect(codeName(await c.call(S.deleteSession, { sessionId: theirs.sessionId }, manager))).toBe('PermissionDenied');

    // The refused SetSession consumed nothing: the browser's own SetSession (with its token) still succeeds.
    const own = await c.call(
      S.setSession,
      { sessionId: theirs.sessionId, sessionToken: theirs.sessionToken, checks: { webAuthN: { credentialAssertionData: assertion as unknown as JsonObject } } },
      undefined,
    );
    expect(codeName(own)).toBe('ok');
  });

  it("without the manager's PAT, a session it opened needs the session token, as any other", async () => {
    const created = okJson(await c.call(S.createSession, { checks: { user: { userId: userA.id } }, challenges: { webAuthN: {} } }, manager), 'CreateSession');
    expect(['Unauthenticated', 'PermissionDenied']).toContain(codeName(await c.call(S.getSession, { sessionId: created.sessionId })));
    expect(codeName(await c.call(S.getSession, { sessionId: created.sessionId, sessionToken: created.sessionToken }))).toBe('ok');
  });
});
