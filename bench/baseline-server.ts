/**
 * The baseline of `npm run bench -- --baseline`: the login server someone would write by hand in an
 * afternoon, to show where passkeyd stands against "just write it yourself". node:http, SimpleWebAuthn's
 * generateAuthenticationOptions / verifyAuthenticationResponse, `pg` and jose; one process; five
 * autocommit statements per login (read credentials, store challenge; take challenge, read credential,
 * update counter); no sessions, no events, no rate limits, no revocation.
 *
 * It answers passkeyd's Connect JSON paths for CreateSession and SetSession with the same JSON shapes,
 * so the bench's load generator drives both servers alike. At start it copies the passkeys that passkeyd
 * registered (same database, same schema) into its own table.
 *
 * Environment: DATABASE_URL, PASSKEYD_DATABASE_SCHEMA, PORT, ORIGIN, RP_ID.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { generateAuthenticationOptions, verifyAuthenticationResponse } from '@simplewebauthn/server';
import { generateKeyPair, SignJWT } from 'jose';
import { comparisonPool, runComparisonServer } from './comparison-server.js';

const origin = process.env.ORIGIN ?? 'http://localhost:8080';
const rpID = process.env.RP_ID ?? 'localhost';
const pool = comparisonPool();

const CREATE = '/passkeyd.session.v2.SessionService/CreateSession';
const SET = '/passkeyd.session.v2.SessionService/SetSession';

async function setUp(): Promise<void> {
  await pool.query(`create table if not exists baseline_credentials (
      id text primary key, user_id text not null, public_key bytea not null, counter bigint not null)`);
  await pool.query('create index if not exists baseline_credentials_user on baseline_credentials (user_id)');
  await pool.query(`create table if not exists baseline_challenges (
      id text primary key, token text not null, user_id text not null, challenge text not null, expires_at timestamptz not null)`);
  await pool.query('truncate baseline_credentials, baseline_challenges');
  await pool.query(`insert into baseline_credentials (id, user_id, public_key, counter)
      select translate(encode(credential_id, 'base64'), E'+/=\n', '-_'), user_id, public_key, sign_count
      from passkeys where state = 'ready' and credential_id is not null`); // ids in base64url, as assertions name them
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function createSession(body: any): Promise<unknown> {
  const userId = body?.checks?.user?.userId;
  if (typeof userId !== 'string') throw new HttpError(400, 'invalid_argument', 'checks.user.userId is required');
  const { rows } = await pool.query('select id from baseline_credentials where user_id = $1', [userId]);
  if (rows.length === 0) throw new HttpError(404, 'not_found', 'no such user');
  const options = await generateAuthenticationOptions({ rpID, allowCredentials: rows.map((r) => ({ id: r.id as string })), userVerification: 'preferred' });
  const id = randomUUID();
  const token = randomBytes(24).toString('base64url');
  await pool.query(`insert into baseline_challenges (id, token, user_id, challenge, expires_at) values ($1, $2, $3, $4, now() + interval '5 minutes')`, [
    id,
    token,
    userId,
    options.challenge,
  ]);
  return { sessionId: id, sessionToken: token, challenges: { webAuthN: { publicKeyCredentialRequestOptions: { publicKey: options } } } };
}

let signingKey: CryptoKey;

async function setSession(body: any): Promise<unknown> {
  const assertion = body?.checks?.webAuthN?.credentialAssertionData;
  if (typeof body?.sessionId !== 'string' || !assertion) throw new HttpError(400, 'invalid_argument', 'sessionId and the assertion are required');
  const taken = await pool.query('delete from baseline_challenges where id = $1 and token = $2 and expires_at > now() returning user_id, challenge', [
    body.sessionId,
    body.sessionToken,
  ]);
  const challenge = taken.rows[0];
  if (!challenge) throw new HttpError(404, 'not_found', 'no such challenge');
  const { rows } = await pool.query('select public_key, counter from baseline_credentials where id = $1 and user_id = $2', [assertion.id, challenge.user_id]);
  const credential = rows[0];
  if (!credential) throw new HttpError(404, 'not_found', 'no such credential');
  const verified = await verifyAuthenticationResponse({
    response: assertion,
    expectedChallenge: challenge.challenge,
    expectedOrigin: origin,
    expectedRPID: rpID,
    credential: { id: assertion.id, publicKey: new Uint8Array(credential.public_key), counter: Number(credential.counter) },
    requireUserVerification: false,
  });
  if (!verified.verified) throw new HttpError(401, 'unauthenticated', 'assertion not verified');
  await pool.query('update baseline_credentials set counter = $1 where id = $2', [verified.authenticationInfo.newCounter, assertion.id]);
  const accessToken = await new SignJWT({ sub: challenge.user_id }).setProtectedHeader({ alg: 'ES256', kid: 'baseline' }).setIssuedAt().setExpirationTime('15m').sign(signingKey);
  return { sessionToken: randomBytes(24).toString('base64url'), accessToken };
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const handler = req.url === CREATE ? createSession : req.url === SET ? setSession : undefined;
    const answer = (status: number, value: unknown) => {
      const text = JSON.stringify(value);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (!handler || req.method !== 'POST') return answer(404, { code: 'not_found', message: 'no such path' });
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(400, { code: 'invalid_argument', message: 'body is not JSON' });
    }
    handler(body).then(
      (value) => answer(200, value),
      (err) => (err instanceof HttpError ? answer(err.status, { code: err.code, message: err.message }) : answer(500, { code: 'internal', message: 'internal error' })),
    );
  });
});

runComparisonServer(server, pool, async () => {
  ({ privateKey: signingKey } = await generateKeyPair('ES256'));
  await setUp();
});
