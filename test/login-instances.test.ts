import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { beginLogin, codeOf, finishLogin, sign } from './helpers/login.js';
import { createUser, registerPasskey } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

// Several instances share one database only on PostgreSQL; PGlite is one process by construction.
const postgres = BACKEND === 'postgres';
describe.skipIf(!postgres)('two instances on one PostgreSQL database', () => {
  const first = useTestServer();
  const second = useTestServer(() => ({ schema: first.schema }));

  it('a login begun on one instance finishes on the other; either honours the token and its logout', async () => {
    const userId = await createUser(first.url, first.admin);
    const { authenticator } = await registerPasskey(second.url, { userId, token: first.admin });
    const begun = await beginLogin(first.url, { userId, protocol: 'grpc' });
    const done = await finishLogin(second.url, begun.sessionId, await sign(authenticator, begun), { protocol: 'grpc' });
    for (const srv of [first, second]) {
      expect((await clientFor(UserService, 'connect', srv.url).getUserByID({ userId }, bearer(done.accessToken))).user?.userId).toBe(userId);
    }
    await clientFor(SessionService, 'connect', first.url).deleteSession({ sessionId: begun.sessionId }, bearer(done.accessToken));
    expect(await codeOf(clientFor(UserService, 'connect', second.url).getUserByID({ userId }, bearer(done.accessToken)))).toBe(Code.Unauthenticated);
  });

  it('the same assertion sent to both instances at once succeeds exactly once', async () => {
    const userId = await createUser(first.url, first.admin);
    // A counter that is always 0 (synced passkeys): only the single-use challenge stops the second login.
    const { authenticator } = await registerPasskey(first.url, { userId, token: first.admin, authenticator: createSoftAuthenticator({ counter: 'zero' }) });
    for (let round = 0; round < 5; round++) {
      const begun = await beginLogin(first.url, { userId });
      const assertion = await sign(authenticator, begun);
      const codes = await Promise.all([first, second].map((srv) => codeOf(finishLogin(srv.url, begun.sessionId, assertion, { protocol: 'grpc' }))));
      expect(codes.filter((c) => c === 'ok')).toHaveLength(1);
      expect(codes.filter((c) => c === Code.Unauthenticated)).toHaveLength(1);
      const checked = await first.app.store.db
        .selectFrom('events')
        .select('event_type')
        .where('aggregate_id', '=', begun.sessionId)
        .where('event_type', '=', 'session.webauthn.checked')
        .execute();
      expect(checked).toHaveLength(1);
    }
    const used = await first.app.store.db.selectFrom('events').select('event_type').where('creator', '=', userId).where('event_type', '=', 'session.webauthn.checked').execute();
    expect(used).toHaveLength(5);
  });
});
