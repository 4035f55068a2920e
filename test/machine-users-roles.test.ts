/**
 * Roles and their scopes, refused with the right code over each of four real clients: a session_manager
 * is not an admin (ListUsers → PERMISSION_DENIED); an org_admin acts on its own organization only (on
 * another organization's users → PERMISSION_DENIED); CreateAdministrator refuses a role on the wrong kind
 * of resource (INVALID_ARGUMENT) and a grant on the instance by an org admin (PERMISSION_DENIED); PATs
 * are for machine users only (a human's → FAILED_PRECONDITION). The callers are machine users holding
 * roles granted through the API, calling with their personal access tokens.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { InternalPermissionService } from '../gen/passkeyd/internal_permission/v2/internal_permission_service_pb.js';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { httpStatusOf } from '../src/errors.js';
import { bearer, clientFor } from './helpers/clients.js';
import { CLIENTS, jsonClient, type CallResult } from './helpers/four-clients.js';
import { addPat, createMachineUser, grant, inSeconds, pollUntil, uniqueName } from './helpers/machine.js';
import { createUser } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const U = UserService.method;
const P = InternalPermissionService.method;

const srv = useTestServer();

let orgA: string;
let orgB: string;
/** PATs of machine users of org A: an org_admin and a session_manager. */
let orgAdminA: string;
let sessionManagerA: string;
/** Users of org B. */
let humanB: string;
let machineB: string;
let humanA: string;

beforeAll(async () => {
  orgA = await defaultOrgId(srv.app.store.db);
  ({ organizationId: orgB } = await clientFor(OrganizationService, 'connect', srv.url).addOrganization({ name: uniqueName('org-b') }, bearer(srv.admin)));
  const admin = await createMachineUser(srv.url, srv.admin, orgA, 'org-admin-a');
  await grant(srv.url, srv.admin, admin.id, ['org_admin'], orgA);
  orgAdminA = (await addPat(srv.url, srv.admin, admin.id)).token;
  const manager = await createMachineUser(srv.url, srv.admin, orgA, 'session-manager-a');
  await grant(srv.url, srv.admin, manager.id, ['session_manager'], orgA);
  sessionManagerA = (await addPat(srv.url, srv.admin, manager.id)).token;
  humanA = await createUser(srv.url, srv.admin);
  const users = clientFor(UserService, 'connect', srv.url);
  const name = uniqueName('human-b');
  ({ userId: humanB } = await users.addHumanUser(
    { username: name, organization: { org: { case: 'orgId', value: orgB } }, profile: { givenName: 'B', familyName: name }, email: { email: `${name}@example.com` } },
    bearer(srv.admin),
  ));
  machineB = (await createMachineUser(srv.url, srv.admin, orgB, 'svc-b')).id;
  // Roles are looked up per call and cached for half a second: wait until the org admin's is seen.
  const seen = await pollUntil(
    () =>
      clientFor(UserService, 'connect', srv.url)
        .listUsers({}, bearer(orgAdminA))
        .then(
          () => true,
          () => false,
        ),
    (ok) => ok,
  );
  expect(seen.result).toBe(true);
});

/** The gRPC code name a call ended with ('ok' on success); REST and Connect must send its HTTP status. */
function outcome(r: CallResult): string {
  if (r.ok) return 'ok';
  if (r.httpStatus !== undefined) expect(r.httpStatus).toBe(httpStatusOf(r.code));
  return Code[r.code];
}

