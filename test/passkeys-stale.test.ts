import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN } from './helpers/passkeys.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { BACKEND, startTestServer, type TestServer } from './helpers/server.js';

let srv: TestServer;
let admin: string;

beforeAll(async () => {
  srv = await startTestServer({ config: { 'challenge-ttl': '1s' } });
  admin = await srv.adminToken();
});
afterAll(() => srv?.close());

const pendingOf = async (userId: string) => {
  const db = srv.app.store.db;
  const passkeys = await db.selectFrom('passkeys').select('id').where('user_id', '=', userId).where('state', '=', 'not_ready').execute();
  const challenges = await db.selectFrom('challenges').select('passkey_id').where('user_id', '=', userId).where('kind', '=', 'registration').execute();
  return { passkeys: passkeys.map((p) => p.id).sort(), challenges: challenges.map((c) => c.passkey_id).sort() };
};

describe(`abandoned registrations (${BACKEND})`, () => {
  it("a new registration drops the user's expired ones (passkey and challenge), keeps live ones and other users' alone", async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    const [ada, bob] = [await createUser(srv.url, admin), await createUser(srv.url, admin)];
    const expired = await users.registerPasskey({ userId: ada }, bearer(admin));
    const othersExpired = await users.registerPasskey({ userId: bob }, bearer(admin));
    await new Promise((r) => setTimeout(r, 1300));
    const live = await users.registerPasskey({ userId: ada }, bearer(admin));
    const newest = await users.registerPasskey({ userId: ada }, bearer(admin));
    expect(await pendingOf(ada)).toEqual({ passkeys: [live.passkeyId, newest.passkeyId].sort(), challenges: [live.passkeyId, newest.passkeyId].sort() });
    expect(await pendingOf(bob)).toEqual({ passkeys: [othersExpired.passkeyId], challenges: [othersExpired.passkeyId] });

    // The dropped one cannot be completed; a live one can.
    const authenticator = createSoftAuthenticator();
    const late = await authenticator.register(creationOptionsOf(expired.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    expect(await codeOf(users.verifyPasskeyRegistration({ userId: ada, passkeyId: expired.passkeyId, publicKeyCredential: late as any, passkeyName: 'late' }, bearer(admin)))).toBe(Code.NotFound);
    const onTime = await authenticator.register(creationOptionsOf(live.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    expect(await codeOf(users.verifyPasskeyRegistration({ userId: ada, passkeyId: live.passkeyId, publicKeyCredential: onTime as any, passkeyName: 'on time' }, bearer(admin)))).toBe('ok');
  });

  it('RegisterPasskey for an unknown user is NOT_FOUND and stores nothing', async () => {
    const users = clientFor(UserService, 'connect', srv.url);
    expect(await codeOf(users.registerPasskey({ userId: 'no-such-user' }, bearer(admin)))).toBe(Code.NotFound);
    expect(await pendingOf('no-such-user')).toEqual({ passkeys: [], challenges: [] });
  });
});
