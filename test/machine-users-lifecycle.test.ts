/**
 * A machine user's whole life over each of four real clients (@grpc/grpc-js with the .proto files,
 * connect-web's gRPC-web transport, Connect JSON, and REST on ZITADEL's paths): CreateUser with `machine`,
 * a role (CreateAdministrator org_admin), keys (a public key made here, and a pair passkeyd generates) for
 * the JWT profile exchanged at /oauth/v2/token, a personal access token, a client secret for
 * client_credentials, introspection, and each credential's removal refusing what it issued. Every
 * credential is used as a Bearer token on the same client the admin used.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InternalPermissionService } from '../gen/passkeyd/internal_permission/v2/internal_permission_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { CLIENTS, jsonClient, type CallResult, type JsonClient } from './helpers/four-clients.js';
import {
  accessTokenOf,
  accessTokenWithKey,
  clientCredentials,
  createMachineUser,
  exchangeAssertion,
  generateTestKey,
  inSeconds,
  introspect,
  parseKeyFile,
  pollUntil,
  restOk,
  signAssertion,
  uniqueName,
} from './helpers/machine.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const U = UserService.method;
const P = InternalPermissionService.method;

const srv = useTestServer();
let org: string;
/** A resource server: a machine user with a client secret that introspects the others' tokens. */
let resourceServer: { username: string; secret: string };

beforeAll(async () => {
  org = await defaultOrgId(srv.app.store.db);
  const rs = await createMachineUser(srv.url, srv.admin, org, 'resource-server');
  const { clientSecret } = await restOk(srv.url, 'POST', `/v2/users/${rs.id}/secret`, {}, srv.admin);
  resourceServer = { username: rs.username, secret: clientSecret };
});

/** The JSON of a successful call; fails the test with the code and message otherwise. */
function okJson(r: CallResult, what: string): any {
  if (!r.ok) throw new Error(`${what} failed with ${Code[r.code]}: ${r.message}`);
  return r.json;
}

/** Polls `call` every 50 ms until it ends with `code`; asserts it did within one second. */
async function refusedWithinASecond(call: () => Promise<CallResult>, code: Code): Promise<void> {
  const { result, elapsed } = await pollUntil(call, (r) => !r.ok && r.code === code);
  expect(result.ok ? 'ok' : Code[result.code]).toBe(Code[code]);
  expect(elapsed).toBeLessThan(1000);
}

