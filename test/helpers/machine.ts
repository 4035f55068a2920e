/**
 * Test helpers for machine users (internal services): REST set-up calls, keys made with node:crypto,
 * JWT-profile assertions signed with jose, the OAuth token and introspection endpoints, and polling for
 * a revocation to take effect.
 */
import { generateKeyPairSync, type KeyObject, createPrivateKey, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';

/** The HTTP status and the JSON body of an answer (or the raw text when it is not JSON). */
async function answerOf(res: Response): Promise<{ status: number; json: any }> {
  const text = await res.text();
  try {
    return { status: res.status, json: JSON.parse(text) };
  } catch {
    return { status: res.status, json: text };
  }
}

/** A REST call: HTTP status and the JSON body (or the raw text when it is not JSON). */
export async function rest(baseUrl: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return answerOf(res);
}

/** Like {@link rest}, but fails the test unless the answer is 200; returns the body. */
export async function restOk(baseUrl: string, method: string, path: string, body?: unknown, token?: string): Promise<any> {
  const r = await rest(baseUrl, method, path, body, token);
  if (r.status !== 200) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

/** An ISO timestamp `seconds` from now. */
export const inSeconds = (seconds: number): string => new Date(Date.now() + seconds * 1000).toISOString();

let counter = 0;
/** A name unique within this test process. */
export const uniqueName = (prefix: string): string => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++counter}`;

/** Creates a machine user over REST (as `token`, an admin) and returns its id and username. */
export async function createMachineUser(baseUrl: string, token: string, orgId: string, prefix = 'svc'): Promise<{ id: string; username: string }> {
  const username = uniqueName(prefix);
  const r = await restOk(baseUrl, 'POST', '/v2/users/new', { organizationId: orgId, username, machine: { name: username, description: 'a test service' } }, token);
  return { id: r.id, username };
}

/** Grants roles over REST (CreateAdministrator) on one organization, or on the instance when orgId is undefined. */
export async function grant(baseUrl: string, token: string, userId: string, roles: string[], orgId?: string): Promise<void> {
  await restOk(baseUrl, 'POST', '/v2/administrators', { userId, resource: orgId === undefined ? { instance: true } : { organizationId: orgId }, roles }, token);
}

/** A personal access token for a machine user (AddPersonalAccessToken over REST). */
export async function addPat(baseUrl: string, token: string, userId: string, ttlSeconds = 3600): Promise<{ tokenId: string; token: string }> {
  const r = await restOk(baseUrl, 'POST', `/v2/users/${userId}/pats`, { expirationDate: inSeconds(ttlSeconds) }, token);
  return { tokenId: r.tokenId, token: r.token };
}

/** A key pair made in the test: the private key signs, the SPKI PEM goes to AddKey. */
export interface TestKey {
  alg: 'ES256' | 'RS256';
  privateKey: KeyObject;
  publicPem: string;
}

export function generateTestKey(alg: 'ES256' | 'RS256'): TestKey {
  const pair = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { alg, privateKey: pair.privateKey, publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** The JSON key file AddKey returns (base64) for a pair passkeyd generated. */
export interface KeyFile {
  type: 'serviceaccount';
  keyId: string;
  key: string;
  userId: string;
  expirationDate?: string;
}

export function parseKeyFile(keyContentBase64: string): KeyFile {
  return JSON.parse(Buffer.from(keyContentBase64, 'base64').toString('utf8')) as KeyFile;
}

/** Adds a key over REST: with a supplied public key (the key id is returned), or a generated pair (the key file). */
export async function addKey(baseUrl: string, token: string, userId: string, publicPem?: string): Promise<{ keyId: string; keyFile?: KeyFile }> {
  const body = { expirationDate: inSeconds(86400), ...(publicPem ? { publicKey: Buffer.from(publicPem).toString('base64') } : {}) };
  const r = await restOk(baseUrl, 'POST', `/v2/users/${userId}/keys`, body, token);
  return { keyId: r.keyId, keyFile: r.keyContent ? parseKeyFile(r.keyContent) : undefined };
}

export interface AssertionOptions {
  /** A KeyObject, or a PKCS#8 PEM (a key file's `key`). */
  key: KeyObject | string;
  alg: 'ES256' | 'RS256';
  keyId: string;
  userId: string;
  /** The token endpoint's issuer (the server's PASSKEYD_ISSUER). */
  audience: string;
  lifetimeSeconds?: number;
  jti?: string;
}

/** A JWT-profile assertion (RFC 7523): iss = sub = the machine user, aud = the issuer, kid = the key id. */
export async function signAssertion(o: AssertionOptions): Promise<string> {
  const key = typeof o.key === 'string' ? createPrivateKey(o.key) : o.key;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: o.alg, kid: o.keyId })
    .setIssuer(o.userId)
    .setSubject(o.userId)
    .setAudience(o.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + (o.lifetimeSeconds ?? 300))
    .setJti(o.jti ?? randomUUID())
    .sign(key);
}

/** HTTP Basic credentials as RFC 6749 §2.3.1 spells them (each part form-url-encoded). */
const basic = (username: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(username)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** A form POST to one of the OAuth endpoints. */
async function oauthPost(baseUrl: string, path: string, form: Record<string, string>, authorization?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
    body: new URLSearchParams(form).toString(),
  });
  return answerOf(res);
}

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** The jwt-bearer grant: {status, json}, json = {access_token, token_type, expires_in} on success. */
export const exchangeAssertion = (baseUrl: string, assertion: string) => oauthPost(baseUrl, '/oauth/v2/token', { grant_type: JWT_BEARER, assertion });

/** The client_credentials grant with HTTP Basic (the machine user's username and client secret). */
export const clientCredentials = (baseUrl: string, username: string, secret: string) =>
  oauthPost(baseUrl, '/oauth/v2/token', { grant_type: 'client_credentials' }, basic(username, secret));

/** Fails the test with the endpoint's answer unless it issued a Bearer token; returns the token. */
export async function accessTokenOf(p: Promise<{ status: number; json: any }>): Promise<string> {
  const r = await p;
  if (r.status !== 200 || typeof r.json?.access_token !== 'string') throw new Error(`token endpoint → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.access_token;
}

/** A signed assertion exchanged at once for an access token. */
export async function accessTokenWithKey(baseUrl: string, o: AssertionOptions): Promise<string> {
  return accessTokenOf(exchangeAssertion(baseUrl, await signAssertion(o)));
}

/** RFC 7662 introspection, the caller authenticated with its client secret (HTTP Basic). */
export const introspect = (baseUrl: string, token: string, caller: { username: string; secret: string }) =>
  oauthPost(baseUrl, '/oauth/v2/introspect', { token }, basic(caller.username, caller.secret));

/**
 * Calls `probe` every `intervalMs` until `done(result)` holds or `timeoutMs` passes; returns the last
 * result and the milliseconds from the start until it was seen.
 */
export async function pollUntil<T>(probe: () => Promise<T>, done: (r: T) => boolean, o: { intervalMs?: number; timeoutMs?: number } = {}): Promise<{ result: T; elapsed: number }> {
  const start = performance.now();
  for (;;) {
    const result = await probe();
    const elapsed = performance.now() - start;
    if (done(result) || elapsed > (o.timeoutMs ?? 3000)) return { result, elapsed };
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}