describe.each(CLIENTS)(`roles and their scopes over %s (${BACKEND})`, (clientName) => {
  const c = () => jsonClient(clientName, srv.url);

  it('a session_manager may not list, read or create users (PERMISSION_DENIED)', async () => {
    const client = c();
    try {
      expect(outcome(await client.call(U.listUsers, {}, sessionManagerA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.getUserByID, { userId: humanA }, sessionManagerA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.createUser, { organizationId: orgA, machine: { name: 'x' } }, sessionManagerA))).toBe('PermissionDenied');
      expect(outcome(await client.call(P.createAdministrator, { userId: humanA, resource: { organizationId: orgA }, roles: ['org_admin'] }, sessionManagerA))).toBe(
        'PermissionDenied',
      );
    } finally {
      client.close();
    }
  });

  it("an org_admin of org A is refused on org B's users (PERMISSION_DENIED) and allowed on its own", async () => {
    const client = c();
    try {
      expect(outcome(await client.call(U.getUserByID, { userId: humanA }, orgAdminA))).toBe('ok');
      expect(outcome(await client.call(U.getUserByID, { userId: humanB }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.createUser, { organizationId: orgB, machine: { name: 'intruder' } }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.addPersonalAccessToken, { userId: machineB, expirationDate: inSeconds(600) }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.addKey, { userId: machineB, expirationDate: inSeconds(600) }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(U.deactivateUser, { userId: machineB }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(P.createAdministrator, { userId: machineB, resource: { organizationId: orgB }, roles: ['org_admin'] }, orgAdminA))).toBe('PermissionDenied');
      // Without an organization filter, ListUsers shows org A's users only.
      const listed = await client.call(U.listUsers, {}, orgAdminA);
      if (!listed.ok) throw new Error(`ListUsers: ${Code[listed.code]} ${listed.message}`);
      const ids = ((listed.json.result ?? []) as { userId: string }[]).map((u) => u.userId);
      expect(ids).toContain(humanA);
      expect(ids).not.toContain(humanB);
      expect(ids).not.toContain(machineB);
    } finally {
      client.close();
    }
  });

  it("an org_admin of org A listing users with org B's organization filter finds nothing (the list is scoped to org A)", async () => {
    const client = c();
    try {
      const r = await client.call(U.listUsers, { queries: [{ organizationIdQuery: { organizationId: orgB } }] }, orgAdminA);
      expect(outcome(r)).toBe('ok');
      if (!r.ok) return;
      // org B's users exist (the instance admin sees them) but the org admin of A gets an empty page.
      expect(r.json.result ?? []).toEqual([]);
      const all = await client.call(U.listUsers, { queries: [{ organizationIdQuery: { organizationId: orgB } }] }, srv.admin);
      if (!all.ok) throw new Error(`ListUsers as instance admin: ${Code[all.code]}`);
      expect(((all.json.result ?? []) as { userId: string }[]).map((u) => u.userId)).toEqual(expect.arrayContaining([humanB, machineB]));
    } finally {
      client.close();
    }
  });

  it('CreateAdministrator: instance_admin on an organization and org_admin on the instance are INVALID_ARGUMENT; an org admin granting on the instance is PERMISSION_DENIED', async () => {
    const client = c();
    try {
      const target = (await createMachineUser(srv.url, srv.admin, orgA, `grantee-${clientName}`)).id;
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { organizationId: orgA }, roles: ['instance_admin'] }, srv.admin))).toBe(
        'InvalidArgument',
      );
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { instance: true }, roles: ['org_admin'] }, srv.admin))).toBe('InvalidArgument');
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { instance: true }, roles: ['session_manager'] }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { instance: true }, roles: ['instance_admin'] }, orgAdminA))).toBe('PermissionDenied');
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { organizationId: orgA }, roles: ['no_such_role'] }, srv.admin))).toBe('InvalidArgument');
      // Nothing above was granted.
      const listed = await client.call(P.listAdministrators, { filters: [{ userId: { id: target } }] }, srv.admin);
      if (!listed.ok) throw new Error(`ListAdministrators: ${Code[listed.code]} ${listed.message}`);
      expect(listed.json.administrators ?? []).toEqual([]);
      // What the org admin may do: grant a role of its own organization.
      expect(outcome(await client.call(P.createAdministrator, { userId: target, resource: { organizationId: orgA }, roles: ['session_manager'] }, orgAdminA))).toBe('ok');
    } finally {
      client.close();
    }
  });

  it("a human user's AddPersonalAccessToken is FAILED_PRECONDITION", async () => {
    const client = c();
    try {
      expect(outcome(await client.call(U.addPersonalAccessToken, { userId: humanA, expirationDate: inSeconds(600) }, srv.admin))).toBe('FailedPrecondition');
    } finally {
      client.close();
    }
  });
});