describe.each(CLIENTS)(`a machine user's life over %s (${BACKEND})`, (clientName) => {
  let c: JsonClient;
  let machine: { id: string; username: string };
  const listUsers = (token: string) => c.call(U.listUsers, { queries: [{ typeQuery: { type: 'TYPE_MACHINE' } }] }, token);
  const listsItself = (r: CallResult) => r.ok && (r.json.result as JsonObject[]).some((u) => u.userId === machine.id);

  beforeAll(() => {
    c = jsonClient(clientName, srv.url);
  });
  afterAll(() => c?.close());

  it('CreateUser with `machine`, GetUserByID and ListUsers by type show it; CreateAdministrator grants org_admin', async () => {
    const username = uniqueName(`svc-${clientName}`);
    const created = okJson(
      await c.call(U.createUser, { organizationId: org, username, machine: { name: `Billing (${clientName})`, description: 'nightly invoices' } }, srv.admin),
      'CreateUser',
    );
    expect(created).toMatchObject({ id: expect.any(String), creationDate: expect.any(String), details: { sequence: '1', resourceOwner: org } });
    machine = { id: created.id, username };

    const got = okJson(await c.call(U.getUserByID, { userId: machine.id }, srv.admin), 'GetUserByID');
    expect(got.user).toMatchObject({ userId: machine.id, username, state: 'USER_STATE_ACTIVE', machine: { name: `Billing (${clientName})`, description: 'nightly invoices' } });
    expect(got.user.machine.hasSecret ?? false).toBe(false);
    expect(got.user.human).toBeUndefined();
    const machines = okJson(await listUsers(srv.admin), 'ListUsers');
    expect(machines.result.map((u: JsonObject) => u.userId)).toContain(machine.id);
    expect(machines.result.every((u: JsonObject) => u.machine !== undefined)).toBe(true);

    // No role yet: its PAT authenticates, but ListUsers is an org admin's (PERMISSION_DENIED) until granted.
    const pat = okJson(await c.call(U.addPersonalAccessToken, { userId: machine.id, expirationDate: inSeconds(600) }, srv.admin), 'AddPersonalAccessToken');
    const before = await listUsers(pat.token);
    expect(before.ok ? 'ok' : Code[before.code]).toBe('PermissionDenied');
    okJson(await c.call(P.createAdministrator, { userId: machine.id, resource: { organizationId: org }, roles: ['org_admin'] }, srv.admin), 'CreateAdministrator');
    const granted = await pollUntil(() => listUsers(pat.token), listsItself);
    expect(listsItself(granted.result)).toBe(true);
    expect(granted.elapsed).toBeLessThan(1000);
    okJson(await c.call(U.removePersonalAccessToken, { userId: machine.id, tokenId: pat.tokenId }, srv.admin), 'RemovePersonalAccessToken');
    const admins = okJson(await c.call(P.listAdministrators, { filters: [{ userId: { id: machine.id } }] }, srv.admin), 'ListAdministrators');
    expect(admins.administrators).toEqual([expect.objectContaining({ userId: machine.id, resource: { organizationId: org }, roles: ['org_admin'], userOrganizationId: org })]);
  });

  it('keys: a supplied EC P-256 public key and a generated RSA pair, each exchanged for an access token that calls ListUsers', async () => {
    const ec = generateTestKey('ES256');
    const supplied = okJson(
      await c.call(U.addKey, { userId: machine.id, expirationDate: inSeconds(86400), publicKey: Buffer.from(ec.publicPem).toString('base64') }, srv.admin),
      'AddKey (supplied)',
    );
    expect(supplied.keyId).toEqual(expect.any(String));
    expect(supplied.keyContent).toBeUndefined(); // passkeyd never had the private key
    const generated = okJson(await c.call(U.addKey, { userId: machine.id, expirationDate: inSeconds(86400) }, srv.admin), 'AddKey (generated)');
    const file = parseKeyFile(generated.keyContent);
    // ZITADEL's key file, with its expirationDate.
    expect(file).toEqual({
      type: 'serviceaccount',
      keyId: generated.keyId,
      key: expect.stringContaining('-----BEGIN PRIVATE KEY-----'),
      userId: machine.id,
      expirationDate: expect.any(String),
    });

    const keys = okJson(await c.call(U.listKeys, { filters: [{ userIdFilter: { id: machine.id } }] }, srv.admin), 'ListKeys');
    expect(keys.result.map((k: JsonObject) => [k.id, k.algorithm]).sort()).toEqual(
      [
        [supplied.keyId, 'ES256'],
        [generated.keyId, 'RS256'],
      ].sort(),
    );
    expect(JSON.stringify(keys)).not.toContain('BEGIN');

    const audience = srv.config.issuer;
    for (const [alg, key, keyId] of [
      ['ES256', ec.privateKey, supplied.keyId],
      ['RS256', file.key, generated.keyId],
    ] as const) {
      const exchanged = await exchangeAssertion(srv.url, await signAssertion({ alg, key, keyId, userId: machine.id, audience }));
      expect(exchanged.status, JSON.stringify(exchanged.json)).toBe(200);
      expect(exchanged.json).toMatchObject({ access_token: expect.any(String), token_type: 'Bearer', expires_in: expect.any(Number) });
      const claims = decodeJwt(exchanged.json.access_token);
      expect(claims).toMatchObject({ sub: machine.id, org, iss: srv.config.issuer, cid: `key:${keyId}` });
      expect(claims.sid).toBeUndefined();
      expect(listsItself(await listUsers(exchanged.json.access_token)), `${alg} token calls ListUsers`).toBe(true);
    }

    // RemoveKey: the tokens it issued and the next exchange are refused.
    const token = await accessTokenWithKey(srv.url, { alg: 'ES256', key: ec.privateKey, keyId: supplied.keyId, userId: machine.id, audience });
    okJson(await c.call(U.removeKey, { userId: machine.id, keyId: supplied.keyId }, srv.admin), 'RemoveKey');
    await refusedWithinASecond(() => listUsers(token), Code.Unauthenticated);
    const again = await exchangeAssertion(srv.url, await signAssertion({ alg: 'ES256', key: ec.privateKey, keyId: supplied.keyId, userId: machine.id, audience }));
    expect({ status: again.status, error: again.json?.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const left = okJson(await c.call(U.listKeys, { filters: [{ userIdFilter: { id: machine.id } }] }, srv.admin), 'ListKeys');
    expect(left.result.map((k: JsonObject) => k.id)).toEqual([generated.keyId]);
  });

  it('a personal access token calls ListUsers until it is removed', async () => {
    const added = okJson(await c.call(U.addPersonalAccessToken, { userId: machine.id, expirationDate: inSeconds(3600) }, srv.admin), 'AddPersonalAccessToken');
    expect(added).toMatchObject({ tokenId: expect.any(String), token: expect.stringMatching(/^pat_/), creationDate: expect.any(String) });
    const pats = okJson(await c.call(U.listPersonalAccessTokens, { filters: [{ userIdFilter: { id: machine.id } }] }, srv.admin), 'ListPersonalAccessTokens');
    expect(pats.result).toEqual([expect.objectContaining({ id: added.tokenId, userId: machine.id, organizationId: org })]);
    expect(JSON.stringify(pats)).not.toContain(added.token);

    expect(listsItself(await listUsers(added.token))).toBe(true);
    okJson(await c.call(U.removePersonalAccessToken, { userId: machine.id, tokenId: added.tokenId }, srv.admin), 'RemovePersonalAccessToken');
    await refusedWithinASecond(() => listUsers(added.token), Code.Unauthenticated);
  });

  it('a client secret: client_credentials → ListUsers; introspection says active until RemoveSecret', async () => {
    const { clientSecret } = okJson(await c.call(U.addSecret, { userId: machine.id }, srv.admin), 'AddSecret');
    expect(clientSecret).toEqual(expect.any(String));
    const got = okJson(await c.call(U.getUserByID, { userId: machine.id }, srv.admin), 'GetUserByID');
    expect(got.user.machine.hasSecret).toBe(true);

    const token = await accessTokenOf(clientCredentials(srv.url, machine.username, clientSecret));
    expect(decodeJwt(token)).toMatchObject({ sub: machine.id, cid: expect.stringMatching(/^secret:/) });
    expect(listsItself(await listUsers(token))).toBe(true);
    const live = await introspect(srv.url, token, resourceServer);
    expect(live.status, JSON.stringify(live.json)).toBe(200);
    expect(live.json).toMatchObject({ active: true, sub: machine.id });

    okJson(await c.call(U.removeSecret, { userId: machine.id }, srv.admin), 'RemoveSecret');
    await refusedWithinASecond(() => listUsers(token), Code.Unauthenticated);
    expect((await introspect(srv.url, token, resourceServer)).json).toEqual({ active: false });
    const refused = await clientCredentials(srv.url, machine.username, clientSecret);
    expect({ status: refused.status, error: refused.json?.error }).toEqual({ status: 401, error: 'invalid_client' });
    expect(okJson(await c.call(U.getUserByID, { userId: machine.id }, srv.admin), 'GetUserByID').user.machine.hasSecret ?? false).toBe(false);
  });

  it('DeleteAdministrator takes the role away; DeleteUser ends the machine user and its keys', async () => {
    const pat = okJson(await c.call(U.addPersonalAccessToken, { userId: machine.id, expirationDate: inSeconds(3600) }, srv.admin), 'AddPersonalAccessToken');
    expect(listsItself(await listUsers(pat.token))).toBe(true);
    okJson(await c.call(P.deleteAdministrator, { userId: machine.id, resource: { organizationId: org } }, srv.admin), 'DeleteAdministrator');
    await refusedWithinASecond(() => listUsers(pat.token), Code.PermissionDenied);
    const none = okJson(await c.call(P.listAdministrators, { filters: [{ userId: { id: machine.id } }] }, srv.admin), 'ListAdministrators');
    expect(none.administrators ?? []).toEqual([]);

    okJson(await c.call(U.deleteUser, { userId: machine.id }, srv.admin), 'DeleteUser');
    await refusedWithinASecond(() => listUsers(pat.token), Code.Unauthenticated);
    const gone = await c.call(U.getUserByID, { userId: machine.id }, srv.admin);
    expect(gone.ok ? 'ok' : Code[gone.code]).toBe('NotFound');
    const after = okJson(await c.call(U.listKeys, { filters: [{ userIdFilter: { id: machine.id } }] }, srv.admin), 'ListKeys');
    expect(after.result ?? []).toEqual([]);
  });
});
