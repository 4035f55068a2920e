/**
 * The audit trail of a machine user: each change appends an event that names it (user.machine.added,
 * user.key.added, user.pat.added, user.secret.added, user.administrator.added/changed/removed,
 * user.token.issued, user.deactivated, user.reactivated, the removals, user.removed), with the machine
 * user's organization as resource owner, and no payload holds a secret: not the client secret, the PAT
 * (or its secret part), a private key, a public key's PEM, or an issued access token.
 */
import { describe, expect, it } from 'vitest';
import { defaultOrgId } from '../src/domain/bootstrap.js';
import { accessTokenOf, addKey, addPat, clientCredentials, createMachineUser, exchangeAssertion, generateTestKey, grant, restOk, signAssertion } from './helpers/machine.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer();

/** The user's events in order: type, payload (as stored), resource owner and creator. */
async function eventsOf(userId: string) {
  return srv.app.store.db
    .selectFrom('events')
    .select(['event_type', 'payload', 'resource_owner', 'creator', 'sequence'])
    .where('aggregate_type', '=', 'user')
    .where('aggregate_id', '=', userId)
    .orderBy('sequence')
    .execute();
}

/** Everything an event row holds, as one string to search for leaked material. */
const allText = (rows: unknown[]) => JSON.stringify(rows);

/** The secrets a credential response revealed, and the parts of them that must never be stored. */
function forbiddenIn(rows: unknown[], secrets: string[]): string[] {
  const text = allText(rows);
  return secrets.filter((s) => s.length >= 8 && text.includes(s));
}

