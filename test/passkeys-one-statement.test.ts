import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { UserVerificationPolicy } from '../gen/passkeyd/org/v2/org_pb.js';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { registrationStats } from '../src/domain/registration-finish.js';
import { findRegisteringUser } from '../src/store/registration-reads.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { errorOf, outcomeOf } from './helpers/codes.js';
import { createMachineUser, restOk, uniqueName } from './helpers/machine.js';
import { creationOptionsOf, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

/**
 * Registration with one statement per call. RegisterPasskey in one statement: the statement finds the user and its login policy as it writes, and
 * goes on only when nothing is in the way; anything that is (no user, a machine user, SSO required, no
 * room for another passkey) sends the call to the read path, which refuses with the same answer as
 * before. VerifyPasskeyRegistration of a registration this process began (with a token, no code) skips
 * its read: its statement checks the login policy as it is now, and anything that does not go through
 * sends it to the read path. These tests watch which way each call went and what was stored.
 */
// The server's default is preferred here, so a policy's REQUIRED is told apart from it.
const srv = useTestServer({ config: { 'user-verification': 'preferred' } });
const users = () => clientFor(UserService, 'grpc', srv.url);
const orgs = () => clientFor(OrganizationService, 'grpc', srv.url);

async function counted<T>(f: () => Promise<T>): Promise<{ result: T; oneStatement: number; read: number }> {
  const before = registrationStats();
  const result = await f();
  const after = registrationStats();
  return { result, oneStatement: after.beginOneStatement - before.beginOneStatement, read: after.beginRead - before.beginRead };
}

async function userIn(orgId: string, on: { url: string; admin: string } = srv): Promise<string> {
  const username = uniqueName('user');
  const body = { username, organization: { orgId }, profile: { givenName: 'A', familyName: 'B' }, email: { email: `${username}@example.com` } };
  return (await restOk(on.url, 'POST', '/v2/users/human', body, on.admin)).userId;
}

/** The registration challenges and NOT_READY passkeys a user has. */
async function pending(userId: string) {
  const db = srv.app.store.db;
  const challenges = await db.selectFrom('challenges').select(['passkey_id', 'challenge', 'user_verification']).where('user_id', '=', userId).execute();
  const passkeys = await db.selectFrom('passkeys').select(['id', 'org_id']).where('user_id', '=', userId).where('state', '=', 'not_ready').execute();
  return { challenges, passkeys };
}

describe(`RegisterPasskey in one statement (${BACKEND})`, () => {
  it("stores the challenge the options carry, with the policy's user verification, and excludes the user's passkeys", async () => {
    const { organizationId: orgId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
    const userId = await userIn(orgId);
    const first = await counted(() => registerPasskey(srv.url, { userId, token: srv.admin }));
    expect({ oneStatement: first.oneStatement, read: first.read }).toEqual({ oneStatement: 1, read: 0 });

    const begun = await counted(() => users().registerPasskey({ userId }, bearer(srv.admin)));
    expect({ oneStatement: begun.oneStatement, read: begun.read }).toEqual({ oneStatement: 1, read: 0 });
    const options = creationOptionsOf(begun.result.publicKeyCredentialCreationOptions);
    expect(options.excludeCredentials?.map((c) => c.id)).toEqual([first.result.authenticator.credentials[0]!.id]);
    // The server's default where the organization has no policy.
    expect(options.authenticatorSelection?.userVerification).toBe('preferred');
    const stored = await pending(userId);
    expect(stored.challenges).toEqual([{ passkey_id: begun.result.passkeyId, challenge: options.challenge, user_verification: 'preferred' }]);
    expect(stored.passkeys).toEqual([{ id: begun.result.passkeyId, org_id: orgId }]);
    const added = await srv.app.store.db
      .selectFrom('events')
      .select(['resource_owner', 'payload'])
      .where('aggregate_id', '=', userId)
      .where('event_type', '=', 'user.passkey.added')
      .orderBy('sequence', 'desc')
      .executeTakeFirstOrThrow();
    expect(added).toMatchObject({ resource_owner: orgId, payload: { passkey_id: begun.result.passkeyId } });

    await orgs().setLoginPolicy({ organizationId: orgId, policy: { userVerification: UserVerificationPolicy.REQUIRED } }, bearer(srv.admin));
    const strict = await counted(() => users().registerPasskey({ userId }, bearer(srv.admin)));
    expect(strict.oneStatement).toBe(1);
    expect(creationOptionsOf(strict.result.publicKeyCredentialCreationOptions).authenticatorSelection?.userVerification).toBe('required');
    expect((await pending(userId)).challenges.find((c) => c.passkey_id === strict.result.passkeyId)?.user_verification).toBe('required');
  });

  it('excludes every READY passkey of the user, oldest first, with its transports; the read path lists the same', async () => {
    const userId = await userIn((await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin))).organizationId);
    const transports = [['usb', 'nfc'], [], ['internal', 'hybrid']];
    const ids: string[] = [];
    for (const t of transports) {
      const r = await registerPasskey(srv.url, { userId, token: srv.admin, authenticator: createSoftAuthenticator({ transports: t }) });
      ids.push(r.authenticator.credentials[0]!.id);
    }
    // A registration begun and never finished is not excluded (it has no credential yet).
    await users().registerPasskey({ userId }, bearer(srv.admin));
    const begun = await counted(() => users().registerPasskey({ userId }, bearer(srv.admin)));
    expect(begun.oneStatement).toBe(1);
    const excluded = creationOptionsOf(begun.result.publicKeyCredentialCreationOptions).excludeCredentials;
    expect(excluded).toEqual([
      { id: ids[0], transports: ['usb', 'nfc'], type: 'public-key' },
      { id: ids[1], type: 'public-key' },
      { id: ids[2], transports: ['internal', 'hybrid'], type: 'public-key' },
    ]);
    const read = await findRegisteringUser(srv.app.store.db, userId);
    expect(read?.credentials).toEqual(excluded!.map((c) => ({ id: c.id, transports: c.transports ?? [] })));
    expect(await findRegisteringUser(srv.app.store.db, 'no-such-user')).toBeUndefined();
  });

  it('what is in the way sends the call to the read path, which refuses as before and leaves nothing behind', async () => {
    const { organizationId: orgId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
    const unknown = await counted(() => errorOf(users().registerPasskey({ userId: 'no-such-user' }, bearer(srv.admin))));
    expect({ code: unknown.result.code, oneStatement: unknown.oneStatement, read: unknown.read }).toEqual({ code: Code.NotFound, oneStatement: 0, read: 1 });

    const machine = await createMachineUser(srv.url, srv.admin, orgId);
    const refusedMachine = await counted(() => errorOf(users().registerPasskey({ userId: machine.id }, bearer(srv.admin))));
    expect({ code: refusedMachine.result.code, read: refusedMachine.read }).toEqual({ code: Code.FailedPrecondition, read: 1 });
    expect(refusedMachine.result.rawMessage).toContain('machine user');

    const userId = await userIn(orgId);
    await orgs().setLoginPolicy({ organizationId: orgId, policy: { maxPasskeysPerUser: 1 } }, bearer(srv.admin));
    await registerPasskey(srv.url, { userId, token: srv.admin });
    const full = await counted(() => errorOf(users().registerPasskey({ userId }, bearer(srv.admin))));
    expect({ code: full.result.code, oneStatement: full.oneStatement, read: full.read }).toEqual({ code: Code.AlreadyExists, oneStatement: 0, read: 1 });
    expect(full.result.rawMessage).toContain('max_passkeys_per_user 1');

    await orgs().setLoginPolicy({ organizationId: orgId, policy: { ssoRequired: true, maxPasskeysPerUser: 5 } }, bearer(srv.admin));
    const sso = await counted(() => errorOf(users().registerPasskey({ userId }, bearer(srv.admin))));
    expect({ code: sso.result.code, read: sso.read }).toEqual({ code: Code.PermissionDenied, read: 1 });
    expect(sso.result.rawMessage).toContain('sso_required');
    // The refused statements were undone whole: no challenge, no NOT_READY passkey, no event.
    expect(await pending(userId)).toEqual({ challenges: [], passkeys: [] });
    const added = await srv.app.store.db.selectFrom('events').select('event_type').where('aggregate_id', '=', userId).where('event_type', '=', 'user.passkey.added').execute();
    expect(added).toHaveLength(1);
  });
});

describe(`VerifyPasskeyRegistration with no read (${BACKEND})`, () => {
  /** RegisterPasskey, and a response to it from a new authenticator (not sent yet). */
  async function begin(userId: string, origin = DEFAULT_ORIGIN) {
    const begun = await users().registerPasskey({ userId }, bearer(srv.admin));
    const credential = await createSoftAuthenticator().register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), { origin });
    return { passkeyId: begun.passkeyId, credential };
  }
  async function complete(userId: string, b: Awaited<ReturnType<typeof begin>>) {
    const before = registrationStats();
    const outcome = await outcomeOf(
      users().verifyPasskeyRegistration({ userId, passkeyId: b.passkeyId, publicKeyCredential: b.credential as never, passkeyName: 'p' }, bearer(srv.admin)),
    );
    const after = registrationStats();
    return { ...outcome, known: after.completeKnown - before.completeKnown, read: after.completeRead - before.completeRead };
  }
  async function listed(userId: string): Promise<string[]> {
    return (await users().listPasskeys({ userId }, bearer(srv.admin))).result.map((p) => p.id);
  }
  async function orgUser() {
    const { organizationId: orgId } = await orgs().addOrganization({ name: uniqueName('org') }, bearer(srv.admin));
    return { orgId, userId: await userIn(orgId) };
  }

  it('a registration begun here completes with no read, and stores and records what the read path does', async () => {
    const { orgId, userId } = await orgUser();
    const b = await begin(userId);
    expect(await complete(userId, b)).toMatchObject({ code: 'ok', known: 1, read: 0 });
    expect(await listed(userId)).toEqual([b.passkeyId]);
    const row = await srv.app.store.db.selectFrom('passkeys').select(['state', 'credential_id', 'org_id']).where('id', '=', b.passkeyId).executeTakeFirstOrThrow();
    expect({ state: row.state, credential: Buffer.from(row.credential_id!).toString('base64url'), org: row.org_id }).toEqual({
      state: 'ready',
      credential: b.credential.id,
      org: orgId,
    });
    const verified = await srv.app.store.db
      .selectFrom('events')
      .select(['payload', 'creator'])
      .where('aggregate_id', '=', userId)
      .where('event_type', '=', 'user.passkey.verified')
      .executeTakeFirstOrThrow();
    expect(verified.payload).toMatchObject({ passkey_id: b.passkeyId, credential_id: b.credential.id, attestation_format: 'none' });
    expect((await srv.app.store.db.selectFrom('challenges').select('id').where('passkey_id', '=', b.passkeyId).execute()).length).toBe(0);
    // The same response again: the process forgot the registration, and the read path answers.
    expect(await complete(userId, b)).toMatchObject({ code: Code.FailedPrecondition, known: 0, read: 1 });
  });

  it('a call naming another user is answered by the read path and leaves the registration to its user', async () => {
    const { orgId, userId } = await orgUser();
    const other = await userIn(orgId);
    const b = await begin(userId);
    expect(await complete(other, b)).toMatchObject({ code: Code.NotFound, known: 0, read: 1 });
    expect(await complete(userId, b)).toMatchObject({ code: 'ok', known: 1, read: 0 });
  });

  it('a response that does not verify goes to the read path, which refuses it and lets the user try again', async () => {
    const { userId } = await orgUser();
    const b = await begin(userId, 'https://evil.example');
    const refused = await complete(userId, b);
    expect(refused).toMatchObject({ code: Code.InvalidArgument, known: 0, read: 1 });
    expect(refused.message).toContain('origin');
    expect(await listed(userId)).toEqual([]);
  });

  it('a login policy changed after RegisterPasskey is applied: SSO, a denied AAGUID, trusted attestation and the passkey limit', async () => {
    const { orgId, userId } = await orgUser();
    const setPolicy = (policy: Record<string, unknown>) => orgs().setLoginPolicy({ organizationId: orgId, policy }, bearer(srv.admin));

    const sso = await begin(userId);
    await setPolicy({ ssoRequired: true });
    expect(await complete(userId, sso)).toMatchObject({ code: Code.PermissionDenied, known: 0, read: 1 });

    await setPolicy({});
    const denied = await begin(userId);
    // The soft authenticator's AAGUID is all zeros.
    await setPolicy({ deniedAaguids: ['00000000-0000-0000-0000-000000000000'] });
    const deniedResult = await complete(userId, denied);
    expect(deniedResult).toMatchObject({ code: Code.PermissionDenied, known: 0, read: 1 });
    expect(deniedResult.message).toContain('AAGUID');

    await setPolicy({ allowedAaguids: ['aaaaaaaa-0000-0000-0000-000000000001'] });
    const notAllowed = await begin(userId);
    expect(await complete(userId, notAllowed)).toMatchObject({ code: Code.PermissionDenied, known: 0, read: 1 });

    await setPolicy({});
    const trusted = await begin(userId);
    await setPolicy({ requireTrustedAttestation: true });
    // Checking an attestation needs the metadata: the read path decides (a "none" attestation is not trusted).
    expect(await complete(userId, trusted)).toMatchObject({ known: 0, read: 1 });
    expect(await listed(userId)).toEqual([]);

    await setPolicy({ maxPasskeysPerUser: 2 });
    const first = await begin(userId);
    const second = await begin(userId);
    await setPolicy({ maxPasskeysPerUser: 1 });
    expect(await complete(userId, first)).toMatchObject({ code: 'ok', known: 1 });
    const full = await complete(userId, second);
    expect(full).toMatchObject({ code: Code.AlreadyExists, known: 0, read: 1 });
    expect(full.message).toContain('max_passkeys_per_user 1');
    expect(await listed(userId)).toEqual([first.passkeyId]);
  });
});

