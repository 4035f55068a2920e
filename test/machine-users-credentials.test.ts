/**
 * A machine user's credentials are refused as soon as they should be, with UNAUTHENTICATED (HTTP 401)
 * over REST and gRPC (@grpc/grpc-js): a removed PAT, an expired PAT, every credential of a deactivated
 * machine user (and all of them again after ReactivateUser), and of a deleted one. The token endpoint
 * refuses a deactivated or deleted user's key (400 invalid_grant) and secret (401 invalid_client).
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { jsonClient, type CallResult, type JsonClient } from './helpers/four-clients.js';
import {
  accessTokenOf,
  accessTokenWithKey,
  addKey,
  addPat,
  clientCredentials,
  createMachineUser,
  exchangeAssertion,
  grant,
  pollUntil,
  restOk,
  signAssertion,
  type KeyFile,
} from './helpers/machine.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const U = UserService.method;

const srv = useTestServer();
let org: string;
let rest: JsonClient;
let grpc: JsonClient;

beforeAll(async () => {
  org = await defaultOrgId(srv.app.store.db);
  rest = jsonClient('rest', srv.url);
  grpc = jsonClient('grpc-js', srv.url);
});
afterAll(() => {
  rest?.close();
  grpc?.close();
});

/** The outcome of ListUsers with a credential, over REST (with its HTTP status) and over gRPC. */
async function listUsersWith(token: string): Promise<{ rest: string; grpc: string }> {
  const name = (r: CallResult) => (r.ok ? 'ok' : `${Code[r.code]}${r.httpStatus ? ` ${r.httpStatus}` : ''}`);
  const [a, b] = await Promise.all([rest.call(U.listUsers, {}, token), grpc.call(U.listUsers, {}, token)]);
  return { rest: name(a), grpc: name(b) };
}
const ALLOWED = { rest: 'ok', grpc: 'ok' };
const UNAUTHENTICATED = { rest: 'Unauthenticated 401', grpc: 'Unauthenticated' };

/** Polls every 50 ms until both protocols answer `want`; asserts they did within one second. */
async function becomesWithinASecond(token: string, want: { rest: string; grpc: string }): Promise<void> {
  const { result, elapsed } = await pollUntil(
    () => listUsersWith(token),
    (r) => r.rest === want.rest && r.grpc === want.grpc,
  );
  expect(result).toEqual(want);
  expect(elapsed).toBeLessThan(1000);
}

/** A machine user with org_admin, a PAT, a key file, a client secret and an access token from each. */
async function fullyEquippedMachine(prefix: string) {
  const user = await createMachineUser(srv.url, srv.admin, org, prefix);
  await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
  const pat = await addPat(srv.url, srv.admin, user.id);
  const { keyFile } = await addKey(srv.url, srv.admin, user.id);
  const { clientSecret } = await restOk(srv.url, 'POST', `/v2/users/${user.id}/secret`, {}, srv.admin);
  return { ...user, pat, keyFile: keyFile as KeyFile, clientSecret: clientSecret as string };
}
type Machine = Awaited<ReturnType<typeof fullyEquippedMachine>>;
const assertionOf = (m: Machine) => signAssertion({ alg: 'RS256', key: m.keyFile.key, keyId: m.keyFile.keyId, userId: m.id, audience: srv.config.issuer });

