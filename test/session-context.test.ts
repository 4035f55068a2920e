/**
 * Sessions with their context (issue 13), as ZITADEL's login app sends them: user agent, lifetime and
 * metadata on CreateSession and SetSession, ZITADEL's ListSessions queries, and the status codes, over
 * REST (ZITADEL's JSON shapes) and over gRPC and Connect (the generated clients).
 */
import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import { TimestampQueryMethod } from '../gen/passkeyd/object/v2/object_pb.js';
import { SessionFieldName } from '../gen/passkeyd/session/v2/session_pb.js';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf, requestOptionsOf } from './helpers/login.js';
import { createUser, DEFAULT_ORIGIN, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';
import { DurationSchema, timestampFromDate } from '@bufbuild/protobuf/wkt';

const srv = useTestServer();

interface Reply {
  status: number;
  json: any;
}

async function rest(method: string, path: string, body?: unknown, token?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(srv.url + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A JWT's claims, read without verifying it. */
const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { exp: number };

/** The user agent ZITADEL's login app forwards (with headers that must never be stored). */
const LOGIN_APP_USER_AGENT = {
  fingerprintId: 'fp-device-1',
  ip: '203.0.113.7',
  description: 'Firefox 140 on Linux',
  header: { 'accept-language': { values: ['en-GB', 'en'] }, Authorization: { values: ['Bearer secret'] }, cookie: { values: ['sid=secret'] } },
};

async function eventsOf(aggregateId: string): Promise<{ event_type: string; payload: any; creator: string }[]> {
  return srv.app.store.db.selectFrom('events').select(['event_type', 'payload', 'creator']).where('aggregate_id', '=', aggregateId).orderBy('sequence').execute();
}

function subjectOf(jwt: string): string {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).sub;
}

describe(`session context over REST with ZITADEL's request bodies (${BACKEND})`, () => {
  it('CreateSession (201), SetSession, GetSession, ListSessions, DeleteSession and an admin RemovePasskey', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator, passkeyId } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const before = Date.now();
    const created = await rest('POST', '/v2/sessions', {
      checks: { user: { userId } },
      challenges: { webAuthN: { domain: 'localhost', userVerificationRequirement: 'USER_VERIFICATION_REQUIREMENT_REQUIRED' } },
      userAgent: LOGIN_APP_USER_AGENT,
      lifetime: '18000s',
      metadata: { tenant: b64('acme'), step: b64('1') },
    });
    expect(created.status).toBe(201);
    const sessionId = created.json.sessionId as string;
    const assertion = await authenticator.authenticate(requestOptionsOf(created.json.challenges.webAuthN.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
    const set = await rest('PATCH', `/v2/sessions/${sessionId}`, {
      sessionToken: created.json.sessionToken,
      checks: { webAuthN: { credentialAssertionData: assertion } },
      lifetime: '3600s',
      metadata: { step: b64('2'), tenant: '' },
    });
    expect(set.status).toBe(200);
    expect(set.json.accessToken).toMatch(/^ey/);
    const got = await rest('GET', `/v2/sessions/${sessionId}?sessionToken=${encodeURIComponent(set.json.sessionToken)}`);
    expect(got.status).toBe(200);
    const s = got.json.session;
    expect(s.userAgent).toEqual({
      fingerprintId: 'fp-device-1',
      ip: '203.0.113.7',
      description: 'Firefox 140 on Linux',
      header: { 'accept-language': { values: ['en-GB', 'en'] } },
    });
    // The empty value deleted "tenant"; "step" was replaced.
    expect(s.metadata).toEqual({ step: b64('2') });
    const expires = Date.parse(s.expirationDate);
    expect(expires).toBeGreaterThan(before + 3500_000);
    expect(expires).toBeLessThan(Date.now() + 3601_000);
    expect(s.creationDate).toMatch(/Z$/);
    expect(s.changeDate).toMatch(/Z$/);
    expect(Number(s.sequence)).toBeGreaterThanOrEqual(3);

    const events = await eventsOf(sessionId);
    const added = events.find((e) => e.event_type === 'session.added')!;
    expect(added.payload.user_agent).toEqual({
      fingerprintId: 'fp-device-1',
      ip: '203.0.113.7',
      description: 'Firefox 140 on Linux',
      header: { 'accept-language': ['en-GB', 'en'] },
    });
    expect(JSON.stringify(events)).not.toMatch(/secret/);
    expect(added.payload.metadata_keys).toEqual(['tenant', 'step']);
    expect(events.find((e) => e.event_type === 'session.lifetime.set')?.payload.lifetime_seconds).toBe(3600);
    expect(events.find((e) => e.event_type === 'session.metadata.set')?.payload).toEqual({ set: ['step'], deleted: ['tenant'] });

    const search = (queries: unknown[], token: string) =>
      rest('POST', '/v2/sessions/search', { query: { offset: '0', limit: 10, asc: true }, queries, sortingColumn: 'SESSION_FIELD_NAME_CREATION_DATE' }, token);
    const mine = await search(
      [
        { userAgentQuery: { fingerprintId: 'fp-device-1' } },
        { creationDateQuery: { creationDate: new Date(before - 60_000).toISOString(), method: 'TIMESTAMP_QUERY_METHOD_GREATER' } },
      ],
      set.json.accessToken,
    );
    expect(mine.status).toBe(200);
    expect(mine.json.sessions.map((x: { id: string }) => x.id)).toEqual([sessionId]);
    expect((await search([{ userAgentQuery: { fingerprintId: 'another-device' } }], set.json.accessToken)).json.sessions ?? []).toEqual([]);
    expect(
      (await search([{ creationDateQuery: { creationDate: new Date(before - 60_000).toISOString(), method: 'TIMESTAMP_QUERY_METHOD_LESS' } }], set.json.accessToken)).json
        .sessions ?? [],
    ).toEqual([]);
    // creatorQuery without an id: the sessions the caller opened (this one was opened anonymously).
    expect((await search([{ creatorQuery: {} }], set.json.accessToken)).json.sessions ?? []).toEqual([]);
    expect((await search([{ creatorQuery: { id: 'anonymous' } }, { idsQuery: { ids: [sessionId] } }], srv.admin)).json.sessions).toHaveLength(1);

    expect((await rest('DELETE', `/v2/sessions/${sessionId}`, {}, set.json.accessToken)).status).toBe(200);
    expect((await rest('GET', `/v2/users/${userId}`, undefined, set.json.accessToken)).status).toBe(401);

    // An admin resets the user's passkey as ZITADEL's API does it: no force field.
    const removed = await rest('DELETE', `/v2/users/${userId}/passkeys/${passkeyId}`, undefined, srv.admin);
    expect(removed.status).toBe(200);
    const event = (await eventsOf(userId)).find((e) => e.event_type === 'user.passkey.removed')!;
    expect(event.payload).toMatchObject({ passkey_id: passkeyId, forced: true, removed_by: subjectOf(srv.admin), self_service: false });
    expect(event.creator).toBe(subjectOf(srv.admin));
  });

  it("without a user agent the request's own is recorded (User-Agent header, client address)", async () => {
    const created = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} } }, undefined, { 'user-agent': 'TestBrowser/1.0 (passkeyd tests)' });
    expect(created.status).toBe(201);
    const got = await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(created.json.sessionToken)}`);
    expect(got.json.session.userAgent.description).toBe('TestBrowser/1.0 (passkeyd tests)');
    expect(got.json.session.userAgent.ip).toMatch(/127\.0\.0\.1|::1/);
    expect(got.json.session.userAgent.header).toBeUndefined();
  });

  it('a lifetime above the maximum (PASSKEYD_SESSION_TTL) or not positive is INVALID_ARGUMENT, on CreateSession and SetSession', async () => {
    const max = srv.config.sessionTtlSeconds;
    for (const lifetime of [`${max + 1}s`, '0s', '-5s']) {
      const r = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} }, lifetime });
      expect(r.status, lifetime).toBe(400);
      expect(r.json.code).toBe(Code.InvalidArgument);
      expect(r.json.message).toMatch(/lifetime/);
    }
    const created = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} }, lifetime: `${max}s` });
    expect(created.status).toBe(201);
    const r = await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, { sessionToken: created.json.sessionToken, lifetime: `${max + 60}s` });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/lifetime: must be at most/);
  });

  it('a session with lifetime "2s" is refused everywhere once it passed, its access token too', async () => {
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const created = await rest('POST', '/v2/sessions', { checks: { user: { userId } }, challenges: { webAuthN: {} }, lifetime: '2s' });
    const assertion = await authenticator.authenticate(requestOptionsOf(created.json.challenges.webAuthN.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
    const set = await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, {
      sessionToken: created.json.sessionToken,
      checks: { webAuthN: { credentialAssertionData: assertion } },
    });
    expect(set.status).toBe(200);
    // The token ends at the session's end, in whole seconds rounded down: 0.9-1.9 s from here. (It used
    // to get a lifetime of the whole seconds left, 1, counted from the current whole second, so it could
    // die a few milliseconds after SetSession answered, and the call below got 401 now and then.)
    const session = await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(set.json.sessionToken)}`);
    const sessionEnd = Date.parse(session.json.session.expirationDate);
    expect(claimsOf(set.json.accessToken).exp).toBe(Math.floor(sessionEnd / 1000));
    expect((await rest('GET', `/v2/users/${userId}`, undefined, set.json.accessToken)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2300));
    expect((await rest('GET', `/v2/users/${userId}`, undefined, set.json.accessToken)).status).toBe(401);
    expect((await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(set.json.sessionToken)}`)).status).toBe(404);
    expect((await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, { sessionToken: set.json.sessionToken, metadata: { a: b64('b') } })).status).toBe(404);
    const listed = await rest('POST', '/v2/sessions/search', { queries: [{ idsQuery: { ids: [created.json.sessionId] } }] }, srv.admin);
    expect(listed.json.sessions ?? []).toEqual([]);
  });

  it("an access token bounded by its session's end lives until that whole second, however late in a second it is issued", async () => {
    // 10 ms before a second turns, with 1.9 s of session left: the token lives 1.01 s, to the session's
    // last whole second; with no end, its own lifetime counts.
    const issuedAt = (Math.floor(Date.now() / 1000) + 5) * 1000 + 990;
    vi.useFakeTimers({ toFake: ['Date'], now: issuedAt });
    try {
      const bounded = await srv.app.tokens.issue({ subject: 'u', orgId: 'o', sessionId: 's', ttlSeconds: 900, notAfter: new Date(issuedAt + 1900) });
      expect(bounded.expiresAt.getTime() - issuedAt).toBe(1010);
      expect(claimsOf(bounded.token).exp * 1000).toBe(bounded.expiresAt.getTime());
      const free = await srv.app.tokens.issue({ subject: 'u', orgId: 'o', sessionId: 's', ttlSeconds: 900, notAfter: new Date(issuedAt + 3600_000) });
      expect(free.expiresAt.getTime()).toBe(issuedAt - 990 + 900_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('metadata bounds: too many keys, a too-long key, a too-large value → INVALID_ARGUMENT, nothing stored', async () => {
    const countSessions = async () =>
      Number(
        (
          await srv.app.store.db
            .selectFrom('sessions')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const n = await countSessions();
    const tooMany = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, b64('v')]));
    const cases: [Record<string, string>, RegExp][] = [
      [tooMany, /metadata: must be at most 20 entries/],
      [{ ['k'.repeat(201)]: b64('v') }, /metadata: a key must be at most 200 characters/],
      [{ big: Buffer.alloc(4097, 1).toString('base64') }, /metadata\[big\]: a value must be at most 4096 bytes/],
    ];
    for (const [metadata, message] of cases) {
      const r = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} }, metadata });
      expect(r.status).toBe(400);
      expect(r.json.code).toBe(Code.InvalidArgument);
      expect(r.json.message).toMatch(message);
    }
    expect(await countSessions()).toBe(n);

    // SetSession: within the request's bounds, but more than 20 keys on the session in all.
    const created = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} }, metadata: Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`a${i}`, b64('v')])) });
    const token = created.json.sessionToken;
    for (const [metadata, message] of [...cases, [Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`b${i}`, b64('v')])), /at most 20 keys/] as const]) {
      const r = await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, { sessionToken: token, metadata });
      expect(r.status).toBe(400);
      expect(r.json.message).toMatch(message);
    }
    const got = await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(token)}`);
    expect(Object.keys(got.json.session.metadata)).toHaveLength(15);
    expect((await eventsOf(created.json.sessionId)).map((e) => e.event_type)).toEqual(['session.added']);
    // A change within the bounds is stored, with its event.
    const ok = await rest('PATCH', `/v2/sessions/${created.json.sessionId}`, { sessionToken: token, metadata: { a0: '', b0: b64('x') } });
    expect(ok.status).toBe(200);
    expect(ok.json.details.sequence).toBe('2');
    const after = await rest('GET', `/v2/sessions/${created.json.sessionId}?sessionToken=${encodeURIComponent(token)}`);
    expect(after.json.session.metadata.a0).toBeUndefined();
    expect(after.json.session.metadata.b0).toBe(b64('x'));
  });

  it('metadata: two changes at the same moment cannot together pass the 20-key bound', async () => {
    for (let round = 0; round < 4; round++) {
      const created = await rest('POST', '/v2/sessions', { challenges: { webAuthN: {} }, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`a${i}`, b64('v')])) });
      const { sessionId, sessionToken } = created.json;
      // Each adds 3 keys: either alone fits (20), both together would make 23.
      const change = (p: string) => rest('PATCH', `/v2/sessions/${sessionId}`, { sessionToken, metadata: Object.fromEntries([0, 1, 2].map((i) => [`${p}${i}`, b64('v')])) });
      const answers = await Promise.all([change('x'), change('y')]);
      expect(answers.map((a) => a.status).sort(), `round ${round}`).toEqual([200, 400]);
      expect(answers.find((a) => a.status === 400)!.json.message).toMatch(/at most 20 keys/);
      const got = await rest('GET', `/v2/sessions/${sessionId}?sessionToken=${encodeURIComponent(sessionToken)}`);
      expect(Object.keys(got.json.session.metadata)).toHaveLength(20);
      expect((await eventsOf(sessionId)).map((e) => e.event_type)).toEqual(['session.added', 'session.metadata.set']);
    }
  });
});