// Several instances share one database only on PostgreSQL; PGlite is one process by construction.
describe.skipIf(BACKEND !== 'postgres')('a registration begun on one instance and completed on another', () => {
  const first = useTestServer();
  const second = useTestServer(() => ({ schema: first.schema }));

  it('the other instance completes it by reading; the first, which remembers the challenge, then cannot use it again', async () => {
    const { organizationId } = await clientFor(OrganizationService, 'grpc', first.url).addOrganization({ name: uniqueName('org') }, bearer(first.admin));
    const userId = await userIn(organizationId, first);
    const usersOn = (url: string) => clientFor(UserService, 'grpc', url);
    const begun = await usersOn(first.url).registerPasskey({ userId }, bearer(first.admin));
    const options = creationOptionsOf(begun.publicKeyCredentialCreationOptions);
    const answer = async (url: string) => {
      const credential = await createSoftAuthenticator().register(options, { origin: DEFAULT_ORIGIN });
      const before = registrationStats();
      const outcome = await outcomeOf(
        usersOn(url).verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: credential as never, passkeyName: 'p' }, bearer(first.admin)),
      );
      const after = registrationStats();
      return { code: outcome.code, known: after.completeKnown - before.completeKnown, read: after.completeRead - before.completeRead };
    };
    expect(await answer(second.url)).toEqual({ code: 'ok', known: 0, read: 1 });
    // Another authenticator's answer to the same challenge: the first instance's statement finds it used.
    expect(await answer(first.url)).toEqual({ code: Code.FailedPrecondition, known: 0, read: 1 });
    expect((await usersOn(second.url).listPasskeys({ userId }, bearer(first.admin))).result.map((p) => p.id)).toEqual([begun.passkeyId]);
  });
});
