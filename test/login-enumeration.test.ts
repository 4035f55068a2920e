import { Code } from '@connectrpc/connect';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/login.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const MIN_LATENCY_MS = 150;
const srv = useTestServer({ config: { 'availability-min-latency-ms': String(MIN_LATENCY_MS), 'availability-rate-limit': '100' } });

/** CreateSession over Connect JSON, exactly as `curl` would send it. */
async function createSessionJson(body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${srv.url}/passkeyd.session.v2.SessionService/CreateSession`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const byName = (loginName: string) => ({ checks: { user: { loginName } }, challenges: { webAuthN: {} } });

/**
 * The structure of a JSON value: keys and value kinds, array lengths, string lengths of ids.
 * Transports are a non-empty list of names whose length varies by authenticator, real or pseudo.
 */
function shapeOf(v: unknown, key = ''): unknown {
  if (key === 'transports') return Array.isArray(v) && v.length > 0 && v.every((t) => typeof t === 'string') ? 'string[]' : v;
  if (Array.isArray(v)) return v.map((x) => shapeOf(x));
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, shapeOf(x, k)]),
    );
  if (key === 'id' || key === 'challenge') return `string(${(v as string).length})`;
  return typeof v;
}

/** What one call wrote: its events (aggregate type and event type, in order) and the rows it added per table. */
interface Writes {
  events: string[];
  rows: Record<string, number>;
}

const TABLES = ['sessions', 'challenges', 'aggregates', 'users', 'passkeys'];

async function withWrites<T>(call: () => Promise<T>): Promise<T & { writes: Writes }> {
  const db = srv.app.store.db;
  const counts = async () => {
    const out: Record<string, number> = {};
    for (const t of TABLES) out[t] = (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(t)}`.execute(db)).rows[0]!.n;
    return out;
  };
  const last = (await sql<{ p: string }>`select coalesce(max(position), 0)::text as p from events`.execute(db)).rows[0]!.p;
  const before = await counts();
  const result = await call();
  const after = await counts();
  const events = await sql<{ t: string }>`select aggregate_type || ':' || event_type as t from events where position > ${last}::bigint order by position`.execute(db);
  return { ...result, writes: { events: events.rows.map((e) => e.t), rows: Object.fromEntries(TABLES.map((t) => [t, after[t]! - before[t]!])) } };
}

describe(`no user enumeration (${BACKEND})`, () => {
  it('an unknown login name gets the same response shape as a known one, and the same database work', async () => {
    const known = `known-${Date.now()}`;
    const userId = await createUser(srv.url, srv.admin, known);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const real = await withWrites(() => createSessionJson(byName(known)));
    expect(real.status).toBe(200);
    expect(real.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials).toEqual([
      { id: authenticator.credentials[0]!.id, type: 'public-key', transports: ['internal', 'hybrid'] },
    ]);

    // Pseudo credentials number 1 or 2, decided by the name; take an unknown name that gets one, like the known user.
    let unknown: { status: number; json: any; writes: Writes } | undefined;
    let ghost = '';
    for (let i = 0; i < 20 && !unknown; i++) {
      ghost = `ghost-${i}-${Date.now()}`;
      const r = await withWrites(() => createSessionJson(byName(ghost)));
      if (r.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials.length === 1) unknown = r;
    }
    expect(unknown?.status).toBe(200);
    expect(shapeOf(unknown!.json)).toEqual(shapeOf(real.json));
    expect(unknown!.json.details.resourceOwner).toBe(real.json.details.resourceOwner);
    // The same writes: events of the same kinds on the same kinds of aggregate, the same rows added.
    // (Comparing the two sessions' sequences could not fail: every new aggregate starts at 1.)
    expect(unknown!.writes).toEqual(real.writes);
    expect(real.writes.events).toEqual(['session:session.added']);
    const pseudo = unknown!.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials[0];
    expect(pseudo.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(pseudo.transports.length).toBeGreaterThan(0);

    // Deterministic per name (case-insensitive), as a real user's list would be.
    const again = await createSessionJson(byName(ghost.toUpperCase()));
    expect(again.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials).toEqual([pseudo]);

    // The unknown name got a session and a challenge, like the known one.
    for (const r of [real, unknown!]) {
      const row = await srv.app.store.db.selectFrom('sessions').select(['challenge_id', 'challenge']).where('id', '=', r.json.sessionId).executeTakeFirstOrThrow();
      expect(row.challenge_id).toBeTruthy();
      expect(row.challenge).toBe(r.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.challenge);
    }
    const added = await srv.app.store.db.selectFrom('events').select('event_type').where('aggregate_id', '=', unknown!.json.sessionId).execute();
    expect(added.map((e) => e.event_type)).toEqual(['session.added']);
  });

  it('a known user without a passkey looks like an unknown name; so does an unknown user id', async () => {
    const name = `nopasskey-${Date.now()}`;
    const userId = await createUser(srv.url, srv.admin, name);
    const r = await createSessionJson(byName(name));
    const allow = r.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials;
    expect(allow.length).toBeGreaterThanOrEqual(1);
    expect(allow.length).toBeLessThanOrEqual(2);
    const byId = await createSessionJson({ checks: { user: { userId } }, challenges: { webAuthN: {} } });
    const unknownId = await createSessionJson({ checks: { user: { userId: 'no-such-user' } }, challenges: { webAuthN: {} } });
    for (const x of [byId, unknownId]) {
      expect(x.status).toBe(200);
      expect(x.json.challenges.webAuthN.publicKeyCredentialRequestOptions.publicKey.allowCredentials.length).toBeGreaterThanOrEqual(1);
    }
  });

  it('CheckPasskeyAvailability: the same answer shape and minimum latency for every login name', async () => {
    const withPasskey = `avail-${Date.now()}`;
    const userId = await createUser(srv.url, srv.admin, withPasskey);
    await registerPasskey(srv.url, { userId, token: srv.admin });
    const without = `avail-none-${Date.now()}`;
    await createUser(srv.url, srv.admin, without);
    const users = clientFor(UserService, 'grpc', srv.url);
    const cases: [string, boolean][] = [
      [withPasskey.toUpperCase(), true],
      [without, false],
      [`nobody-${Date.now()}`, false],
    ];
    for (const [loginName, expected] of cases) {
      const started = performance.now();
      const r = await users.checkPasskeyAvailability({ loginName });
      expect(performance.now() - started).toBeGreaterThanOrEqual(MIN_LATENCY_MS - 5);
      expect(r.hasPasskey).toBe(expected);
    }
    expect(await codeOf(users.checkPasskeyAvailability({ loginName: '' }))).toBe(Code.InvalidArgument);
  });
});