describe(`audit trail of a machine user (${BACKEND})`, () => {
  it('names every change to its credentials, roles and state, and stores no secret', async () => {
    const org = await defaultOrgId(srv.app.store.db);
    const m = await createMachineUser(srv.url, srv.admin, org, 'audited');
    const ec = generateTestKey('ES256');
    const supplied = await addKey(srv.url, srv.admin, m.id, ec.publicPem);
    const generated = await addKey(srv.url, srv.admin, m.id);
    const generatedRaw = await restOk(srv.url, 'POST', `/v2/users/${m.id}/keys`, { expirationDate: new Date(Date.now() + 86400e3).toISOString() }, srv.admin);
    const pat = await addPat(srv.url, srv.admin, m.id);
    const { clientSecret } = await restOk(srv.url, 'POST', `/v2/users/${m.id}/secret`, {}, srv.admin);
    const replaced = await restOk(srv.url, 'POST', `/v2/users/${m.id}/secret`, {}, srv.admin);
    await grant(srv.url, srv.admin, m.id, ['org_admin'], org);
    await restOk(srv.url, 'PATCH', `/v2/administrators/${m.id}`, { resource: { organizationId: org }, roles: ['org_admin', 'session_manager'] }, srv.admin);
    await restOk(srv.url, 'DELETE', `/v2/administrators/${m.id}`, { resource: { organizationId: org } }, srv.admin);
    await restOk(srv.url, 'POST', `/v2/users/${m.id}/deactivate`, {}, srv.admin);
    await restOk(srv.url, 'POST', `/v2/users/${m.id}/reactivate`, {}, srv.admin);
    await restOk(srv.url, 'DELETE', `/v2/users/${m.id}/keys/${supplied.keyId}`, undefined, srv.admin);
    await restOk(srv.url, 'DELETE', `/v2/users/${m.id}/pats/${pat.tokenId}`, undefined, srv.admin);
    await restOk(srv.url, 'DELETE', `/v2/users/${m.id}/secret`, undefined, srv.admin);
    await restOk(srv.url, 'DELETE', `/v2/users/${m.id}`, undefined, srv.admin);

    const rows = await eventsOf(m.id);
    expect(rows.map((e) => e.event_type)).toEqual([
      'user.machine.added',
      'user.key.added',
      'user.key.added',
      'user.key.added',
      'user.pat.added',
      'user.secret.added',
      'user.secret.added',
      'user.administrator.added',
      'user.administrator.changed',
      'user.administrator.removed',
      'user.deactivated',
      'user.reactivated',
      'user.key.removed',
      'user.pat.removed',
      'user.secret.removed',
      'user.removed',
    ]);
    expect(rows.map((e) => Number(e.sequence))).toEqual(rows.map((_, i) => i + 1));
    expect(new Set(rows.map((e) => e.resource_owner))).toEqual(new Set([org]));

    const payload = (type: string, n = 0) => rows.filter((e) => e.event_type === type)[n]!.payload as Record<string, unknown>;
    expect(payload('user.machine.added')).toMatchObject({ username: m.username });
    expect(payload('user.key.added', 0)).toMatchObject({ key_id: supplied.keyId, algorithm: 'ES256', expires_at: expect.any(String) });
    expect(payload('user.key.added', 1)).toMatchObject({ key_id: generated.keyId, algorithm: 'RS256' });
    expect(payload('user.pat.added')).toMatchObject({ token_id: pat.tokenId, expires_at: expect.any(String) });
    expect(payload('user.secret.added', 0)).toMatchObject({ replaced: false });
    expect(payload('user.secret.added', 1)).toMatchObject({ replaced: true });
    expect(payload('user.administrator.added')).toMatchObject({ org_id: org, roles: ['org_admin'] });
    expect(payload('user.administrator.changed')).toMatchObject({ org_id: org, roles: ['org_admin', 'session_manager'] });
    expect(payload('user.administrator.removed')).toMatchObject({ org_id: org });
    expect(payload('user.key.removed')).toMatchObject({ key_id: supplied.keyId });
    expect(payload('user.pat.removed')).toMatchObject({ token_id: pat.tokenId });

    // No secret material anywhere in the trail.
    const patSecret = pat.token.split('_').at(-1)!;
    expect(forbiddenIn(rows, [clientSecret, replaced.clientSecret, pat.token, patSecret, generated.keyFile!.key, generatedRaw.keyContent, ec.publicPem.split('\n')[1]!])).toEqual(
      [],
    );
    expect(allText(rows)).not.toContain('-----BEGIN');
    expect(allText(rows)).not.toContain('PRIVATE');
  });

  it('records user.token.issued for each grant (credential and grant type, never the token)', async () => {
    const org = await defaultOrgId(srv.app.store.db);
    const m = await createMachineUser(srv.url, srv.admin, org, 'audited-tokens');
    const { keyId, keyFile } = await addKey(srv.url, srv.admin, m.id);
    const { clientSecret } = await restOk(srv.url, 'POST', `/v2/users/${m.id}/secret`, {}, srv.admin);
    const assertion = await signAssertion({ alg: 'RS256', key: keyFile!.key, keyId, userId: m.id, audience: srv.config.issuer });
    const byKey = await accessTokenOf(exchangeAssertion(srv.url, assertion));
    const bySecret = await accessTokenOf(clientCredentials(srv.url, m.username, clientSecret));
    // Refused exchanges issue nothing.
    expect((await exchangeAssertion(srv.url, assertion)).status).toBe(400); // replayed jti
    expect((await clientCredentials(srv.url, m.username, `${clientSecret}x`)).status).toBe(401);

    const rows = await eventsOf(m.id);
    const issued = rows.filter((e) => e.event_type === 'user.token.issued');
    expect(issued.map((e) => e.payload)).toEqual([
      { token_id: expect.any(String), grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', credential: `key:${keyId}`, expires_at: expect.any(String) },
      { token_id: expect.any(String), grant_type: 'client_credentials', credential: expect.stringMatching(/^secret:/), expires_at: expect.any(String) },
    ]);
    // The machine user itself is the creator of its token events.
    expect(issued.map((e) => e.creator)).toEqual([m.id, m.id]);
    expect(forbiddenIn(rows, [byKey, bySecret, assertion, clientSecret, keyFile!.key, byKey.split('.')[2]!, bySecret.split('.')[2]!])).toEqual([]);
  });
});
