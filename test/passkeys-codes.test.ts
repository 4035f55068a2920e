import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JsonObject } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';
import { codeOf, outcomeOf } from './helpers/codes.js';

interface Delivery {
  body: Record<string, unknown>;
  contentType: string | undefined;
}

let webhook: Server;
let webhookStatus = 200;
let hookUrl: string;
const deliveries: Delivery[] = [];

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (s += c));
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

beforeAll(async () => {
  // A real HTTP endpoint standing in for the mail/chat service that delivers links.
  webhook = createServer(async (req, res) => {
    const body = await readBody(req);
    if (req.method === 'POST' && req.url === '/hook') deliveries.push({ body: JSON.parse(body), contentType: req.headers['content-type'] });
    res.statusCode = webhookStatus;
    res.end();
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/hook`;
});
afterAll(() => new Promise<void>((r) => webhook?.close(() => r())));
const srv = useTestServer(() => ({ config: { 'link-webhook-url': hookUrl, issuer: 'https://id.example.com' } }));

async function events(userId: string): Promise<{ type: string; payload: Record<string, unknown>; creator: string }[]> {
  const rows = await srv.app.store.db.selectFrom('events').select(['event_type', 'payload', 'creator']).where('aggregate_id', '=', userId).orderBy('sequence').execute();
  return rows.map((r) => ({ type: r.event_type, payload: r.payload, creator: r.creator }));
}

async function passkeyRows(userId: string) {
  return srv.app.store.db.selectFrom('passkeys').select(['id', 'state', 'registration_code_id']).where('user_id', '=', userId).execute();
}

async function newCode(userId: string): Promise<{ id: string; code: string }> {
  const users = clientFor(UserService, 'connect', srv.url);
  const r = await users.createPasskeyRegistrationLink({ userId, medium: { case: 'returnCode', value: {} } }, bearer(srv.admin));
  return { id: r.code!.id, code: r.code!.code };
}

describe(`registration codes and links (${BACKEND})`, () => {
  it('return_code: a high-entropy code, stored only as its hash, with an event that does not contain it', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'grpc', srv.url);
    const r = await users.createPasskeyRegistrationLink({ userId, medium: { case: 'returnCode', value: {} } }, bearer(srv.admin));
    expect(r.code?.code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.details?.sequence).toBe(2n);
    const row = await srv.app.store.db.selectFrom('registration_codes').selectAll().where('id', '=', r.code!.id).executeTakeFirstOrThrow();
    expect(Buffer.from(row.code_hash).equals(createHash('sha256').update(r.code!.code).digest())).toBe(true);
    expect(row.user_id).toBe(userId);
    expect(row.used_at).toBeNull();
    expect(new Date(row.expires_at).getTime() - new Date(row.created_at).getTime()).toBe(srv.config.registrationCodeTtlSeconds * 1000);
    const evs = await events(userId);
    expect(evs.map((e) => e.type)).toEqual(['user.human.added', 'user.passkey.code.added']);
    expect(JSON.stringify(evs)).not.toContain(r.code!.code);
    // Only org admins (and instance admins) create codes.
    const { org_id: orgId } = await srv.app.store.db.selectFrom('users').select('org_id').where('id', '=', userId).executeTakeFirstOrThrow();
    const self = (await srv.app.tokens.issue({ subject: userId, orgId, ttlSeconds: 60 })).token;
    expect(await codeOf(users.createPasskeyRegistrationLink({ userId, medium: { case: 'returnCode', value: {} } }, bearer(self)))).toBe(Code.PermissionDenied);
    expect(await codeOf(users.createPasskeyRegistrationLink({ userId: 'no-such-user', medium: { case: 'returnCode', value: {} } }, bearer(srv.admin)))).toBe(Code.NotFound);
  });

  it.each(PROTOCOLS)('%s: admin creates a code → anonymous register + verify with it → the code is used up', async (protocol) => {
    const userId = await createUser(srv.url, srv.admin);
    const code = await newCode(userId);
    const r = await registerPasskey(srv.url, { userId, code, protocol });
    const rows = await passkeyRows(userId);
    expect(rows).toEqual([{ id: r.passkeyId, state: 'ready', registration_code_id: code.id }]);
    const used = await srv.app.store.db.selectFrom('registration_codes').select('used_at').where('id', '=', code.id).executeTakeFirstOrThrow();
    expect(used.used_at).not.toBeNull();
    const evs = await events(userId);
    expect(evs.map((e) => e.type)).toEqual(['user.human.added', 'user.passkey.code.added', 'user.passkey.added', 'user.passkey.verified']);
    expect(evs[2]?.creator).toBe(`registration_code:${code.id}`);
    expect(evs[3]?.payload.registration_code_id).toBe(code.id);
    expect(r.sequence).toBe(4n);
    // After a success the code no longer opens anything, and the refusal is recorded.
    const users = clientFor(UserService, protocol, srv.url);
    const again = await outcomeOf(users.registerPasskey({ userId, code }));
    expect(again.code).toBe(Code.InvalidArgument);
    expect(again.message).toMatch(/registration code is invalid or has expired/);
    const last = (await events(userId)).at(-1);
    expect(last).toMatchObject({ type: 'user.passkey.code.failed', payload: { code_id: code.id, reason: 'used' } });
    // Anonymous callers cannot list, rename or remove.
    expect(await codeOf(users.listPasskeys({ userId }))).toBe(Code.Unauthenticated);
  });

  it('two registrations begun with one code: the first to finish uses it; a token holder completes the other without it, a token-less caller cannot', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const code = await newCode(userId);
    const users = clientFor(UserService, 'grpc', srv.url);
    const begin = async () => {
      const begun = await users.registerPasskey({ userId, code });
      const credential = await createSoftAuthenticator().register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
      return { passkeyId: begun.passkeyId, publicKeyCredential: credential as unknown as JsonObject };
    };
    const [first, second] = [await begin(), await begin()];
    expect(await codeOf(users.verifyPasskeyRegistration({ userId, ...first, passkeyName: 'first' }))).toBe('ok');
    // Token-less: the code is used up now, so this registration has no standing.
    expect(await codeOf(users.verifyPasskeyRegistration({ userId, ...second, passkeyName: 'second' }))).toBe(Code.InvalidArgument);
    // With a token it completes; its event says no code was used for it.
    expect(await codeOf(users.verifyPasskeyRegistration({ userId, ...second, passkeyName: 'second' }, bearer(srv.admin)))).toBe('ok');
    const verified = (await events(userId)).filter((e) => e.type === 'user.passkey.verified');
    expect(verified.map((e) => [e.payload.passkey_id, e.payload.registration_code_id])).toEqual([
      [first.passkeyId, code.id],
      [second.passkeyId, null],
    ]);
    expect((await passkeyRows(userId)).map((p) => p.state)).toEqual(['ready', 'ready']);
  });

  it('a failed verification does not burn the code: the same registration and new ones still work', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const code = await newCode(userId);
    const users = clientFor(UserService, 'connect', srv.url);
    const begun = await users.registerPasskey({ userId, code });
    const options = creationOptionsOf(begun.publicKeyCredentialCreationOptions);
    const authenticator = createSoftAuthenticator();
    const bad = await authenticator.register(options, { origin: 'https://evil.example' });
    const refused = await outcomeOf(users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: bad as unknown as JsonObject, passkeyName: 'x' }));
    expect(refused.code).toBe(Code.InvalidArgument);
    expect(refused.message).toMatch(/origin/);
    const stillUsable = await srv.app.store.db.selectFrom('registration_codes').select('used_at').where('id', '=', code.id).executeTakeFirstOrThrow();
    expect(stillUsable.used_at).toBeNull();
    // A second registration can be begun with the same code...
    expect(await codeOf(users.registerPasskey({ userId, code }))).toBe('ok');
    // ...and the first completes with a correct response.
    const good = await createSoftAuthenticator().register(options, { origin: DEFAULT_ORIGIN });
    const ok = await users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: good as unknown as JsonObject, passkeyName: 'phone' });
    expect(ok.details?.sequence).toBeGreaterThan(0n);
    // The other pending registration begun with the (now used) code has lost its standing without a token.
    const [pending] = (await passkeyRows(userId)).filter((p) => p.state === 'not_ready');
    const row = await srv.app.store.db.selectFrom('challenges').select('challenge').where('passkey_id', '=', pending!.id).executeTakeFirstOrThrow();
    const late = await createSoftAuthenticator().register({ ...options, challenge: row.challenge }, { origin: DEFAULT_ORIGIN });
    // The code it was begun with is used now: a code failure (INVALID_ARGUMENT), recorded.
    expect(await codeOf(users.verifyPasskeyRegistration({ userId, passkeyId: pending!.id, publicKeyCredential: late as unknown as JsonObject, passkeyName: 'x' }))).toBe(
      Code.InvalidArgument,
    );
    const failed = await srv.app.store.db.selectFrom('events').select('payload').where('aggregate_id', '=', userId).where('event_type', '=', 'user.passkey.code.failed').execute();
    expect(failed.map((e) => e.payload)).toContainEqual({ code_id: code.id, reason: 'used' });
  });

  it("refused codes: wrong code, another user's code, an expired code → INVALID_ARGUMENT, recorded, nothing stored", async () => {
    const userId = await createUser(srv.url, srv.admin);
    const otherId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'grpc-web', srv.url);
    const mine = await newCode(userId);
    const theirs = await newCode(otherId);
    const before = (await events(userId)).length;

    expect(await codeOf(users.registerPasskey({ userId, code: { id: mine.id, code: theirs.code } }))).toBe(Code.InvalidArgument);
    expect(await codeOf(users.registerPasskey({ userId, code: theirs }))).toBe(Code.InvalidArgument);
    expect(await codeOf(users.registerPasskey({ userId, code: { id: 'no-such-code', code: 'x' } }))).toBe(Code.InvalidArgument);
    await srv.app.store.db
      .updateTable('registration_codes')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', mine.id)
      .execute();
    expect(await codeOf(users.registerPasskey({ userId, code: mine }))).toBe(Code.InvalidArgument);
    // A token does not make a bad code acceptable either.
    expect(await codeOf(users.registerPasskey({ userId, code: theirs }, bearer(srv.admin)))).toBe(Code.InvalidArgument);

    const failed = (await events(userId)).slice(before);
    expect(failed.map((e) => [e.type, e.payload.reason])).toEqual([
      ['user.passkey.code.failed', 'mismatch'],
      ['user.passkey.code.failed', 'unknown'],
      ['user.passkey.code.failed', 'unknown'],
      ['user.passkey.code.failed', 'expired'],
      ['user.passkey.code.failed', 'unknown'],
    ]);
    expect(await passkeyRows(userId)).toEqual([]);
    expect(await srv.app.store.db.selectFrom('challenges').select('id').where('user_id', '=', userId).execute()).toEqual([]);
    // The other user's code is untouched and still works for them.
    expect(await codeOf(registerPasskey(srv.url, { userId: otherId, code: theirs }))).toBe('ok');
    // A code for an unknown user gives the same answer as a wrong code (no user enumeration).
    expect(await codeOf(users.registerPasskey({ userId: 'no-such-user', code: theirs }))).toBe(Code.InvalidArgument);
  });

  it('token-less verification needs a registration begun with a code; an expired one is a recorded code failure', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'connect', srv.url);
    expect(await codeOf(users.registerPasskey({ userId }))).toBe(Code.Unauthenticated);
    // Begun with a token: no anonymous completion.
    const begun = await users.registerPasskey({ userId }, bearer(srv.admin));
    const response = await createSoftAuthenticator().register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    const req = { userId, passkeyId: begun.passkeyId, publicKeyCredential: response as unknown as JsonObject, passkeyName: 'x' };
    expect(await codeOf(users.verifyPasskeyRegistration(req))).toBe(Code.Unauthenticated);
    expect(await codeOf(users.verifyPasskeyRegistration({ ...req, passkeyId: 'unknown' }))).toBe(Code.Unauthenticated);
    // Begun with a code that then expires: no anonymous completion either; with a token it completes.
    const code = await newCode(userId);
    const withCode = await users.registerPasskey({ userId, code });
    const r2 = await createSoftAuthenticator().register(creationOptionsOf(withCode.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
    await srv.app.store.db
      .updateTable('registration_codes')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', code.id)
      .execute();
    const req2 = { userId, passkeyId: withCode.passkeyId, publicKeyCredential: r2 as unknown as JsonObject, passkeyName: 'x' };
    expect(await codeOf(users.verifyPasskeyRegistration(req2))).toBe(Code.InvalidArgument);
    const failed = await srv.app.store.db.selectFrom('events').select('payload').where('aggregate_id', '=', userId).where('event_type', '=', 'user.passkey.code.failed').execute();
    expect(failed.map((e) => e.payload)).toContainEqual({ code_id: code.id, reason: 'expired' });
    expect(await codeOf(users.verifyPasskeyRegistration(req2, bearer(srv.admin)))).toBe('ok');
    expect(await codeOf(users.verifyPasskeyRegistration(req, bearer(srv.admin)))).toBe('ok');
  });

  it('send_link: renders the template, POSTs the link to the webhook, and the link registers a passkey', async () => {
    const userId = await createUser(srv.url, srv.admin, 'linked-user');
    const users = clientFor(UserService, 'grpc', srv.url);
    deliveries.length = 0;
    const r = await users.createPasskeyRegistrationLink(
      { userId, medium: { case: 'sendLink', value: { urlTemplate: 'https://app.example.com/passkey?u={{.UserID}}&o={{.OrgID}}&id={{.CodeID}}&c={{ .Code }}' } } },
      bearer(srv.admin),
    );
    expect(r.code).toBeUndefined();
    expect(r.details?.sequence).toBe(3n); // code.added + code.sent
    expect(deliveries).toHaveLength(1);
    const d = deliveries[0]!;
    expect(d.contentType).toMatch(/application\/json/);
    const user = await srv.app.store.db.selectFrom('users').selectAll().where('id', '=', userId).executeTakeFirstOrThrow();
    expect(d.body).toMatchObject({ type: 'passkey_registration_link', user_id: userId, org_id: user.org_id, username: 'linked-user', email: 'linked-user@example.com' });
    const url = new URL(d.body.url as string);
    expect(url.origin + url.pathname).toBe('https://app.example.com/passkey');
    expect(url.searchParams.get('u')).toBe(userId);
    expect(url.searchParams.get('o')).toBe(user.org_id);
    expect(url.searchParams.get('id')).toBe(d.body.code_id);
    const code = { id: url.searchParams.get('id')!, code: url.searchParams.get('c')! };
    expect(new Date(d.body.expires_at as string).getTime()).toBeGreaterThan(Date.now());
    expect((await events(userId)).slice(-2).map((e) => e.type)).toEqual(['user.passkey.code.added', 'user.passkey.code.sent']);
    expect(await codeOf(registerPasskey(srv.url, { userId, code }))).toBe('ok');

    // The default template points at the issuer's hosted registration page.
    await users.createPasskeyRegistrationLink({ userId, medium: { case: 'sendLink', value: {} } }, bearer(srv.admin));
    const def = new URL(deliveries[1]!.body.url as string);
    expect(def.origin + def.pathname).toBe('https://id.example.com/register');
    expect(def.searchParams.get('user')).toBe(userId);
    expect(def.searchParams.get('code_id')).toBe(deliveries[1]!.body.code_id);
  });

  it('send_link: a bad template is INVALID_ARGUMENT; a failing webhook is UNAVAILABLE and leaves no usable code', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'connect', srv.url);
    const before = await events(userId);
    const codesBefore = await srv.app.store.db.selectFrom('registration_codes').select('id').where('user_id', '=', userId).execute();
    expect(
      await codeOf(users.createPasskeyRegistrationLink({ userId, medium: { case: 'sendLink', value: { urlTemplate: 'https://x.example/{{.Password}}' } } }, bearer(srv.admin))),
    ).toBe(Code.InvalidArgument);
    expect(await codeOf(users.createPasskeyRegistrationLink({ userId, medium: { case: 'sendLink', value: { urlTemplate: 'not a url {{.Code}}' } } }, bearer(srv.admin)))).toBe(
      Code.InvalidArgument,
    );
    deliveries.length = 0;
    webhookStatus = 500;
    try {
      const r = await outcomeOf(users.createPasskeyRegistrationLink({ userId, medium: { case: 'sendLink', value: {} } }, bearer(srv.admin)));
      expect(r.code).toBe(Code.Unavailable);
      expect(r.message).toMatch(/HTTP 500/);
    } finally {
      webhookStatus = 200;
    }
    expect(deliveries).toHaveLength(1);
    // The delivered-but-refused code was never stored: the link in it does not work.
    const leaked = new URL(deliveries[0]!.body.url as string);
    expect(await codeOf(users.registerPasskey({ userId, code: { id: leaked.searchParams.get('code_id')!, code: leaked.searchParams.get('code')! } }))).toBe(Code.InvalidArgument);
    expect(await srv.app.store.db.selectFrom('registration_codes').select('id').where('user_id', '=', userId).execute()).toEqual(codesBefore);
    expect((await events(userId)).map((e) => e.type)).toEqual([...before.map((e) => e.type), 'user.passkey.code.failed']);
  });
});
