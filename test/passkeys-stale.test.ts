import { Code } from '@connectrpc/connect';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN } from './helpers/passkeys.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { BACKEND, useTestServer } from './helpers/server.js';

// 3 s: the live registrations below must outlast the eight calls that follow them, also on a loaded machine.
const srv = useTestServer({ config: { 'challenge-ttl': '3s' } });

const pendingOf = async (userId: string) => {
  const db = srv.app.store.db;
  const passkeys = await db.selectFrom('passkeys').select('id').where('user_id', '=', userId).where('state', '=', 'not_ready').execute();
  const challenges = await db.selectFrom('challenges').select('passkey_id').where('user_id', '=', userId).where('kind', '=', 'registration').execute();
  return { passkeys: passkeys.map((p) => p.id).sort(), challenges: challenges.map((c) => c.passkey_id).sort() };
};

/** Row counts of the tables a registration writes, and the newest event's position. */
const storedState = async () => {
  const count = async (table: string) => (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(srv.app.store.db)).rows[0]!.n;
  const { rows } = await sql<{ p: string | null }>`select max(position)::text as p from events`.execute(srv.app.store.db);
  return {
    events: await count('events'),
    lastEvent: rows[0]!.p,
    aggregates: await count('aggregates'),
    users: await count('users'),
    passkeys: await count('passkeys'),
    challenges: await count('challenges'),
  };
};

describe(`abandoned registrations (${BACKEND})`, () => {
  it("a new registration drops the user's expired ones (passkey and challenge), keeps live ones and other users' alone", async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    const [ada, bob] = [await createUser(srv.url, srv.admin), await createUser(srv.url, srv.admin)];
    const expired = await users.registerPasskey({ userId: ada }, bearer(srv.admin));
    const othersExpired = await users.registerPasskey({ userId: bob }, bearer(srv.admin));
    await new Promise((r) => setTimeout(r, 3300));
    const live = await users.registerPasskey({ userId: ada }, bearer(srv.admin));
    const newest = await users.registerPasskey({ userId: ada }, bearer(srv.admin));
    expect(await pendingOf(ada)).toEqual({ passkeys: [live.passkeyId, newest.passkeyId].sort(), challenges: [live.passkeyId, newest.passkeyId].sort() });
    expect(await pendingOf(bob)).toEqual({ passkeys: [othersExpired.passkeyId], challenges: [othersExpired.passkeyId] });

    // The dropped one cannot be completed; a live one can.
    const authenticator = createSoftAuthenticator();
    const late = await authenticator.register(creationOptionsOf(expired.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    expect(
      await codeOf(users.verifyPasskeyRegistration({ userId: ada, passkeyId: expired.passkeyId, publicKeyCredential: late as any, passkeyName: 'late' }, bearer(srv.admin))),
    ).toBe(Code.NotFound);
    const onTime = await authenticator.register(creationOptionsOf(live.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    expect(
      await codeOf(users.verifyPasskeyRegistration({ userId: ada, passkeyId: live.passkeyId, publicKeyCredential: onTime as any, passkeyName: 'on time' }, bearer(srv.admin))),
    ).toBe('ok');
  });

  it('RegisterPasskey for an unknown user is NOT_FOUND and stores nothing', async () => {
    // Foreign keys already forbid passkeys and challenges of a user who does not exist, so looking for
    // those rows proves nothing: compare every table a registration writes (events and aggregates have
    // no foreign key), before and after.
    const users = clientFor(UserService, 'connect', srv.url);
    const before = await storedState();
    expect(await codeOf(users.registerPasskey({ userId: 'no-such-user' }, bearer(srv.admin)))).toBe(Code.NotFound);
    expect(await storedState()).toEqual(before);
    const aggregate = await srv.app.store.db.selectFrom('aggregates').select('aggregate_type').where('aggregate_id', '=', 'no-such-user').execute();
    expect(aggregate).toEqual([]);
    // The comparison sees a registration that does store something.
    await users.registerPasskey({ userId: await createUser(srv.url, srv.admin) }, bearer(srv.admin));
    const after = await storedState();
    expect(after.events - before.events).toBe(2); // user.human.added, user.passkey.added
    expect([after.passkeys - before.passkeys, after.challenges - before.challenges]).toEqual([1, 1]);
  });
});
