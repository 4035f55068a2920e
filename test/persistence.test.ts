import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../gen/health/v1/health_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { createSchema, startServerBehindProxy, startTestServer, TEST_DATABASE_URL } from './helpers/server.js';

describe('storage lifecycle', () => {
  it('a restart on the same PGlite directory keeps users, events and signing keys', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-pglite-'));
    try {
      const first = await startTestServer({ dataDir: dir, embedded: true });
      const admin = await first.adminToken();
      const users = clientFor(UserService, 'connect', first.url);
      const { userId } = await users.addHumanUser({ username: 'durable', profile: { givenName: 'D', familyName: 'D' }, email: { email: 'durable@example.com' } }, bearer(admin));
      const jwks = await first.app.tokens.jwks();
      await first.close();

      const second = await startTestServer({ dataDir: dir, embedded: true });
      try {
        const again = clientFor(UserService, 'connect', second.url);
        // The token signed before the restart still verifies: the key was kept.
        const got = await again.getUserByID({ userId }, bearer(admin));
        expect(got.user?.username).toBe('durable');
        expect(await second.app.tokens.jwks()).toEqual(jwks);
        const events = await second.app.store.db.selectFrom('events').select('event_type').where('aggregate_id', '=', userId).execute();
        expect(events.map((e) => e.event_type)).toEqual(['user.human.added']);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!TEST_DATABASE_URL)('two instances migrating one PostgreSQL database at once both come up, with one default org and one key', async () => {
    const { schema, drop } = await createSchema(TEST_DATABASE_URL!);
    try {
      const [a, b] = await Promise.all([startTestServer({ schema }), startTestServer({ schema })]);
      try {
        const orgs = await a.app.store.db.selectFrom('orgs').select('id').where('is_default', '=', true).execute();
        expect(orgs).toHaveLength(1);
        const keys = await a.app.store.db.selectFrom('signing_keys').select('kid').execute();
        expect(keys).toHaveLength(1);
        // A token minted by one instance is accepted by the other.
        const token = await a.adminToken();
        const users = clientFor(UserService, 'grpc', b.url);
        const { userId } = await users.addHumanUser({ username: 'shared', profile: { givenName: 'S', familyName: 'S' }, email: { email: 's@example.com' } }, bearer(token));
        const viaA = await clientFor(UserService, 'grpc', a.url).getUserByID({ userId }, bearer(token));
        expect(viaA.user?.username).toBe('shared');
      } finally {
        await a.server.close();
        await b.server.close();
      }
    } finally {
      await drop();
    }
  });

  it.skipIf(!TEST_DATABASE_URL)('database down → UNAVAILABLE and readyz 503; back up → the service recovers by itself', async () => {
    const { url, proxy, adminToken, close } = await startServerBehindProxy();
    try {
      const token = await adminToken();
      const users = clientFor(UserService, 'connect', url);
      const health = clientFor(Health, 'grpc', url);
      expect(await codeOf(users.listUsers({}, bearer(token)))).toBe('ok');

      await proxy.cut();
      expect(await codeOf(users.listUsers({}, bearer(token)))).toBe(Code.Unavailable);
      expect((await fetch(`${url}/readyz`)).status).toBe(503);
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);

      await proxy.restore();
      expect(await codeOf(users.listUsers({}, bearer(token)))).toBe('ok');
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      await close();
    }
  });
});
