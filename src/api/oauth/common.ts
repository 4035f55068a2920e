import { decodeJwt } from 'jose';
import type { Kysely } from 'kysely';
import type { Callers } from '../../auth/callers.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config/config.js';
import { type AuthenticatedClient, CLIENT_ASSERTION_TYPE, OAuthError, verifyAssertion, verifyClientSecret } from '../../domain/oauth.js';
import { isDatabaseUnavailable, PasskeydError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { RateLimits } from '../../store/rate-limits.js';
import type { Database } from '../../store/schema.js';
import { sendJson, type NodeRequest, type NodeResponse } from '../transport/http.js';

/** What the OAuth endpoints need; built once per process by the server. */
export interface OAuthDeps {
  config: Pick<Config, 'issuer' | 'tokenTtlSeconds'>;
  db: Kysely<Database>;
  tokens: TokenService;
  callers: Callers;
  rateLimits: RateLimits;
  log: Logger;
}

/**
 * Largest form accepted. An assertion is a few KiB at most (an RS256 JWT with a 4096-bit key is under
 * 1 KiB), so anything near this is not a client of ours; refusing it early keeps the slow paths cheap.
 */
const MAX_FORM_BYTES = 64 * 1024;

/**
 * Every refused credential (invalid_grant, invalid_client) is answered no sooner than this after the
 * request arrived: an unknown client, a wrong secret (scrypt), an unknown key id and a bad signature
 * then all take the same time, so timing tells nothing about which users, keys or secrets exist.
 */
const MIN_REFUSAL_MS = 250;

/** The request's parameters: each at most once, an empty one counted as absent (RFC 6749 §3.1, §3.2). */
export type Form = ReadonlyMap<string, string>;

/** RFC 6749 §5.1: token responses (and, by the same reasoning, introspection answers) are never cached. */
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

/** Writes a successful OAuth answer. */
export function sendOAuthJson(res: NodeResponse, body: unknown): void {
  sendJson(res, 200, body, NO_STORE);
}

/** Reads the body, refusing a larger one (413) before or while reading it. */
function readBody(req: NodeRequest, res: NodeResponse): Promise<Buffer> {
  const tooLarge = () => new OAuthError('invalid_request', `the request body is larger than ${MAX_FORM_BYTES} bytes`, 413);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_FORM_BYTES) {
    // The rest is drained (or the connection closed) by app.ts once the answer is written.
    if (req.httpVersionMajor === 1) res.setHeader('connection', 'close');
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        req.off('data', onData);
        if (req.httpVersionMajor === 1) res.setHeader('connection', 'close');
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    // A client that goes away mid-body: nothing to answer, but the promise must not hang.
    req.once('close', () => {
      if (!req.complete) reject(new OAuthError('invalid_request', 'the request body ended early'));
    });
  });
}

/** Reads a form-encoded body (`application/x-www-form-urlencoded`, the only encoding RFC 6749 defines). */
export async function readForm(req: NodeRequest, res: NodeResponse): Promise<Form> {
  const type = String(req.headers['content-type'] ?? '')
    .split(';', 1)[0]!
    .trim()
    .toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 'the request must be application/x-www-form-urlencoded');
  }
  const body = await readBody(req, res);
  const form = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(body.toString('utf8'))) {
    if (form.has(name)) throw new OAuthError('invalid_request', `parameter ${name} is given more than once`);
    form.set(name, value);
  }
  for (const [name, value] of form) if (value === '') form.delete(name);
  return form;
}

/** Percent-decodes a Basic credential part (RFC 6749 §2.3.1); a raw one (curl -u) passes unchanged. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** The username and secret of an `Authorization: Basic` header; null when it is absent, undefined when malformed. */
function basicCredentials(req: NodeRequest): { username: string; secret: string } | null | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string' || header === '') return null;
  const m = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!m) return /^basic(\s|$)/i.test(header) ? undefined : null;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decodePart(decoded.slice(0, colon)), secret: decodePart(decoded.slice(colon + 1)) };
}

/** The one answer to every failed client authentication (no hint whether the client, key or secret exists). */
const badClient = () => new OAuthError('invalid_client', 'client authentication failed', 401);

/**
 * Authenticates the calling machine user with one of: HTTP Basic (`client_secret_basic`), `client_id`
 * and `client_secret` form fields (`client_secret_post`), or a JWT signed with one of its keys
 * (`private_key_jwt`, RFC 7523 §2.2). More than one method is invalid_request (RFC 6749 §2.3); none,
 * or one that fails, is invalid_client.
 */
