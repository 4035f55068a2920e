/**
 * passkeyd's REST API on a real server: the HTTP status and google.rpc.Status JSON body of every error
 * code the service uses, routing (404/405), query parameters on GET, snake_case input, Struct and
 * Timestamp JSON, the body limit, and proof that REST runs through the same interceptor chain.
 */
import http2 from 'node:http2';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { login, requestOptionsOf } from './helpers/login.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, startServerBehindProxy, TEST_DATABASE_URL, useTestServer } from './helpers/server.js';

const srv = useTestServer({ config: { 'availability-rate-limit': '2', 'availability-min-latency-ms': '0' } });

interface Reply {
  status: number;
  headers: Headers;
  json: any;
}

async function rest(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers };
  let body: string | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(srv.url + path, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

/** Asserts a google.rpc.Status error reply: status, numeric code, a message, details. */
function expectError(r: Reply, status: number, code: Code, message?: RegExp) {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toBe('application/json');
  expect(Object.keys(r.json).sort()).toEqual(['code', 'details', 'message']);
  expect(r.json.code).toBe(code);
  expect(r.json.details).toEqual([]);
  expect(typeof r.json.message).toBe('string');
  expect(r.json.message.length).toBeGreaterThan(0);
  if (message) expect(r.json.message).toMatch(message);
}

const human = (username: string) => ({ username, profile: { givenName: 'Rest', familyName: 'Test' }, email: { email: `${username}@example.com` } });

describe(`REST errors: HTTP status and google.rpc.Status body per code (${BACKEND})`, () => {
  it('400 INVALID_ARGUMENT: failed bounds, unparsable JSON, unknown fields, wrongly typed values', async () => {
    expectError(await rest('POST', '/v2/users/human', { body: { username: 'no-profile' }, token: srv.admin }), 400, Code.InvalidArgument, /profile/);
    expectError(
      await rest('POST', '/v2/users/human', { raw: '{"username": ', token: srv.admin, headers: { 'content-type': 'application/json' } }),
      400,
      Code.InvalidArgument,
      /not valid JSON/,
    );
    expectError(await rest('POST', '/v2/users/human', { body: { ...human('typo'), usernme: 'x' }, token: srv.admin }), 400, Code.InvalidArgument);
    expectError(await rest('POST', '/v2/users', { body: { query: { limit: 'ten' } }, token: srv.admin }), 400, Code.InvalidArgument);
    expectError(await rest('GET', `/v2/users/${'x'.repeat(201)}`, { token: srv.admin }), 400, Code.InvalidArgument, /user_id|userId/);
  });

  it('400 FAILED_PRECONDITION: a user removing their own last passkey; an admin removes it', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { passkeyId, authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const { done } = await login(srv.url, authenticator, { userId });
    expectError(await rest('DELETE', `/v2/users/${userId}/passkeys/${passkeyId}`, { token: done.accessToken }), 400, Code.FailedPrecondition, /only passkey/);
    expectError(await rest('DELETE', `/v2/users/${userId}/passkeys/${passkeyId}?force=maybe`, { token: srv.admin }), 400, Code.InvalidArgument, /force/);
    // ZITADEL's request has no force: an admin's plain DELETE goes through (?force=true is still accepted).
    const removed = await rest('DELETE', `/v2/users/${userId}/passkeys/${passkeyId}`, { token: srv.admin });
    expect(removed.status).toBe(200);
    expect(removed.json.details.sequence).toMatch(/^\d+$/);
  });

  it('401 UNAUTHENTICATED: no token, a malformed header, a bad token', async () => {
    expectError(await rest('GET', '/v2/users/anyone'), 401, Code.Unauthenticated);
    expectError(await rest('GET', '/v2/users/anyone', { headers: { authorization: 'Basic abc' } }), 401, Code.Unauthenticated, /Bearer/);
    expectError(await rest('GET', '/v2/users/anyone', { token: 'not.a.jwt' }), 401, Code.Unauthenticated);
  });

  it('403 PERMISSION_DENIED: an org admin outside their organization', async () => {
    const org = await rest('POST', '/v2/organizations', { body: { name: 'Elsewhere Inc' }, token: srv.admin });
    expect(org.status).toBe(200);
    const userId = await createUser(srv.url, srv.admin);
    const otherOrgAdmin = await srv.adminToken('org_admin', org.json.organizationId);
    expectError(await rest('GET', `/v2/users/${userId}`, { token: otherOrgAdmin }), 403, Code.PermissionDenied, /organization/);
  });

  it('404 NOT_FOUND and 409 ALREADY_EXISTS', async () => {
    expectError(await rest('GET', '/v2/users/nobody-here', { token: srv.admin }), 404, Code.NotFound, /not found/);
    expect((await rest('POST', '/v2/users/human', { body: human('twice'), token: srv.admin })).status).toBe(200);
    expectError(await rest('POST', '/v2/users/human', { body: human('twice'), token: srv.admin }), 409, Code.AlreadyExists);
  });

  it('429 RESOURCE_EXHAUSTED from the rate limit, with Retry-After passed through', async () => {
    const check = () => rest('POST', '/v2/passkeys/availability', { body: { loginName: 'someone' } });
    const first = await check();
    expect(first.status).toBe(200);
    expect(first.json).toEqual({});
    await check();
    const limited = await check();
    expectError(limited, 429, Code.ResourceExhausted, /too many requests/);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it.skipIf(!TEST_DATABASE_URL)('503 UNAVAILABLE while the database is down', async () => {
    const { url, proxy, adminToken, close } = await startServerBehindProxy();
    try {
      const token = await adminToken();
      const list = () => fetch(`${url}/v2/users`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
      expect((await list()).status).toBe(200);
      await proxy.cut();
      const down = await list();
      const json = await down.json();
      expect(down.status).toBe(503);
      expect(json).toEqual({ code: Code.Unavailable, message: expect.stringMatching(/database/), details: [] });
    } finally {
      await close();
    }
  });
});

describe(`REST routing and encoding (${BACKEND})`, () => {
  it('unknown /v2 paths are 404, another method on a known path 405 with Allow — both as JSON errors', async () => {
    expectError(await rest('GET', '/v2/nothing'), 404, Code.NotFound);
    expectError(await rest('GET', '/v2/users/u1/passkeys/p1/extra', { token: srv.admin }), 404, Code.NotFound);
    const wrong = await rest('PUT', '/v2/users/u1', { token: srv.admin, body: {} });
    expectError(wrong, 405, Code.Unimplemented);
    expect(wrong.headers.get('allow')).toBe('DELETE, GET');
    // Non-/v2 paths keep their own 404 (Connect's fallback).
    expect((await rest('GET', '/v1/users')).status).toBe(404);
  });

  it('snake_case and lowerCamelCase input are the same message; output is lowerCamelCase', async () => {
    const snake = await rest('POST', '/v2/users/human', {
      token: srv.admin,
      body: { user_id: 'snake-user', username: 'snake', profile: { given_name: 'Sna', family_name: 'Ke' }, email: { email: 'snake@example.com', is_verified: true } },
    });
    expect(snake.status).toBe(200);
    expect(snake.json.userId).toBe('snake-user');
    const got = await rest('GET', '/v2/users/snake-user', { token: srv.admin });
    expect(got.json.user).toMatchObject({
      userId: 'snake-user',
      username: 'snake',
      human: { profile: { givenName: 'Sna', familyName: 'Ke', displayName: 'Sna Ke' }, email: { email: 'snake@example.com', isVerified: true } },
    });
    expect(JSON.stringify(got.json)).not.toMatch(/_[a-z]+":/);
  });

  it('Timestamps as RFC 3339 and uint64 as strings; Struct out (creation options) and in (the credential)', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const begun = await rest('POST', `/v2/users/${userId}/passkeys`, { token: srv.admin, body: {} });
    expect(begun.status).toBe(200);
    const { details, passkeyId, publicKeyCredentialCreationOptions } = begun.json;
    expect(details.changeDate).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(details.sequence).toMatch(/^\d+$/);
    expect(Date.parse(details.changeDate)).toBeLessThanOrEqual(Date.now());
    // The Struct is plain JSON: {"publicKey": PublicKeyCredentialCreationOptionsJSON}.
    const options = creationOptionsOf(publicKeyCredentialCreationOptions);
    expect(options.rp.id).toBe('localhost');
    expect(typeof options.challenge).toBe('string');
    expect(options.pubKeyCredParams.length).toBeGreaterThan(0);
    const credential = await createSoftAuthenticator().register(options, { origin: DEFAULT_ORIGIN });
    const verified = await rest('POST', `/v2/users/${userId}/passkeys/${passkeyId}`, { token: srv.admin, body: { public_key_credential: credential, passkey_name: 'via REST' } });
    expect(verified.status).toBe(200);
    expect(BigInt(verified.json.details.sequence)).toBeGreaterThan(BigInt(details.sequence));
    const listed = await rest('POST', `/v2/users/${userId}/passkeys/_search`, { token: srv.admin, body: { query: { limit: 10 } } });
    expect(listed.json.result).toEqual([expect.objectContaining({ id: passkeyId, name: 'via REST', state: 'AUTH_FACTOR_STATE_READY', creationDate: expect.stringMatching(/Z$/) })]);
    expect(listed.json.details.totalResult).toBe('1');
  });

  it('GET takes the remaining fields from the query string (GetSession ?session_token=)', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const created = await rest('POST', '/v2/sessions', { body: { checks: { user: { user_id: userId } }, challenges: { web_auth_n: { domain: 'localhost' } } } });
    expect(created.status).toBe(201);
    const assertion = await authenticator.authenticate(requestOptionsOf(created.json.challenges.webAuthN.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
    const set = await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, {
      body: { session_token: created.json.sessionToken, checks: { web_auth_n: { credential_assertion_data: assertion } } },
    });
    expect(set.status).toBe(200);
    expect(set.json.accessToken).toMatch(/^ey/);
    expect(set.json.accessTokenExpirationDate).toMatch(/Z$/);
    const byQuery = await rest('GET', `/v2/sessions/${created.json.sessionId}?session_token=${encodeURIComponent(set.json.sessionToken)}`);
    expect(byQuery.status).toBe(200);
    expect(byQuery.json.session.factors.user.id).toBe(userId);
    const camel = await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(set.json.sessionToken)}`);
    expect(camel.json).toEqual(byQuery.json);
    expectError(await rest('GET', `/v2/sessions/${created.json.sessionId}?session_token=wrong`), 403, Code.PermissionDenied);
    expectError(await rest('GET', `/v2/sessions/${created.json.sessionId}?sesion_token=typo`), 400, Code.InvalidArgument, /sesion_token/);
    expectError(await rest('GET', `/v2/sessions/${created.json.sessionId}?session_id=other`), 400, Code.InvalidArgument, /already set/);
  });

  it('bodies over 1 MiB are refused with 413 before parsing', async () => {
    const huge = JSON.stringify({ username: 'x'.repeat(1024 * 1024) });
    const r = await rest('POST', '/v2/users/human', { raw: huge, token: srv.admin, headers: { 'content-type': 'application/json' } });
    expectError(r, 413, Code.ResourceExhausted, /exceeds 1048576 bytes/);
  });

  it('REST works over HTTP/2 cleartext too (curl --http2-prior-knowledge), limits included', async () => {
    const session = http2.connect(srv.url);
    try {
      const request = (method: string, path: string, body?: string) =>
        new Promise<{ status: number; json: any }>((resolve, reject) => {
          const stream = session.request({ ':method': method, ':path': path, authorization: `Bearer ${srv.admin}`, 'content-type': 'application/json' });
          let text = '';
          let status = 0;
          stream.on('response', (h) => (status = Number(h[':status'])));
          stream.on('data', (c) => (text += c));
          stream.on('end', () => resolve({ status, json: JSON.parse(text) }));
          stream.on('error', reject);
          stream.end(body);
        });
      const listed = await request('POST', '/v2/users', '{"query":{"limit":1}}');
      expect(listed.status).toBe(200);
      expect(listed.json.details.timestamp).toMatch(/Z$/);
      const missing = await request('GET', '/v2/users/nobody');
      expect(missing).toEqual({ status: 404, json: { code: Code.NotFound, message: expect.any(String), details: [] } });
      const huge = await request('POST', '/v2/users/human', JSON.stringify({ username: 'y'.repeat(1024 * 1024) }));
      expect(huge.status).toBe(413);
      expect(huge.json.code).toBe(Code.ResourceExhausted);
    } finally {
      session.close();
    }
  });

  it('REST calls run through the same interceptors: logged and counted with protocol "rest"', async () => {
    await rest('GET', '/v2/users/metrics-probe', { token: srv.admin });
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    expect(metrics).toMatch(/passkeyd_rpc_requests_total\{procedure="passkeyd\.user\.v2\.UserService\/GetUserByID",protocol="rest",code="NotFound"\} [1-9]/);
  });
});
