import { Code } from '@connectrpc/connect';
import { decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createTokenService } from '../src/auth/tokens.js';
import { retireSigningKey, rotateSigningKey } from '../src/domain/admin.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { BACKEND, useTestServer, type TestServerHandle } from './helpers/server.js';

const kidOf = (token: string) => decodeProtectedHeader(token).kid!;

async function jwksKids(url: string): Promise<string[]> {
  const body = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  return body.keys.map((k) => k.kid);
}

/** The signing-key events recorded so far, oldest first. */
async function keyEvents(srv: TestServerHandle): Promise<{ aggregate_id: string; event_type: string; payload: Record<string, unknown> }[]> {
  const rows = await srv.app.store.db
    .selectFrom('events')
    .select(['aggregate_id', 'event_type', 'payload'])
    .where('aggregate_type', '=', 'signingkey' as never)
    .orderBy('position')
    .execute();
  return rows.map((r) => ({ ...r, payload: (typeof r.payload === 'string' ? JSON.parse(r.payload) : r.payload) as Record<string, unknown> }));
}

/** Polls until `check` holds; resolves with the milliseconds it took (fails after `limitMs`). */
async function within(limitMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > limitMs) throw new Error(`not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe(`signing key retirement (${BACKEND})`, () => {
  const srv = useTestServer();

  it('a rotated key retires on its own once no token it signed can be valid; the rotation is an event', async () => {
    const oldToken = await srv.adminToken();
    const oldKid = kidOf(oldToken);
    const before = Date.now();
    const newKid = await rotateSigningKey(srv.app.store.db, srv.app.tokens);
    const users = clientFor(UserService, 'connect', srv.url);
    expect(await codeOf(users.listUsers({}, bearer(oldToken)))).toBe('ok');
    expect(await jwksKids(srv.url)).toEqual(expect.arrayContaining([oldKid, newKid]));

    // The old key's deadline is the longest lifetime a token may have (an admin token's 24h) from now.
    const rotated = (await keyEvents(srv)).find((e) => e.event_type === 'signingkey.rotated' && e.aggregate_id === oldKid);
    expect(rotated?.payload.new_kid).toBe(newKid);
    const retiresAt = Date.parse(rotated?.payload.retires_at as string);
    expect(retiresAt - before).toBeGreaterThanOrEqual(24 * 3600_000);
    expect(retiresAt - before).toBeLessThan(24 * 3600_000 + 60_000);

    // Time passes (the deadline moved to now, as if 24h had gone by): the key verifies nothing, leaves
    // JWKS, and its retirement is recorded once.
    await srv.app.store.db
      .updateTable('signing_keys')
      .set({ retires_at: new Date(Date.now() - 1) } as never)
      .where('kid', '=', oldKid)
      .execute();
    await within(1000, async () => (await codeOf(users.listUsers({}, bearer(oldToken)))) === Code.Unauthenticated);
    expect(await jwksKids(srv.url)).not.toContain(oldKid);
    await within(2000, async () => (await keyEvents(srv)).some((e) => e.event_type === 'signingkey.retired' && e.aggregate_id === oldKid));
    const retired = (await keyEvents(srv)).filter((e) => e.event_type === 'signingkey.retired' && e.aggregate_id === oldKid);
    expect(retired).toHaveLength(1);
    expect(retired[0]!.payload.reason).toBe('expired');
    expect(await codeOf(users.listUsers({}, bearer(await srv.adminToken())))).toBe('ok');
  });

  it('retiring a key ends its tokens at once and removes it from JWKS; retiring the signing key rotates first', async () => {
    const token = await srv.adminToken();
    const kid = kidOf(token);
    const users = clientFor(UserService, 'grpc', srv.url);
    expect(await codeOf(users.listUsers({}, bearer(token)))).toBe('ok'); // now in the verified-token cache

    // The key signing new tokens: a new one takes its place in the same command.
    const { retired, newKid } = await retireSigningKey(srv.app.store.db, srv.app.tokens, kid, 'test');
    expect(retired).toBe(kid);
    expect(newKid).toBeTruthy();
    expect(await codeOf(users.listUsers({}, bearer(token)))).toBe(Code.Unauthenticated);
    expect(await jwksKids(srv.url)).not.toContain(kid);
    const fresh = await srv.adminToken();
    expect(kidOf(fresh)).toBe(newKid);
    expect(await codeOf(users.listUsers({}, bearer(fresh)))).toBe('ok');
    const events = (await keyEvents(srv)).filter((e) => e.aggregate_id === kid).map((e) => [e.event_type, e.payload.reason ?? e.payload.new_kid]);
    expect(events.slice(-2)).toEqual([
      ['signingkey.rotated', newKid],
      ['signingkey.retired', 'manual'],
    ]);

    // Unknown or already retired: NOT_FOUND / FAILED_PRECONDITION kinds, nothing recorded.
    await expect(retireSigningKey(srv.app.store.db, srv.app.tokens, 'no-such-kid', 'test')).rejects.toMatchObject({ kind: 'not_found' });
    await expect(retireSigningKey(srv.app.store.db, srv.app.tokens, kid, 'test')).rejects.toMatchObject({ kind: 'failed_precondition' });
  });

  it('JWKS lists a key rotated elsewhere at once, also while a read of the keys begun before the rotation is still under way', async () => {
    // A second process's view of the same keys, re-reading them all the time (seen failing in CI: a
    // background read begun before the rotation's commit, answered after it, counted as fresh).
    const watcher = await createTokenService(srv.app.store.db, { issuer: 'watcher', audience: 'watcher', pollMs: 1 });
    try {
      for (let i = 0; i < 15; i++) {
        const kid = await rotateSigningKey(srv.app.store.db, srv.app.tokens);
        expect((await watcher.jwks()).keys.map((k) => k.kid)).toContain(kid);
      }
    } finally {
      watcher.close();
    }
  });
});

// Several instances share one database only on PostgreSQL.
describe.skipIf(BACKEND !== 'postgres')('signing key retirement on two instances', () => {
  const first = useTestServer();
  const second = useTestServer(() => ({ schema: first.schema }));

  it('a key retired through one instance is refused by the other within a second and leaves its JWKS', async () => {
    await rotateSigningKey(first.app.store.db, first.app.tokens);
    const token = await first.adminToken();
    const kid = kidOf(token);
    const users = clientFor(UserService, 'connect', second.url);
    await within(1000, async () => (await codeOf(users.listUsers({}, bearer(token)))) === 'ok');
    expect(await jwksKids(second.url)).toContain(kid);

    await retireSigningKey(first.app.store.db, first.app.tokens, kid, 'test');
    const refusedAfter = await within(1000, async () => (await codeOf(users.listUsers({}, bearer(token)))) === Code.Unauthenticated);
    expect(refusedAfter).toBeLessThan(1000);
    await within(1000, async () => !(await jwksKids(second.url)).includes(kid));
    // The second instance signs with the key that took its place.
    const next = await second.adminToken();
    expect(kidOf(next)).not.toBe(kid);
    expect(await codeOf(clientFor(UserService, 'connect', first.url).listUsers({}, bearer(next)))).toBe('ok');
  });
});
