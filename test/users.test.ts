import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { BACKEND, useTestServer } from './helpers/server.js';
import { bearer, clientFor, PROTOCOLS } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';

const srv = useTestServer();

describe(`user RPCs over every protocol (${BACKEND})`, () => {
  it.each(PROTOCOLS)('%s: add, get, list, update, delete give the same shapes', async (protocol) => {
    const users = clientFor(UserService, protocol, srv.url);
    const username = `ada-${protocol}`;
    const added = await users.addHumanUser(
      { username, profile: { givenName: 'Ada', familyName: 'Lovelace' }, email: { email: `${username}@example.com`, isVerified: true } },
      bearer(srv.admin),
    );
    expect(added.userId).toMatch(/^[0-9a-z]{26}$/);
    expect(added.details?.sequence).toBe(1n);
    expect(added.details?.resourceOwner).toBeTruthy();
    expect(added.details?.creationDate).toEqual(added.details?.changeDate);

    const got = await users.getUserByID({ userId: added.userId }, bearer(srv.admin));
    expect(got.user?.username).toBe(username);
    expect(got.user?.type.case).toBe('human');
    expect((got.user?.type.case === 'human' ? got.user.type.value : undefined)?.profile?.displayName).toBe('Ada Lovelace');
    expect((got.user?.type.case === 'human' ? got.user.type.value : undefined)?.email?.isVerified).toBe(true);
    expect(got.details?.sequence).toBe(1n);

    const updated = await users.updateHumanUser({ userId: added.userId, profile: { givenName: 'Augusta', familyName: 'King' } }, bearer(srv.admin));
    expect(updated.details?.sequence).toBe(2n);
    const again = await users.getUserByID({ userId: added.userId }, bearer(srv.admin));
    expect((again.user?.type.case === 'human' ? again.user.type.value : undefined)?.profile?.givenName).toBe('Augusta');

    const listed = await users.listUsers({ queries: [{ query: { case: 'userNameQuery', value: { userName: username, method: 0 } } }] }, bearer(srv.admin));
    expect(listed.details?.totalResult).toBe(1n);
    expect(listed.result[0]?.userId).toBe(added.userId);

    const deleted = await users.deleteUser({ userId: added.userId }, bearer(srv.admin));
    expect(deleted.details?.sequence).toBe(3n);
    expect(await codeOf(users.getUserByID({ userId: added.userId }, bearer(srv.admin)))).toBe(Code.NotFound);
    expect(await codeOf(users.deleteUser({ userId: added.userId }, bearer(srv.admin)))).toBe(Code.NotFound);
    const events = await srv.app.store.db.selectFrom('events').select(['sequence', 'event_type']).where('aggregate_id', '=', added.userId).orderBy('sequence').execute();
    expect(events.map((e) => [Number(e.sequence), e.event_type])).toEqual([
      [1, 'user.human.added'],
      [2, 'user.human.changed'],
      [3, 'user.removed'],
    ]);
  });

  it('usernames are unique regardless of case, and a freed username can be reused', async () => {
    const users = clientFor(UserService, 'connect', srv.url);
    const input = { username: 'Grace', profile: { givenName: 'Grace', familyName: 'Hopper' }, email: { email: 'grace@example.com' } };
    const first = await users.addHumanUser(input, bearer(srv.admin));
    expect(await codeOf(users.addHumanUser({ ...input, username: 'GRACE' }, bearer(srv.admin)))).toBe(Code.AlreadyExists);
    await users.deleteUser({ userId: first.userId }, bearer(srv.admin));
    expect(await codeOf(users.addHumanUser(input, bearer(srv.admin)))).toBe('ok');
  });

  it('ListUsers pages with offset/limit and reports the total', async () => {
    const users = clientFor(UserService, 'grpc', srv.url);
    const orgs = clientFor(OrganizationService, 'grpc', srv.url);
    const { organizationId } = await orgs.addOrganization({ name: 'Paging Inc' }, bearer(srv.admin));
    for (let i = 0; i < 5; i++) {
      await users.addHumanUser(
        {
          username: `page-${i}`,
          organization: { org: { case: 'orgId', value: organizationId } },
          profile: { givenName: 'P', familyName: `${i}` },
          email: { email: `page${i}@example.com` },
        },
        bearer(srv.admin),
      );
    }
    const q = { queries: [{ query: { case: 'organizationIdQuery' as const, value: { organizationId } } }] };
    const p1 = await users.listUsers({ ...q, query: { limit: 2, asc: true } }, bearer(srv.admin));
    const p3 = await users.listUsers({ ...q, query: { limit: 2, offset: 4n, asc: true } }, bearer(srv.admin));
    expect(p1.details?.totalResult).toBe(5n);
    expect(p1.result.map((u) => u.username)).toEqual(['page-0', 'page-1']);
    expect(p3.result.map((u) => u.username)).toEqual(['page-4']);
    const desc = await users.listUsers({ ...q, query: { limit: 1 } }, bearer(srv.admin));
    expect(desc.result[0]?.username).toBe('page-4');
  });

  it('a default organization exists and AddHumanUser puts users there by default', async () => {
    const orgs = clientFor(OrganizationService, 'connect', srv.url);
    const list = await orgs.listOrganizations({}, bearer(srv.admin));
    const def = list.result.find((o) => o.isDefault);
    expect(def).toBeTruthy();
    const users = clientFor(UserService, 'connect', srv.url);
    const u = await users.addHumanUser({ username: 'in-default', profile: { givenName: 'D', familyName: 'D' }, email: { email: 'd@example.com' } }, bearer(srv.admin));
    expect(u.details?.resourceOwner).toBe(def!.id);
  });
});