describe.each(['grpc', 'connect'] as const)(`session context over %s (${BACKEND})`, (protocol) => {
  it('user agent, lifetime and metadata through the generated client; ListSessions by fingerprint', async () => {
    const sessions = clientFor(SessionService, protocol, srv.url);
    const userId = await createUser(srv.url, srv.admin);
    const { authenticator } = await registerPasskey(srv.url, { userId, token: srv.admin });
    const fingerprintId = `fp-${protocol}-${Date.now()}`;
    const created = await sessions.createSession({
      checks: { user: { search: { case: 'userId', value: userId } } },
      challenges: { webAuthN: { domain: '' } },
      userAgent: { fingerprintId, description: 'Safari on iOS', header: { 'x-forwarded-for': { values: ['198.51.100.1'] } } },
      lifetime: create(DurationSchema, { seconds: 7200n }),
      metadata: { app: new TextEncoder().encode('shop') },
    });
    const assertion = await authenticator.authenticate(requestOptionsOf(created.challenges?.webAuthN?.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
    const set = await sessions.setSession({
      sessionId: created.sessionId,
      sessionToken: created.sessionToken,
      checks: { webAuthN: { credentialAssertionData: assertion as never } },
      metadata: { step: new TextEncoder().encode('done') },
    });
    const { session } = await sessions.getSession({ sessionId: created.sessionId }, bearer(set.accessToken));
    expect(session?.userAgent?.fingerprintId).toBe(fingerprintId);
    expect(session?.userAgent?.header['x-forwarded-for']?.values).toEqual(['198.51.100.1']);
    expect(new TextDecoder().decode(session?.metadata.app)).toBe('shop');
    expect(new TextDecoder().decode(session?.metadata.step)).toBe('done');
    expect(Number(session?.expirationDate?.seconds) * 1000).toBeLessThanOrEqual(Date.now() + 7200_000);
    const listed = await sessions.listSessions(
      {
        queries: [
          { query: { case: 'userAgentQuery', value: { fingerprintId } } },
          { query: { case: 'creationDateQuery', value: { creationDate: timestampFromDate(new Date(Date.now() - 60_000)), method: TimestampQueryMethod.GREATER_OR_EQUALS } } },
        ],
        sortingColumn: SessionFieldName.CREATION_DATE,
      },
      bearer(set.accessToken),
    );
    expect(listed.sessions.map((x) => x.id)).toEqual([created.sessionId]);
    // SetSession with only a lifetime: no check needed, the session token suffices.
    const longer = await sessions.setSession({ sessionId: created.sessionId, sessionToken: set.sessionToken, lifetime: create(DurationSchema, { seconds: 60n }) });
    expect(longer.details?.sequence).toBeGreaterThan(0n);
    const again = await sessions.getSession({ sessionId: created.sessionId }, bearer(set.accessToken));
    expect(Number(again.session?.expirationDate?.seconds) * 1000).toBeLessThanOrEqual(Date.now() + 61_000);
    expect(await codeOf(sessions.createSession({ challenges: { webAuthN: {} }, lifetime: create(DurationSchema, { seconds: 10n ** 7n }) }))).toBe(Code.InvalidArgument);
    await sessions.deleteSession({ sessionId: created.sessionId }, bearer(set.accessToken));
    expect(await codeOf(clientFor(UserService, protocol, srv.url).getUserByID({ userId }, bearer(set.accessToken)))).toBe(Code.Unauthenticated);
  });
});
