import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { AuthFactorState, PasskeyAuthenticator, PasskeyDeviceType } from '../gen/passkeyd/user/v2/passkey_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator, type SoftAlg } from './helpers/authenticator.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer({ config: { 'rp-id': 'localhost,login.example.com', origins: `${DEFAULT_ORIGIN},https://login.example.com` } });

async function codeOf(p: Promise<unknown>): Promise<Code | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

/** A token for the user themself (SELF access). */
async function selfToken(userId: string): Promise<string> {
  const user = await srv.app.store.db.selectFrom('users').select('org_id').where('id', '=', userId).executeTakeFirstOrThrow();
  return (await srv.app.tokens.issue({ subject: userId, orgId: user.org_id, ttlSeconds: 600 })).token;
}

async function eventsOf(userId: string): Promise<string[]> {
  const rows = await srv.app.store.db.selectFrom('events').select('event_type').where('aggregate_id', '=', userId).orderBy('sequence').execute();
  return rows.map((r) => r.event_type);
}

const ALGS: SoftAlg[] = ['ES256', 'EdDSA', 'RS256'];
const ATTESTATIONS = ['none', 'packed'] as const;

describe(`passkey registration over every protocol (${BACKEND})`, () => {
  it.each(PROTOCOLS)('%s: every algorithm × attestation completes registration and is listed with its attributes', async (protocol) => {
    const userId = await createUser(srv.url, srv.admin);
    const token = await selfToken(userId);
    const users = clientFor(UserService, protocol, srv.url);
    let expectedSequence = 1n;
    for (const alg of ALGS) {
      for (const attestation of ATTESTATIONS) {
        const authenticator = createSoftAuthenticator({ alg, attestation, backupEligible: alg !== 'RS256', backedUp: alg !== 'RS256', transports: ['usb', 'nfc'] });
        const r = await registerPasskey(srv.url, { userId, token, protocol, authenticator, name: `${alg}/${attestation}` });
        expectedSequence += 2n; // added + verified
        expect(r.sequence).toBe(expectedSequence);
        const stored = await srv.app.store.db.selectFrom('passkeys').selectAll().where('id', '=', r.passkeyId).executeTakeFirstOrThrow();
        expect(stored.state).toBe('ready');
        expect(stored.algorithm).toBe({ ES256: -7, EdDSA: -8, RS256: -257 }[alg]);
        expect(stored.attestation_format).toBe(attestation);
        expect(Buffer.from(stored.credential_id!).toString('base64url')).toBe(authenticator.credentials[0]!.id);
      }
    }
    const listed = await users.listPasskeys({ userId, query: { asc: true } }, bearer(token));
    expect(listed.details?.totalResult).toBe(6n);
    expect(listed.result.map((p) => p.name)).toEqual(['ES256/none', 'ES256/packed', 'EdDSA/none', 'EdDSA/packed', 'RS256/none', 'RS256/packed']);
    const first = listed.result[0]!;
    expect(first.state).toBe(AuthFactorState.READY);
    expect(first.aaguid).toBe('00000000-0000-0000-0000-000000000000');
    expect(first.authenticatorName).toBe('');
    expect(first.backupEligible).toBe(true);
    expect(first.backedUp).toBe(true);
    expect(first.deviceType).toBe(PasskeyDeviceType.MULTI_DEVICE);
    expect(first.transports).toEqual(['usb', 'nfc']);
    expect(first.rpId).toBe('localhost');
    expect(first.attestationFormat).toBe('none');
    expect(first.creationDate).toBeTruthy();
    expect(first.lastUsedDate).toBeUndefined();
    const rsa = listed.result[4]!;
    expect(rsa.backupEligible).toBe(false);
    expect(rsa.deviceType).toBe(PasskeyDeviceType.SINGLE_DEVICE);
    const user = await users.getUserByID({ userId }, bearer(srv.admin));
    expect(user.details?.sequence).toBe(expectedSequence);
  });

  it('creation options: fresh challenge, configured RP, random user handle, excluded credentials, resident key, UV, algorithms', async () => {
    const userId = await createUser(srv.url, srv.admin, 'options-user');
    const users = clientFor(UserService, 'connect', srv.url);
    const first = await registerPasskey(srv.url, { userId, token: srv.admin });
    const a = await users.registerPasskey({ userId, authenticator: PasskeyAuthenticator.CROSS_PLATFORM }, bearer(srv.admin));
    const b = await users.registerPasskey({ userId, domain: 'login.example.com', authenticator: PasskeyAuthenticator.PLATFORM }, bearer(srv.admin));
    const oa = creationOptionsOf(a.publicKeyCredentialCreationOptions);
    const ob = creationOptionsOf(b.publicKeyCredentialCreationOptions);
    expect(Object.keys(a.publicKeyCredentialCreationOptions!)).toEqual(['publicKey']);
    expect(Buffer.from(oa.challenge, 'base64url')).toHaveLength(32);
    expect(oa.challenge).not.toBe(ob.challenge);
    expect(oa.rp).toEqual({ name: 'passkeyd', id: 'localhost' });
    expect(ob.rp.id).toBe('login.example.com');
    const handle = await srv.app.store.db.selectFrom('users').select('webauthn_user_handle').where('id', '=', userId).executeTakeFirstOrThrow();
    expect(oa.user.id).toBe(Buffer.from(handle.webauthn_user_handle).toString('base64url'));
    expect(Buffer.from(oa.user.id, 'base64url')).toHaveLength(32);
    expect(oa.user.id).not.toContain(Buffer.from(userId).toString('base64url'));
    expect(oa.user.name).toBe('options-user');
    expect(oa.excludeCredentials?.map((c) => c.id)).toEqual([first.authenticator.credentials[0]!.id]);
    expect(oa.authenticatorSelection).toMatchObject({ residentKey: 'required', requireResidentKey: true, userVerification: 'required', authenticatorAttachment: 'cross-platform' });
    expect(ob.authenticatorSelection?.authenticatorAttachment).toBe('platform');
    expect(oa.pubKeyCredParams.map((p) => p.alg)).toEqual([-8, -7, -257]);
    expect(oa.attestation).toBe('none');
    expect(oa.timeout).toBe(srv.config.challengeTtlSeconds * 1000);
    // The stored challenge is bound to the passkey, user, RP ID, ceremony and UV requirement.
    const row = await srv.app.store.db.selectFrom('challenges').selectAll().where('passkey_id', '=', b.passkeyId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      kind: 'registration',
      challenge: ob.challenge,
      user_id: userId,
      rp_id: 'login.example.com',
      user_verification: 'required',
      registration_code_id: null,
    });
    expect(new Date(row.expires_at).getTime() - Date.now()).toBeGreaterThan((srv.config.challengeTtlSeconds - 30) * 1000);
    // An unknown domain is refused, with nothing stored.
    const before = await eventsOf(userId);
    expect(await codeOf(users.registerPasskey({ userId, domain: 'evil.example' }, bearer(srv.admin)))).toBe(Code.InvalidArgument);
    expect(await eventsOf(userId)).toEqual(before);
  });

  it('a passkey registered for the second RP ID is verified against that RP ID and its origin', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const r = await registerPasskey(srv.url, { userId, token: srv.admin, domain: 'login.example.com', origin: 'https://login.example.com' });
    const row = await srv.app.store.db.selectFrom('passkeys').select(['rp_id', 'state']).where('id', '=', r.passkeyId).executeTakeFirstOrThrow();
    expect(row).toEqual({ rp_id: 'login.example.com', state: 'ready' });
  });

  it('rename: 1–200 characters, READY passkeys of that user only, event and sequence', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const token = await selfToken(userId);
    const users = clientFor(UserService, 'grpc', srv.url);
    const r = await registerPasskey(srv.url, { userId, token, protocol: 'grpc' });
    const renamed = await users.renamePasskey({ userId, passkeyId: r.passkeyId, name: 'Work laptop' }, bearer(token));
    expect(renamed.details?.sequence).toBe(r.sequence + 1n);
    const listed = await users.listPasskeys({ userId }, bearer(token));
    expect(listed.result[0]?.name).toBe('Work laptop');
    expect(await codeOf(users.renamePasskey({ userId, passkeyId: r.passkeyId, name: '' }, bearer(token)))).toBe(Code.InvalidArgument);
    expect(await codeOf(users.renamePasskey({ userId, passkeyId: r.passkeyId, name: 'x'.repeat(201) }, bearer(token)))).toBe(Code.InvalidArgument);
    expect(await codeOf(users.renamePasskey({ userId, passkeyId: 'nope', name: 'x' }, bearer(token)))).toBe(Code.NotFound);
    const pending = await users.registerPasskey({ userId }, bearer(token));
    expect(await codeOf(users.renamePasskey({ userId, passkeyId: pending.passkeyId, name: 'x' }, bearer(token)))).toBe(Code.NotFound);
    const other = await createUser(srv.url, srv.admin);
    expect(await codeOf(users.renamePasskey({ userId: other, passkeyId: r.passkeyId, name: 'x' }, bearer(srv.admin)))).toBe(Code.NotFound);
    // Another user's token cannot touch this user's passkeys at all.
    expect(await codeOf(users.renamePasskey({ userId, passkeyId: r.passkeyId, name: 'x' }, bearer(await selfToken(other))))).toBe(Code.PermissionDenied);
    expect((await eventsOf(userId)).filter((e) => e === 'user.passkey.renamed')).toHaveLength(1);
  });

  it('list: READY only, pages with offset/limit, total, newest first by default, reads its own writes', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'grpc-web', srv.url);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await registerPasskey(srv.url, { userId, token: srv.admin, name: `key-${i}`, protocol: 'grpc-web' });
      ids.push(r.passkeyId);
      // Read-your-writes: the passkey is listed by the very next call.
      const now = await users.listPasskeys({ userId, query: { limit: 1 } }, bearer(srv.admin));
      expect(now.result[0]?.id).toBe(r.passkeyId);
      expect(now.details?.totalResult).toBe(BigInt(i + 1));
    }
    await users.registerPasskey({ userId }, bearer(srv.admin)); // pending, not listed
    const p1 = await users.listPasskeys({ userId, query: { limit: 2, asc: true } }, bearer(srv.admin));
    const p3 = await users.listPasskeys({ userId, query: { limit: 2, offset: 4n, asc: true } }, bearer(srv.admin));
    expect(p1.details?.totalResult).toBe(5n);
    expect(p1.result.map((p) => p.id)).toEqual(ids.slice(0, 2));
    expect(p3.result.map((p) => p.id)).toEqual(ids.slice(4));
    const desc = await users.listPasskeys({ userId, query: { limit: 2 } }, bearer(srv.admin));
    expect(desc.result.map((p) => p.name)).toEqual(['key-4', 'key-3']);
    expect(await codeOf(users.listPasskeys({ userId: 'no-such-user' }, bearer(srv.admin)))).toBe(Code.NotFound);
  });

  it('lockout protection holds when a user removes both of their passkeys at the same moment: one stays', async () => {
    const users = clientFor(UserService, 'connect', srv.url);
    for (let round = 0; round < 4; round++) {
      const userId = await createUser(srv.url, srv.admin);
      const token = await selfToken(userId);
      const keys = [await registerPasskey(srv.url, { userId, token }), await registerPasskey(srv.url, { userId, token })];
      const codes = await Promise.all(keys.map((k) => codeOf(users.removePasskey({ userId, passkeyId: k.passkeyId }, bearer(token)))));
      expect(codes.sort(), `round ${round}`).toEqual(['ok', Code.FailedPrecondition].sort());
      expect((await users.listPasskeys({ userId }, bearer(token))).result, `round ${round}`).toHaveLength(1);
    }
  });

  it('lockout protection: the last passkey stays unless an admin forces it; unknown or removed → NOT_FOUND', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const token = await selfToken(userId);
    const users = clientFor(UserService, 'connect', srv.url);
    const a = await registerPasskey(srv.url, { userId, token });
    const b = await registerPasskey(srv.url, { userId, token });
    const removed = await users.removePasskey({ userId, passkeyId: a.passkeyId }, bearer(token));
    expect(removed.details?.sequence).toBe(b.sequence + 1n);
    expect(await codeOf(users.removePasskey({ userId, passkeyId: a.passkeyId }, bearer(token)))).toBe(Code.NotFound);
    let err: ConnectError | undefined;
    try {
      await users.removePasskey({ userId, passkeyId: b.passkeyId }, bearer(token));
    } catch (e) {
      err = ConnectError.from(e);
    }
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.rawMessage).toMatch(/only passkey; removing it would lock them out/);
    expect(await codeOf(users.removePasskey({ userId, passkeyId: b.passkeyId, force: true }, bearer(token)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.removePasskey({ userId, passkeyId: 'unknown' }, bearer(token)))).toBe(Code.NotFound);
    const pending = await users.registerPasskey({ userId }, bearer(token));
    expect(await codeOf(users.removePasskey({ userId, passkeyId: pending.passkeyId, force: true }, bearer(srv.admin)))).toBe(Code.NotFound);
    const other = await createUser(srv.url, srv.admin);
    expect(await codeOf(users.removePasskey({ userId: other, passkeyId: b.passkeyId, force: true }, bearer(srv.admin)))).toBe(Code.NotFound);
    expect((await users.listPasskeys({ userId }, bearer(token))).result.map((p) => p.id)).toEqual([b.passkeyId]);

    const orgAdmin = await srv.adminToken('org_admin');
    const forced = await users.removePasskey({ userId, passkeyId: b.passkeyId, force: true }, bearer(orgAdmin));
    expect(forced.details?.sequence).toBeGreaterThan(removed.details!.sequence);
    expect((await users.listPasskeys({ userId }, bearer(token))).details?.totalResult).toBe(0n);
    const removedEvents = await srv.app.store.db
      .selectFrom('events')
      .select(['payload', 'creator'])
      .where('aggregate_id', '=', userId)
      .where('event_type', '=', 'user.passkey.removed')
      .orderBy('sequence')
      .execute();
    expect(removedEvents.map((e) => (e.payload as { forced: boolean }).forced)).toEqual([false, true]);
    expect(removedEvents[1]?.creator).toBe('admin:org_admin');
  });

  it('send_link without a configured webhook is FAILED_PRECONDITION, clearly, with nothing stored', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'connect', srv.url);
    const before = await eventsOf(userId);
    for (const medium of [{ case: 'sendLink' as const, value: {} }, { case: undefined }]) {
      let err: ConnectError | undefined;
      try {
        await users.createPasskeyRegistrationLink({ userId, medium }, bearer(srv.admin));
      } catch (e) {
        err = ConnectError.from(e);
      }
      expect(err?.code).toBe(Code.FailedPrecondition);
      expect(err?.rawMessage).toMatch(/no link delivery configured: set PASSKEYD_LINK_WEBHOOK_URL/);
    }
    expect(await eventsOf(userId)).toEqual(before);
    expect(await srv.app.store.db.selectFrom('registration_codes').select('id').where('user_id', '=', userId).execute()).toEqual([]);
  });

  it("two concurrent removals of a user's last two passkeys leave one", async () => {
    const userId = await createUser(srv.url, srv.admin);
    const token = await selfToken(userId);
    const a = await registerPasskey(srv.url, { userId, token });
    const b = await registerPasskey(srv.url, { userId, token });
    const users = clientFor(UserService, 'connect', srv.url);
    const results = await Promise.all([a, b].map((p) => codeOf(users.removePasskey({ userId, passkeyId: p.passkeyId }, bearer(token)))));
    expect(results.sort()).toEqual([Code.FailedPrecondition, 'ok'].sort());
    expect((await users.listPasskeys({ userId }, bearer(token))).details?.totalResult).toBe(1n);
  });
});