export async function authenticateClient(deps: OAuthDeps, req: NodeRequest, form: Form): Promise<AuthenticatedClient> {
  const basic = basicCredentials(req);
  const post = form.has('client_secret');
  const assertion = form.get('client_assertion');
  const assertionType = form.get('client_assertion_type');
  if ([basic !== null, post, assertion !== undefined || assertionType !== undefined].filter(Boolean).length > 1) {
    throw new OAuthError('invalid_request', 'use one client authentication method');
  }
  if (basic === undefined) throw badClient();
  if (basic) return verifyClientSecret(deps.db, basic.username, basic.secret);
  if (post) {
    const clientId = form.get('client_id');
    if (clientId === undefined) throw badClient();
    return { ...(await verifyClientSecret(deps.db, clientId, form.get('client_secret')!)), method: 'client_secret_post' };
  }
  if (assertion !== undefined || assertionType !== undefined) {
    if (assertionType !== CLIENT_ASSERTION_TYPE) throw new OAuthError('invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
    if (assertion === undefined) throw new OAuthError('invalid_request', 'client_assertion is missing');
    try {
      return { ...(await verifyAssertion(deps.db, deps.config.issuer, assertion)), method: 'private_key_jwt' };
    } catch (err) {
      // A client assertion that does not verify is a failed client authentication, not a bad grant.
      if (err instanceof OAuthError && err.error === 'invalid_grant') throw badClient();
      throw err;
    }
  }
  throw badClient();
}

/** The unverified `sub` of a JWT, for rate limiting only (undefined when it is not one). */
function claimedSubject(jwt: string | undefined): string | undefined {
  if (jwt === undefined) return undefined;
  try {
    const sub = decodeJwt(jwt).sub;
    return typeof sub === 'string' && sub.length > 0 && sub.length <= 200 ? sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The machine user a request claims to be, before anything is verified: the Basic or `client_id`
 * username, or the `sub` of its (client) assertion. Rate limits count it, so one user's secret cannot be
 * guessed faster from many addresses.
 */
export function claimedClient(req: NodeRequest, form: Form): string | undefined {
  const basic = basicCredentials(req);
  const username = basic?.username ?? form.get('client_id');
  if (username !== undefined && username.length <= 200) return `client:${username.toLowerCase()}`;
  const sub = claimedSubject(form.get('client_assertion') ?? form.get('assertion'));
  return sub === undefined ? undefined : `user:${sub}`;
}

/** Spends one call of the OAuth budget of `key` (a client address, or a claimed client). */
export function limit(deps: OAuthDeps, key: string | undefined): Promise<void> {
  return key === undefined ? Promise.resolve() : deps.rateLimits.consume('oauth', key);
}

/** The client address a request came from (the rate limits' key). */
export function addressOf(req: NodeRequest): string {
  return `address:${req.socket?.remoteAddress ?? 'unknown'}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Answers a failure as RFC 6749 §5.2 does: `{error, error_description}`. A refused credential waits until
 * {@link MIN_REFUSAL_MS} after `startedAt` (performance.now() when the request arrived); a rate limit is
 * 429 `temporarily_unavailable` with `retry-after`; a database outage 503 `temporarily_unavailable`;
 * anything else is a bug, logged and answered 500 `server_error`.
 */
export async function refuse(deps: OAuthDeps, res: NodeResponse, err: unknown, startedAt: number, path: string): Promise<void> {
  let status: number;
  let body: { error: string; error_description: string };
  const headers: Record<string, string> = { ...NO_STORE };
  if (err instanceof OAuthError) {
    status = err.status;
    body = { error: err.error, error_description: err.description };
    if (err.error === 'invalid_client' || err.error === 'invalid_grant') {
      const wait = startedAt + MIN_REFUSAL_MS - performance.now();
      if (wait > 0) await sleep(wait);
    }
    if (err.error === 'invalid_client') headers['www-authenticate'] = 'Basic realm="passkeyd"';
    deps.log.info({ path, error: err.error }, 'oauth request refused');
  } else if (err instanceof PasskeydError && err.kind === 'resource_exhausted') {
    status = 429;
    body = { error: 'temporarily_unavailable', error_description: err.message };
    headers['retry-after'] = String(Math.ceil(err.retryAfterSeconds ?? 1));
  } else if ((err instanceof PasskeydError && err.kind === 'unavailable') || isDatabaseUnavailable(err)) {
    status = 503;
    body = { error: 'temporarily_unavailable', error_description: 'the database is unavailable; retry later' };
    headers['retry-after'] = '1';
  } else {
    deps.log.error({ err, path }, 'oauth request failed');
    status = 500;
    body = { error: 'server_error', error_description: 'internal error' };
  }
  if (!res.headersSent) sendJson(res, status, body, headers);
}
