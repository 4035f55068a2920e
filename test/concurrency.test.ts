import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { appendEvents } from '../src/store/events.js';
import { bearer, clientFor } from './helpers/clients.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer();

describe(`concurrent writers to one aggregate (${BACKEND})`, () => {
  it('50 concurrent changes leave sequences 1..N with no gap or duplicate; each response names the event it wrote', async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    const { userId } = await users.addHumanUser({ username: 'busy', profile: { givenName: 'B', familyName: 'B' }, email: { email: 'busy@example.com' } }, bearer(srv.admin));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        users.updateHumanUser({ userId, profile: { givenName: `name-${i}`, familyName: 'B' } }, bearer(srv.admin)).then((r) => ({ i, sequence: Number(r.details!.sequence) })),
      ),
    );
    const events = await srv.app.store.db
      .selectFrom('events')
      .select(['sequence', 'event_type', 'payload'])
      .where('aggregate_type', '=', 'user')
      .where('aggregate_id', '=', userId)
      .orderBy('sequence')
      .execute();
    expect(events.map((e) => Number(e.sequence))).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    expect(new Set(results.map((r) => r.sequence)).size).toBe(50);
    for (const r of results) {
      const ev = events.find((e) => Number(e.sequence) === r.sequence)!;
      expect(ev.event_type).toBe('user.human.changed');
      expect((ev.payload as { given_name?: string }).given_name).toBe(`name-${r.i}`);
    }
    const final = await users.getUserByID({ userId }, bearer(srv.admin));
    expect(final.details?.sequence).toBe(51n);
    const last = events[events.length - 1]!.payload as { given_name: string };
    expect((final.user?.type.case === 'human' ? final.user.type.value : undefined)?.profile?.givenName).toBe(last.given_name);
  });

  it('appends racing in separate transactions on the store never collide', async () => {
    const db = srv.app.store.db;
    const seqs = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        db.transaction().execute((trx) =>
          appendEvents(
            trx,
            { type: 'org', id: 'race', owner: 'o' },
            [
              { type: 'a', payload: { i } },
              { type: 'b', payload: { i } },
            ],
            'test',
          ),
        ),
      ),
    );
    const all = seqs.map((s) => s.sequence).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 30 }, (_, i) => 2 * (i + 1)));
    const rows = await db.selectFrom('events').select('sequence').where('aggregate_id', '=', 'race').orderBy('sequence').execute();
    expect(rows.map((r) => Number(r.sequence))).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });
});
