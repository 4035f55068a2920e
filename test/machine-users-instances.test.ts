/**
 * Revocation across instances: two passkeyd instances share one PostgreSQL schema. A role, PAT or key
 * revoked through instance A is refused by instance B within one second, although B had just accepted
 * it (and so holds it in its half-second lookup cache). B is polled every 50 ms from the moment A's
 * revoking call returned. PostgreSQL only: PGlite is one process by construction.
 */
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { bearer, clientFor, type Protocol } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import {
  accessTokenOf,
  accessTokenWithKey,
  addKey,
  clientCredentials,
  addPat,
  createMachineUser,
  exchangeAssertion,
  grant,
  pollUntil,
  restOk,
  signAssertion,
} from './helpers/machine.js';
import { BACKEND, useTestServer } from './helpers/server.js';

describe.skipIf(BACKEND !== 'postgres')('revocation on one instance reaches the other within a second (postgres)', () => {
  const a = useTestServer();
  const b = useTestServer(() => ({ schema: a.schema }));

  /** ListUsers on instance B with a credential: 'ok' or the gRPC code. */
  const onB = (token: string, protocol: Protocol = 'grpc') => codeOf(clientFor(UserService, protocol, b.url).listUsers({}, bearer(token)));

  /** Polls B every 50 ms until it answers `code`; asserts that took under a second. */
  async function refusedOnBWithinASecond(token: string, code: Code, protocol: Protocol = 'grpc'): Promise<number> {
    const { result, elapsed } = await pollUntil(
      () => onB(token, protocol),
      (r) => r === code,
      { intervalMs: 50, timeoutMs: 3000 },
    );
    expect(result === 'ok' ? 'ok' : Code[result]).toBe(Code[code]);
    expect(elapsed).toBeLessThan(1000);
    return elapsed;
  }

  /** A machine user of the default organization with org_admin, and a PAT, made through instance A. */
  async function orgAdminMachine(prefix: string) {
    const org = await defaultOrgId(a.app.store.db);
    const user = await createMachineUser(a.url, a.admin, org, prefix);
    await grant(a.url, a.admin, user.id, ['org_admin'], org);
    const pat = await addPat(a.url, a.admin, user.id);
    // B sees the grant (its cache may hold the user's earlier "no roles" for up to half a second).
    const seen = await pollUntil(
      () => onB(pat.token),
      (r) => r === 'ok',
    );
    expect(seen.result).toBe('ok');
    return { org, ...user, pat };
  }

  it('DeleteAdministrator on A: B refuses the role (PERMISSION_DENIED) within a second', async () => {
    const m = await orgAdminMachine('role-revoked');
    expect(await onB(m.pat.token)).toBe('ok'); // cached on B now
    await restOk(a.url, 'DELETE', `/v2/administrators/${m.id}`, { resource: { organizationId: m.org } }, a.admin);
    await refusedOnBWithinASecond(m.pat.token, Code.PermissionDenied);
    // And UpdateAdministrator down to session_manager, likewise.
    const m2 = await orgAdminMachine('role-downgraded');
    expect(await onB(m2.pat.token, 'connect')).toBe('ok');
    await restOk(a.url, 'PATCH', `/v2/administrators/${m2.id}`, { resource: { organizationId: m2.org }, roles: ['session_manager'] }, a.admin);
    await refusedOnBWithinASecond(m2.pat.token, Code.PermissionDenied, 'connect');
  });

  it('RemovePersonalAccessToken on A: B refuses the PAT (UNAUTHENTICATED) within a second', async () => {
    const m = await orgAdminMachine('pat-removed');
    expect(await onB(m.pat.token)).toBe('ok');
    await restOk(a.url, 'DELETE', `/v2/users/${m.id}/pats/${m.pat.tokenId}`, undefined, a.admin);
    await refusedOnBWithinASecond(m.pat.token, Code.Unauthenticated);
  });

  it('DeactivateUser on A: B refuses its PAT within a second', async () => {
    const m = await orgAdminMachine('deactivated');
    expect(await onB(m.pat.token)).toBe('ok');
    await restOk(a.url, 'POST', `/v2/users/${m.id}/deactivate`, {}, a.admin);
    await refusedOnBWithinASecond(m.pat.token, Code.Unauthenticated);
  });

  it('RemoveKey on A: B refuses the access token exchanged with that key within a second, and B will not exchange it again', async () => {
    const m = await orgAdminMachine('key-removed');
    const { keyId, keyFile } = await addKey(a.url, a.admin, m.id);
    const assertion = { alg: 'RS256' as const, key: keyFile!.key, keyId, userId: m.id, audience: b.config.issuer };
    // Exchanged on A, used on B: a token from either instance is good on both.
    const token = await accessTokenWithKey(a.url, assertion);
    expect(await onB(token)).toBe('ok');
    await restOk(a.url, 'DELETE', `/v2/users/${m.id}/keys/${keyId}`, undefined, a.admin);
    await refusedOnBWithinASecond(token, Code.Unauthenticated);
    const again = await exchangeAssertion(b.url, await signAssertion(assertion));
    expect({ status: again.status, error: again.json?.error }).toEqual({ status: 400, error: 'invalid_grant' });
  });

  it('RemoveSecret on A: B refuses the client_credentials token within a second', async () => {
    const m = await orgAdminMachine('secret-removed');
    const { clientSecret } = await restOk(a.url, 'POST', `/v2/users/${m.id}/secret`, {}, a.admin);
    // Exchanged on A, used on B.
    const token = await accessTokenOf(clientCredentials(a.url, m.username, clientSecret));
    expect(await onB(token)).toBe('ok');
    await restOk(a.url, 'DELETE', `/v2/users/${m.id}/secret`, undefined, a.admin);
    await refusedOnBWithinASecond(token, Code.Unauthenticated);
  });
});
