/**
 * The OAuth endpoints as plain HTTP: POST /oauth/v2/token (jwt-bearer, client_credentials) and
 * POST /oauth/v2/introspect (RFC 7662), their refusals (one body per error code, padded to one minimum
 * latency), form handling, rate limits per client address and per machine user, and discovery.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { createRemoteJWKSet, jwtVerify, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import {
  accessTokenOf,
  addKey,
  addPat,
  clientCredentials,
  createMachineUser,
  exchangeAssertion,
  generateTestKey,
  introspect,
  rest,
  restOk,
  signAssertion,
  type AssertionOptions,
} from './helpers/machine.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const BAD_GRANT = { error: 'invalid_grant', error_description: 'the assertion was not accepted' };
const BAD_CLIENT = { error: 'invalid_client', error_description: 'client authentication failed' };
/** The endpoints' minimum latency for a refused credential, less a little timer slack. */
const MIN_REFUSAL_MS = 240;

const basic = (username: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(username)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** A form POST; status, headers, body and the milliseconds it took. */
async function post(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const start = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: JSON.parse(text), ms: performance.now() - start };
}

describe(`the OAuth endpoints (${BACKEND})`, () => {
  const srv = useTestServer();
  let org: string;
  let svc: { id: string; username: string; secret: string };
  let keyFile: { keyId: string; key: string };
  const tokenUrl = () => `${srv.url}/oauth/v2/token`;
  const introspectUrl = () => `${srv.url}/oauth/v2/introspect`;
  const assertion = (o: Partial<AssertionOptions> = {}) =>
    signAssertion({ alg: 'RS256', key: keyFile.key, keyId: keyFile.keyId, userId: svc.id, audience: srv.config.issuer, ...o });

  beforeAll(async () => {
    org = await defaultOrgId(srv.app.store.db);
    const m = await createMachineUser(srv.url, srv.admin, org, 'oauth-svc');
    const { clientSecret } = await restOk(srv.url, 'POST', `/v2/users/${m.id}/secret`, {}, srv.admin);
    svc = { ...m, secret: clientSecret };
    const added = await addKey(srv.url, srv.admin, m.id);
    keyFile = added.keyFile!;
  });

  it('discovery names both endpoints, the grants, the client authentication methods and algorithms', async () => {
    const doc = await (await fetch(`${srv.url}/.well-known/openid-configuration`)).json();
    expect(doc).toMatchObject({
      token_endpoint: `${srv.config.issuer}/oauth/v2/token`,
      introspection_endpoint: `${srv.config.issuer}/oauth/v2/introspect`,
      grant_types_supported: [JWT_BEARER, 'client_credentials'],
      token_endpoint_auth_methods_supported: expect.arrayContaining(['client_secret_basic', 'private_key_jwt']),
      introspection_endpoint_auth_methods_supported: expect.arrayContaining(['client_secret_basic', 'private_key_jwt']),
      token_endpoint_auth_signing_alg_values_supported: ['RS256', 'ES256'],
    });
  });

  it('jwt-bearer: a key file assertion buys an ES256 token that verifies by JWKS, introspects active, and has no role', async () => {
    const r = await post(tokenUrl(), { grant_type: JWT_BEARER, assertion: await assertion() });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: srv.config.tokenTtlSeconds });
    expect(r.headers.get('cache-control')).toBe('no-store');
    const { payload, protectedHeader } = await jwtVerify(r.json.access_token, createRemoteJWKSet(new URL(`${srv.url}/.well-known/jwks.json`)), {
      issuer: srv.config.issuer,
      audience: srv.config.audience,
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ sub: svc.id, org, cid: `key:${keyFile.keyId}` });
    expect(payload.sid).toBeUndefined();

    const seen = await introspect(srv.url, r.json.access_token, { username: svc.username, secret: svc.secret });
    expect(seen.status).toBe(200);
    expect(seen.json).toEqual({
      active: true,
      sub: svc.id,
      iss: srv.config.issuer,
      aud: srv.config.audience,
      exp: payload.exp,
      iat: payload.iat,
      jti: payload.jti,
      token_type: 'Bearer',
      client_id: svc.username,
      org,
      username: svc.username,
    });
    expect((await rest(srv.url, 'POST', '/v2/users', {}, r.json.access_token)).status).toBe(403);
  });

  it('jwt-bearer: the token endpoint URL is an accepted audience; an ES256 key of its own works too', async () => {
    const ec = generateTestKey('ES256');
    const { keyId } = await addKey(srv.url, srv.admin, svc.id, ec.publicPem);
    const token = await accessTokenOf(exchangeAssertion(srv.url, await assertion({ alg: 'ES256', key: ec.privateKey, keyId, audience: `${srv.config.issuer}/oauth/v2/token` })));
    expect((await srv.app.tokens.verify(token)).subject).toBe(svc.id);
  });

  it('client_credentials: HTTP Basic and client_secret_post buy tokens; introspection by client assertion', async () => {
    const byBasic = await accessTokenOf(clientCredentials(srv.url, svc.username, svc.secret));
    const byPost = await post(tokenUrl(), { grant_type: 'client_credentials', client_id: svc.username, client_secret: svc.secret });
    expect(byPost.status, JSON.stringify(byPost.json)).toBe(200);
    const form = { client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion(), token: byBasic, token_type_hint: 'access_token' };
    const seen = await post(introspectUrl(), form);
    expect(seen.json).toMatchObject({ active: true, sub: svc.id, client_id: svc.username, token_type: 'Bearer' });
    const byAssertion = await post(tokenUrl(), { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion() });
    expect(byAssertion.status, JSON.stringify(byAssertion.json)).toBe(200);
  });

  it('introspection: a PAT and the bootstrap token are active; garbage, a revoked PAT and a removed key are {active:false}', async () => {
    const caller = { username: svc.username, secret: svc.secret };
    const pat = await addPat(srv.url, srv.admin, svc.id);
    const seen = await introspect(srv.url, pat.token, caller);
    expect(seen.json).toMatchObject({ active: true, sub: svc.id, jti: pat.tokenId, token_type: 'pat', org, username: svc.username, exp: expect.any(Number) });
    expect((await introspect(srv.url, srv.admin, caller)).json).toMatchObject({ active: true, token_type: 'Bearer' });
    expect((await introspect(srv.url, 'not-a-token', caller)).json).toEqual({ active: false });
    expect((await introspect(srv.url, `${pat.token.slice(0, -1)}x`, caller)).json).toEqual({ active: false });

    await restOk(srv.url, 'DELETE', `/v2/users/${svc.id}/pats/${pat.tokenId}`, undefined, srv.admin);
    await new Promise((r) => setTimeout(r, 600)); // the callers' lookup cache
    expect((await introspect(srv.url, pat.token, caller)).json).toEqual({ active: false });

    const temp = generateTestKey('ES256');
    const { keyId } = await addKey(srv.url, srv.admin, svc.id, temp.publicPem);
    const token = await accessTokenOf(exchangeAssertion(srv.url, await assertion({ alg: 'ES256', key: temp.privateKey, keyId })));
    expect((await introspect(srv.url, token, caller)).json.active).toBe(true);
    await restOk(srv.url, 'DELETE', `/v2/users/${svc.id}/keys/${keyId}`, undefined, srv.admin);
    await new Promise((r) => setTimeout(r, 600));
    expect((await introspect(srv.url, token, caller)).json).toEqual({ active: false });
  });

  it('introspection refuses an unauthenticated caller: 401 invalid_client with WWW-Authenticate, padded', async () => {
    const token = await accessTokenOf(clientCredentials(srv.url, svc.username, svc.secret));
    const attempts: Record<string, string>[] = [{}, { authorization: basic(svc.username, `${svc.secret}x`) }, { authorization: 'Basic !!!' }];
    for (const headers of attempts) {
      const r = await post(introspectUrl(), { token }, headers);
      expect({ status: r.status, json: r.json }).toEqual({ status: 401, json: BAD_CLIENT });
      expect(r.headers.get('www-authenticate')).toBe('Basic realm="passkeyd"');
      expect(r.ms).toBeGreaterThanOrEqual(MIN_REFUSAL_MS);
    }
    const stale = await post(introspectUrl(), { token, client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion({ audience: 'https://elsewhere' }) });
    expect({ status: stale.status, json: stale.json }).toEqual({ status: 401, json: BAD_CLIENT });
  });

  it('refused assertions (audience, expiry, lifetime, replay, alg none, HS256 with the public key, removed key, deactivated user) read the same and take ≥ 250 ms', async () => {
    const now = Math.floor(Date.now() / 1000);
    const key = (await import('node:crypto')).createPrivateKey(keyFile.key);
    const publicPem = (await import('node:crypto')).createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
    const claims = { iss: svc.id, sub: svc.id, aud: srv.config.issuer };
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const replayed = await assertion();
    expect((await exchangeAssertion(srv.url, replayed)).status).toBe(200);
    const gone = generateTestKey('RS256');
    const goneKey = await addKey(srv.url, srv.admin, svc.id, gone.publicPem);
    const goneAssertion = await assertion({ key: gone.privateKey, keyId: goneKey.keyId });
    await restOk(srv.url, 'DELETE', `/v2/users/${svc.id}/keys/${goneKey.keyId}`, undefined, srv.admin);

    const cases: Record<string, string> = {
      'wrong audience': await assertion({ audience: 'https://elsewhere.example' }),
      expired: await new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: keyFile.keyId })
        .setIssuedAt(now - 600)
        .setExpirationTime(now - 300)
        .setJti(randomUUID())
        .sign(key),
      'exp over an hour ahead': await assertion({ lifetimeSeconds: 7200 }),
      'replayed jti': replayed,
      'alg none': `${b64({ alg: 'none', kid: keyFile.keyId })}.${b64({ ...claims, iat: now, exp: now + 300, jti: randomUUID() })}.`,
      'HS256 with the public key as secret': await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: keyFile.keyId })
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .setJti(randomUUID())
        .sign(new TextEncoder().encode(publicPem)),
      'removed key': goneAssertion,
      'unknown key id': await assertion({ keyId: 'no-such-key' }),
      'not a JWT': 'garbage',
    };
    for (const [name, jwt] of Object.entries(cases)) {
      const r = await post(tokenUrl(), { grant_type: JWT_BEARER, assertion: jwt });
      expect({ name, status: r.status, json: r.json }).toEqual({ name, status: 400, json: BAD_GRANT });
      expect(r.headers.get('cache-control'), name).toBe('no-store');
      expect(r.ms, name).toBeGreaterThanOrEqual(MIN_REFUSAL_MS);
    }

    const other = await createMachineUser(srv.url, srv.admin, org, 'oauth-deactivated');
    const otherKey = (await addKey(srv.url, srv.admin, other.id)).keyFile!;
    await restOk(srv.url, 'POST', `/v2/users/${other.id}/deactivate`, {}, srv.admin);
    const r = await post(tokenUrl(), { grant_type: JWT_BEARER, assertion: await assertion({ key: otherKey.key, keyId: otherKey.keyId, userId: other.id }) });
    expect({ status: r.status, json: r.json }).toEqual({ status: 400, json: BAD_GRANT });
  });

  it('a wrong secret and an unknown client get the same 401 body, in about the same time', async () => {
    const wrong = await post(tokenUrl(), { grant_type: 'client_credentials' }, { authorization: basic(svc.username, `${svc.secret}x`) });
    const unknown = await post(tokenUrl(), { grant_type: 'client_credentials' }, { authorization: basic(`nobody-${randomUUID()}`, svc.secret) });
    const none = await post(tokenUrl(), { grant_type: 'client_credentials' });
    for (const r of [wrong, unknown, none]) {
      expect({ status: r.status, json: r.json }).toEqual({ status: 401, json: BAD_CLIENT });
      expect(r.headers.get('www-authenticate')).toBe('Basic realm="passkeyd"');
      expect(r.ms).toBeGreaterThanOrEqual(MIN_REFUSAL_MS);
    }
    // One pair of timings says little on a busy machine (a scheduling hiccup is tens of ms): alternate
    // a few of each and compare the medians.
    const timings = { wrong: [wrong.ms], unknown: [unknown.ms] };
    for (let i = 0; i < 4; i++) {
      timings.wrong.push((await post(tokenUrl(), { grant_type: 'client_credentials' }, { authorization: basic(svc.username, `${svc.secret}x`) })).ms);
      timings.unknown.push((await post(tokenUrl(), { grant_type: 'client_credentials' }, { authorization: basic(`nobody-${randomUUID()}`, svc.secret) })).ms);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    expect(Math.abs(median(timings.wrong) - median(timings.unknown))).toBeLessThan(100);
  });

  it('form handling: grant type, content type, repeated parameters, two auth methods, 64 KiB, POST only, no CORS', async () => {
    const refusal = async (form: Record<string, string> | string, headers: Record<string, string> = {}) => {
      const body = typeof form === 'string' ? form : new URLSearchParams(form).toString();
      const res = await fetch(tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
      return { status: res.status, error: (await res.json()).error };
    };
    expect(await refusal({ grant_type: 'password' })).toEqual({ status: 400, error: 'unsupported_grant_type' });
    expect(await refusal({})).toEqual({ status: 400, error: 'invalid_request' });
    expect(await refusal({ grant_type: JWT_BEARER })).toEqual({ status: 400, error: 'invalid_request' });
    expect(await refusal({ grant_type: 'client_credentials' }, { 'content-type': 'application/json' })).toEqual({ status: 400, error: 'invalid_request' });
    expect(await refusal('grant_type=client_credentials&grant_type=client_credentials')).toEqual({ status: 400, error: 'invalid_request' });
    const both = { grant_type: 'client_credentials', client_id: svc.username, client_secret: svc.secret };
    expect(await refusal(both, { authorization: basic(svc.username, svc.secret) })).toEqual({ status: 400, error: 'invalid_request' });
    expect(await refusal({ grant_type: JWT_BEARER, assertion: 'x'.repeat(65 * 1024) })).toEqual({ status: 413, error: 'invalid_request' });

    const get = await fetch(tokenUrl());
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const preflight = await fetch(introspectUrl(), { method: 'OPTIONS', headers: { origin: srv.config.origins[0]!, 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(405);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const fromPage = await post(tokenUrl(), { grant_type: 'client_credentials' }, { origin: srv.config.origins[0]! });
    expect(fromPage.headers.get('access-control-allow-origin')).toBeNull();
  });
});

/** A form POST from a chosen loopback address (all of 127/8 reaches the server on Linux). */
function postFrom(localAddress: string, url: string, form: Record<string, string>, authorization: string): Promise<{ status: number; json: any; retryAfter: string | undefined }> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', localAddress, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), authorization } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text), retryAfter: res.headers['retry-after'] as string | undefined }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe(`OAuth rate limits (${BACKEND})`, () => {
  const srv = useTestServer({ config: { 'oauth-rate-limit': '3' } });
  const form = { grant_type: 'client_credentials' };

  it('count per machine user across addresses, and per address across users: 429 temporarily_unavailable with Retry-After', async () => {
    const victim = `victim-${randomUUID()}`;
    for (const address of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      expect((await postFrom(address, `${srv.url}/oauth/v2/token`, form, basic(victim, 'guess'))).status).toBe(401);
    }
    const limited = await postFrom('127.0.0.5', `${srv.url}/oauth/v2/token`, form, basic(victim, 'guess'));
    expect({ status: limited.status, error: limited.json.error }).toEqual({ status: 429, error: 'temporarily_unavailable' });
    expect(Number(limited.retryAfter)).toBeGreaterThan(0);

    for (let i = 0; i < 3; i++) expect((await postFrom('127.0.0.6', `${srv.url}/oauth/v2/introspect`, { token: 'x' }, basic(`u${i}-${randomUUID()}`, 'guess'))).status).toBe(401);
    const byAddress = await postFrom('127.0.0.6', `${srv.url}/oauth/v2/introspect`, { token: 'x' }, basic(`u-${randomUUID()}`, 'guess'));
    expect({ status: byAddress.status, error: byAddress.json.error }).toEqual({ status: 429, error: 'temporarily_unavailable' });
  });
});