describe(`machine credentials refused (${BACKEND})`, () => {
  it('a removed PAT is UNAUTHENTICATED (401) on the next call', async () => {
    const user = await createMachineUser(srv.url, srv.admin, org, 'removed-pat');
    await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
    const pat = await addPat(srv.url, srv.admin, user.id);
    const other = await addPat(srv.url, srv.admin, user.id);
    await becomesWithinASecond(pat.token, ALLOWED);
    await restOk(srv.url, 'DELETE', `/v2/users/${user.id}/pats/${pat.tokenId}`, undefined, srv.admin);
    await becomesWithinASecond(pat.token, UNAUTHENTICATED);
    // Only that one: the user's other PAT still works.
    expect(await listUsersWith(other.token)).toEqual(ALLOWED);
    // Removing it again: NOT_FOUND.
    const again = await rest.call(U.removePersonalAccessToken, { userId: user.id, tokenId: pat.tokenId }, srv.admin);
    expect(again.ok ? 'ok' : Code[again.code]).toBe('NotFound');
  });

  it('a PAT is UNAUTHENTICATED (401) once it expires', async () => {
    const user = await createMachineUser(srv.url, srv.admin, org, 'expiring-pat');
    await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
    const pat = await addPat(srv.url, srv.admin, user.id, 2);
    const expiresAt = Date.now() + 2000;
    expect(await listUsersWith(pat.token)).toEqual(ALLOWED);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 100));
    expect(await listUsersWith(pat.token)).toEqual(UNAUTHENTICATED);
    // A forged or mangled PAT reads the same.
    expect(await listUsersWith(`${pat.token.slice(0, -2)}xx`)).toEqual(UNAUTHENTICATED);
    expect(await listUsersWith('pat_nosuchtoken_secret')).toEqual(UNAUTHENTICATED);
  });

  it('DeactivateUser refuses its PAT (401) until ReactivateUser', async () => {
    const user = await createMachineUser(srv.url, srv.admin, org, 'deactivated-pat');
    await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
    const pat = await addPat(srv.url, srv.admin, user.id);
    expect(await listUsersWith(pat.token)).toEqual(ALLOWED);
    const deactivated = await rest.call(U.deactivateUser, { userId: user.id }, srv.admin);
    expect(deactivated.ok, JSON.stringify(deactivated)).toBe(true);
    await becomesWithinASecond(pat.token, UNAUTHENTICATED);
    const got = await grpc.call(U.getUserByID, { userId: user.id }, srv.admin);
    expect(got.ok && (got.json.user as { state: string }).state).toBe('USER_STATE_INACTIVE');
    // Deactivating twice: FAILED_PRECONDITION.
    const twice = await grpc.call(U.deactivateUser, { userId: user.id }, srv.admin);
    expect(twice.ok ? 'ok' : Code[twice.code]).toBe('FailedPrecondition');
    const reactivated = await grpc.call(U.reactivateUser, { userId: user.id }, srv.admin);
    expect(reactivated.ok, JSON.stringify(reactivated)).toBe(true);
    await becomesWithinASecond(pat.token, ALLOWED);
  });

  it('DeactivateUser refuses its access tokens and the token endpoint; ReactivateUser lets them work again', async () => {
    const m = await fullyEquippedMachine('deactivated');
    const keyToken = await accessTokenWithKey(srv.url, { alg: 'RS256', key: m.keyFile.key, keyId: m.keyFile.keyId, userId: m.id, audience: srv.config.issuer });
    const secretToken = await accessTokenOf(clientCredentials(srv.url, m.username, m.clientSecret));
    for (const t of [keyToken, secretToken]) expect(await listUsersWith(t)).toEqual(ALLOWED);

    await restOk(srv.url, 'POST', `/v2/users/${m.id}/deactivate`, {}, srv.admin);
    for (const t of [keyToken, secretToken]) await becomesWithinASecond(t, UNAUTHENTICATED);
    const byKey = await exchangeAssertion(srv.url, await assertionOf(m));
    expect({ status: byKey.status, error: byKey.json?.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const bySecret = await clientCredentials(srv.url, m.username, m.clientSecret);
    expect({ status: bySecret.status, error: bySecret.json?.error }).toEqual({ status: 401, error: 'invalid_client' });

    await restOk(srv.url, 'POST', `/v2/users/${m.id}/reactivate`, {}, srv.admin);
    for (const t of [keyToken, secretToken]) await becomesWithinASecond(t, ALLOWED);
    expect(await listUsersWith(await accessTokenOf(exchangeAssertion(srv.url, await assertionOf(m))))).toEqual(ALLOWED);
    expect(await listUsersWith(await accessTokenOf(clientCredentials(srv.url, m.username, m.clientSecret)))).toEqual(ALLOWED);
  });

  it("a deleted machine user's PAT is UNAUTHENTICATED (401)", async () => {
    const user = await createMachineUser(srv.url, srv.admin, org, 'deleted-pat');
    await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
    const pat = await addPat(srv.url, srv.admin, user.id);
    expect(await listUsersWith(pat.token)).toEqual(ALLOWED);
    await restOk(srv.url, 'DELETE', `/v2/users/${user.id}`, undefined, srv.admin);
    await becomesWithinASecond(pat.token, UNAUTHENTICATED);
  });

  it("a deleted machine user's access tokens are UNAUTHENTICATED, and its key and secret buy no new token", async () => {
    const m = await fullyEquippedMachine('deleted');
    const keyToken = await accessTokenWithKey(srv.url, { alg: 'RS256', key: m.keyFile.key, keyId: m.keyFile.keyId, userId: m.id, audience: srv.config.issuer });
    const secretToken = await accessTokenOf(clientCredentials(srv.url, m.username, m.clientSecret));
    for (const t of [keyToken, secretToken]) expect(await listUsersWith(t)).toEqual(ALLOWED);

    await restOk(srv.url, 'DELETE', `/v2/users/${m.id}`, undefined, srv.admin);
    for (const t of [keyToken, secretToken]) await becomesWithinASecond(t, UNAUTHENTICATED);
    const byKey = await exchangeAssertion(srv.url, await assertionOf(m));
    expect({ status: byKey.status, error: byKey.json?.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const bySecret = await clientCredentials(srv.url, m.username, m.clientSecret);
    expect({ status: bySecret.status, error: bySecret.json?.error }).toEqual({ status: 401, error: 'invalid_client' });
  });

  it('a PAT sent without the Bearer scheme authenticates nobody (401)', async () => {
    const user = await createMachineUser(srv.url, srv.admin, org, 'pat-shape');
    await grant(srv.url, srv.admin, user.id, ['org_admin'], org);
    const pat = await addPat(srv.url, srv.admin, user.id);
    const res = await fetch(`${srv.url}/v2/users`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: pat.token }, body: '{}' });
    expect(res.status).toBe(401);
  });
});
