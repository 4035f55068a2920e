/**
 * The latency floor of `npm run bench -- --baseline`'s open-loop phase: the least a login server can do
 * on this machine if each call commits a write, as keeping a challenge single-use across instances
 * needs. Each of the two calls
 * (CreateSession, SetSession) commits one INSERT of one small row and answers with a fixed JSON shape;
 * no reads, no verification, no signing. The load generator still does its own part (the authenticator
 * signs the challenge), so the phase has the same processes, hops and commits as a real login, and its
 * p99 says how much of passkeyd's tail at the same arrival rate is the machine's, not passkeyd's.
 *
 * Environment: DATABASE_URL, PASSKEYD_DATABASE_SCHEMA, PORT, RP_ID.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { comparisonPool, runComparisonServer } from './comparison-server.js';

const rpId = process.env.RP_ID ?? 'localhost';
const pool = comparisonPool();

const CREATE = '/passkeyd.session.v2.SessionService/CreateSession';
const SET = '/passkeyd.session.v2.SessionService/SetSession';
const INSERT = 'insert into null_calls (call) values ($1)';

const answers: Record<string, () => unknown> = {
  [CREATE]: () => ({
    sessionId: randomBytes(8).toString('hex'),
    sessionToken: 'null',
    // An empty allow list: the authenticator answers with its first credential for the RP ID.
    challenges: { webAuthN: { publicKeyCredentialRequestOptions: { publicKey: { challenge: randomBytes(32).toString('base64url'), rpId, allowCredentials: [] } } } },
  }),
  [SET]: () => ({ sessionToken: 'null', accessToken: 'null' }),
};

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const answer = req.method === 'POST' ? answers[req.url ?? ''] : undefined;
    const send = (status: number, value: unknown) => {
      const text = JSON.stringify(value);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (!answer) return send(404, { code: 'not_found', message: 'no such path' });
    pool.query(INSERT, [req.url === CREATE ? 1 : 2]).then(
      () => send(200, answer()),
      () => send(500, { code: 'internal', message: 'insert failed' }),
    );
  });
});

runComparisonServer(server, pool, async () => {
  await pool.query('create table if not exists null_calls (id bigserial primary key, call smallint not null, at timestamptz not null default now())');
});
