/**
 * Fields ZITADEL's v2 messages define and passkeyd does not offer are refused by name on every
 * protocol ("passkey-only"), and the OpenAPI document marks them; a field unknown to both stays a
 * plain unknown-field error.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer();

async function rest(method: string, path: string, body: unknown, token?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(srv.url + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const human = (name: string) => ({ username: name, profile: { givenName: 'Ada', familyName: 'Lovelace' }, email: { email: `${name}@example.com` } });

describe(`ZITADEL's known fields that passkeyd does not offer (${BACKEND})`, () => {
  it('REST: each is INVALID_ARGUMENT naming the field and saying passkeyd is passkey-only; nothing is created', async () => {
    const sessionCases: [unknown, RegExp][] = [
      [{ checks: { password: { password: 'hunter2' } } }, /^checks\.password: ZITADEL's password checks are not offered: passkeyd is passkey-only$/],
      [{ checks: { totp: { code: '123456' } } }, /checks\.totp: .*TOTP.*passkey-only/],
      [{ checks: { otpSms: { code: '1' } } }, /checks\.otp_sms: .*SMS.*passkey-only/],
      [{ checks: { otp_email: { code: '1' } } }, /checks\.otp_email: .*email.*passkey-only/],
      [{ checks: { idpIntent: { idpIntentId: 'x', idpIntentToken: 'y' } } }, /checks\.idp_intent: .*identity-provider.*passkey-only/],
      [{ challenges: { otpSms: { returnCode: true } } }, /challenges\.otp_sms: .*passkey-only/],
    ];
    const before = (
      await srv.app.store.db
        .selectFrom('events')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    for (const [body, message] of sessionCases) {
      const r = await rest('POST', '/v2/sessions', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.code).toBe(Code.InvalidArgument);
      expect(r.json.message).toMatch(message);
    }
    const userCases: [Record<string, unknown>, RegExp][] = [
      [{ phone: { phone: '+41 79 000 00 00', isVerified: true } }, /^phone: ZITADEL's phone numbers are not offered: passkeyd is passkey-only$/],
      [{ password: { password: 'hunter2', changeRequired: false } }, /^password: .*passwords.*passkey-only/],
      [{ hashedPassword: { hash: '$2a$...' } }, /^hashed_password: .*passkey-only/],
      [{ idpLinks: [{ idpId: 'x', userId: 'y', userName: 'z' }] }, /^idp_links: .*identity-provider links.*passkey-only/],
      [{ totpSecret: 'JBSWY3DPEHPK3PXP' }, /^totp_secret: .*TOTP.*passkey-only/],
      [{ metadata: [{ key: 'k', value: 'dg==' }] }, /^metadata: .*user metadata.*passkey-only/],
    ];
    for (const [extra, message] of userCases) {
      const r = await rest('POST', '/v2/users/human', { ...human(`zf-${Date.now()}`), ...extra }, srv.admin);
      expect(r.status, Object.keys(extra)[0]).toBe(400);
      expect(r.json.message).toMatch(message);
    }
    for (const email of [{ sendCode: { urlTemplate: 'https://x/{{.Code}}' } }, { returnCode: {} }]) {
      const body = human(`zf-mail-${Date.now()}`);
      const r = await rest('POST', '/v2/users/human', { ...body, email: { ...body.email, ...email } }, srv.admin);
      expect(r.status).toBe(400);
      expect(r.json.message).toMatch(/^email\.(send_code|return_code): ZITADEL's email verification codes are not offered: passkeyd is passkey-only$/);
    }
    const after = (
      await srv.app.store.db
        .selectFrom('events')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n;
    expect(after).toBe(before);
  });

  it('a field unknown to ZITADEL too stays a plain unknown-field error', async () => {
    const r = await rest('POST', '/v2/sessions', { checks: { passwrd: { password: 'x' } } });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/passwrd/);
    expect(r.json.message).not.toMatch(/passkey-only/);
    const u = await rest('POST', '/v2/users/human', { ...human(`zf-u-${Date.now()}`), phoneNumber: '+1' }, srv.admin);
    expect(u.status).toBe(400);
    expect(u.json.message).not.toMatch(/passkey-only/);
  });

  it.each(PROTOCOLS)('over %s the same refusal, from the typed client', async (protocol) => {
    const err = await clientFor(SessionService, protocol, srv.url)
      .createSession({ checks: { password: { password: 'hunter2' } } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/^checks\.password: .*passkey-only/);
    const user = await clientFor(UserService, protocol, srv.url)
      .addHumanUser({ ...human(`zf-${protocol}-${Date.now()}`), totpSecret: 'JBSWY3DPEHPK3PXP' }, bearer(srv.admin))
      .catch((e: unknown) => ConnectError.from(e));
    expect((user as ConnectError).rawMessage).toMatch(/^totp_secret: .*passkey-only/);
  });

  it('the OpenAPI document marks them', async () => {
    const doc = (await (await fetch(`${srv.url}/openapi.json`)).json()) as any;
    const checks = doc.components.schemas['passkeyd.session.v2.Checks'].properties;
    expect(checks.password['x-passkeyd-not-offered']).toBe(true);
    expect(checks.password.description).toMatch(/not offered, passkeyd is passkey-only/);
    expect(checks.webAuthN['x-passkeyd-not-offered']).toBeUndefined();
    const add = doc.components.schemas['passkeyd.user.v2.AddHumanUserRequest'].properties;
    for (const f of ['phone', 'password', 'hashedPassword', 'idpLinks', 'totpSecret', 'metadata']) expect(add[f]['x-passkeyd-not-offered'], f).toBe(true);
    expect(doc.paths['/v2/sessions'].post.responses['201']).toBeDefined();
    expect(doc.paths['/v2/sessions'].post.responses['200']).toBeUndefined();
  });
});
