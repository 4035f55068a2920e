/**
 * One lifecycle — create user → registration code → register and verify a passkey → log in → list →
 * rename → remove → delete user — over four real clients against one real server: @grpc/grpc-js with
 * the .proto files (HTTP/2 cleartext), connect-web's gRPC-web transport, Connect JSON via fetch, and REST
 * via fetch on the ZITADEL-style paths. Each run records every step (the response's shape with its
 * sequences and enum values, or the error code and message); the four transcripts must be identical.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { httpStatusOf } from '../src/errors.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { CLIENTS, jsonClient, type CallResult, type ClientName, type JsonClient } from './helpers/four-clients.js';
import { requestOptionsOf } from './helpers/login.js';
import { creationOptionsOf, DEFAULT_ORIGIN } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const U = UserService.method;
const S = SessionService.method;

const srv = useTestServer();

/** One recorded step: the response's shape, or the error. */
type Step = { step: string; ok: true; shape: unknown } | { step: string; ok: false; code: string; message: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A response with the values that legitimately differ between runs (ids, tokens, challenges, times)
 * replaced by a placeholder; enum names, numbers, booleans and numeric strings (sequences, counts) kept.
 */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  // processedSequence is the global event position: other runs' events come in between.
  if (isObj(v))
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, k === 'processedSequence' ? '<position>' : shape(v[k])]),
    );
  if (typeof v === 'string') return /^[A-Z][A-Z0-9_]*$/.test(v) || /^\d+$/.test(v) ? v : '<string>';
  return v;
}

interface Run {
  client: ClientName;
  steps: Step[];
  /** details.sequence of every change to the user, in order. */
  userSequences: bigint[];
}

async function scenario(c: JsonClient, tag: string): Promise<Run> {
  const steps: Step[] = [];
  const userSequences: bigint[] = [];
  let userIdOf = (): string => {
    throw new Error('no user yet');
  };
  const username = `four-${tag}`;
  const ids: Record<string, string> = { [username]: '<username>' };
  const scrub = (m: string) => Object.entries(ids).reduce((s, [id, name]) => s.split(id).join(name), m);

  const call = async (step: string, method: Parameters<JsonClient['call']>[0], request: JsonObject, token?: string): Promise<CallResult> => {
    const r = await c.call(method, request, token);
    steps.push(r.ok ? { step, ok: true, shape: shape(r.json) } : { step, ok: false, code: Code[r.code], message: scrub(r.message) });
    // REST and Connect answer with the same HTTP status for a code (the usual gRPC → HTTP table).
    if (!r.ok && r.httpStatus !== undefined) expect(r.httpStatus, `${c.name} ${step}`).toBe(httpStatusOf(r.code));
    return r;
  };
  const ok = async (step: string, method: Parameters<JsonClient['call']>[0], request: JsonObject, token?: string, changesUser = false): Promise<any> => {
    const r = await call(step, method, request, token);
    if (!r.ok) throw new Error(`${c.name}: ${step} failed with ${Code[r.code]}: ${r.message}`);
    if (changesUser) {
      const sequence = BigInt((r.json.details as JsonObject).sequence as string);
      userSequences.push(sequence);
      // details.sequence is the aggregate's event count right after the change: read it back.
      const id = (r.json.userId as string | undefined) ?? userIdOf();
      const events = await srv.app.store.db
        .selectFrom('events')
        .select('sequence')
        .where('aggregate_type', '=', 'user')
        .where('aggregate_id', '=', id)
        .orderBy('sequence')
        .execute();
      expect(
        events.map((e) => BigInt(e.sequence)),
        `${c.name}: ${step}: the user's events`,
      ).toEqual(Array.from({ length: Number(sequence) }, (_, i) => BigInt(i + 1)));
    }
    return r.json;
  };
  const fails = async (step: string, code: Code, method: Parameters<JsonClient['call']>[0], request: JsonObject, token?: string) => {
    const r = await call(step, method, request, token);
    expect(r.ok ? 'ok' : Code[r.code], `${c.name}: ${step}`).toBe(Code[code]);
  };

  // Create the user (admin), and the same bad inputs on every protocol.
  const human = { username, profile: { givenName: 'Four', familyName: 'Protocols' }, email: { email: `${username}@example.com`, isVerified: true } };
  const added = await ok('AddHumanUser', U.addHumanUser, human, srv.admin, true);
  const userId = added.userId as string;
  userIdOf = () => userId;
  ids[userId] = '<userId>';
  await fails('AddHumanUser: duplicate username', Code.AlreadyExists, U.addHumanUser, human, srv.admin);
  await fails('AddHumanUser: no token', Code.Unauthenticated, U.addHumanUser, { ...human, username: `${username}-x` });
  await fails('AddHumanUser: bad email', Code.InvalidArgument, U.addHumanUser, { ...human, username: `${username}-y`, email: { email: 'not an email' } }, srv.admin);
  await fails('GetUserByID: unknown', Code.NotFound, U.getUserByID, { userId: 'no-such-user' }, srv.admin);

  // A registration code, then a token-less registration with it.
  const link = await ok('CreatePasskeyRegistrationLink', U.createPasskeyRegistrationLink, { userId, returnCode: {} }, srv.admin, true);
  const code = link.code as { id: string; code: string };
  await fails('RegisterPasskey: wrong code', Code.InvalidArgument, U.registerPasskey, { userId, code: { id: code.id, code: 'wrong-code' } });
  const begun = await ok('RegisterPasskey', U.registerPasskey, { userId, code }, undefined, true);
  const passkeyId = begun.passkeyId as string;
  ids[passkeyId] = '<passkeyId>';
  const authenticator = createSoftAuthenticator();
  const credential = await authenticator.register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), { origin: DEFAULT_ORIGIN });
  const verify = { userId, passkeyId, publicKeyCredential: credential as unknown as JsonObject, passkeyName: `key of ${tag}` };
  await fails('VerifyPasskeyRegistration: empty name', Code.InvalidArgument, U.verifyPasskeyRegistration, { ...verify, passkeyName: '' });
  await ok('VerifyPasskeyRegistration', U.verifyPasskeyRegistration, verify, undefined, true);
  // Once verified, the code-begun ceremony no longer vouches for a token-less caller; an admin learns why.
  await fails('VerifyPasskeyRegistration: again, no token', Code.Unauthenticated, U.verifyPasskeyRegistration, verify);
  await fails('VerifyPasskeyRegistration: again, admin', Code.FailedPrecondition, U.verifyPasskeyRegistration, verify, srv.admin);
  await ok('GetUserByID', U.getUserByID, { userId }, srv.admin);

  // Log in with the passkey.
  const created = await ok('CreateSession', S.createSession, {
    checks: { user: { loginName: username } },
    challenges: { webAuthN: { domain: 'localhost', userVerificationRequirement: 'USER_VERIFICATION_REQUIREMENT_REQUIRED' } },
  });
  ids[created.sessionId] = '<sessionId>';
  const assertion = await authenticator.authenticate(requestOptionsOf(created.challenges.webAuthN.publicKeyCredentialRequestOptions), { origin: DEFAULT_ORIGIN });
  const set = { sessionId: created.sessionId, sessionToken: created.sessionToken, checks: { webAuthN: { credentialAssertionData: assertion as unknown as JsonObject } } };
  const loggedIn = await ok('SetSession', S.setSession, set);
  const userToken = loggedIn.accessToken as string;
  // Logging in changed the passkey's row (sign count, last use) and recorded the session's event, not
  // the user's: the user's sequence is where VerifyPasskeyRegistration left it.
  const afterLogin = await ok('GetUserByID: after login', U.getUserByID, { userId }, userToken);
  expect(BigInt(afterLogin.details.sequence), `${c.name} user sequence after login`).toBe(userSequences.at(-1));
  await fails('SetSession: replayed assertion', Code.Unauthenticated, S.setSession, set);
  // GET with a query parameter over REST (?session_token=...).
  await ok('GetSession', S.getSession, { sessionId: created.sessionId, sessionToken: loggedIn.sessionToken });
  await fails('GetSession: wrong session token', Code.PermissionDenied, S.getSession, { sessionId: created.sessionId, sessionToken: 'not-the-token' });

  // List, rename, remove — as the user, with the access token from the login.
  const listed = await ok('ListPasskeys', U.listPasskeys, { userId }, userToken);
  expect(listed.result, c.name).toHaveLength(1);
  expect(listed.result[0], c.name).toMatchObject({ id: passkeyId, state: 'AUTH_FACTOR_STATE_READY', name: `key of ${tag}` });
  await fails('ListPasskeys: another user', Code.PermissionDenied, U.listPasskeys, { userId: added.details.resourceOwner }, userToken);
  await ok('RenamePasskey', U.renamePasskey, { userId, passkeyId, name: 'renamed' }, userToken, true);
  await fails('RenamePasskey: name too long', Code.InvalidArgument, U.renamePasskey, { userId, passkeyId, name: 'x'.repeat(201) }, userToken);
  const renamed = await ok('ListPasskeys: renamed', U.listPasskeys, { userId }, userToken);
  expect(renamed.result[0].name, c.name).toBe('renamed');
  await fails('RemovePasskey: the last one', Code.FailedPrecondition, U.removePasskey, { userId, passkeyId }, userToken);
  await fails('RemovePasskey: force by the user', Code.PermissionDenied, U.removePasskey, { userId, passkeyId, force: true }, userToken);
  await ok('RemovePasskey: forced by an admin', U.removePasskey, { userId, passkeyId, force: true }, srv.admin, true);
  await fails('RemovePasskey: again', Code.NotFound, U.removePasskey, { userId, passkeyId, force: true }, srv.admin);
  const empty = await ok('ListPasskeys: none left', U.listPasskeys, { userId }, srv.admin);
  expect(empty.result ?? [], c.name).toEqual([]);

  // Delete the user.
  await ok('DeleteUser', U.deleteUser, { userId }, srv.admin, true);
  await fails('GetUserByID: deleted', Code.NotFound, U.getUserByID, { userId }, srv.admin);
  await fails('DeleteUser: again', Code.NotFound, U.deleteUser, { userId }, srv.admin);
  return { client: c.name, steps, userSequences };
}

describe(`the same lifecycle over four clients (${BACKEND})`, () => {
  const runs = new Map<ClientName, Run>();

  it.each(CLIENTS)('%s: runs the whole lifecycle', async (name) => {
    const client = jsonClient(name, srv.url);
    try {
      // Tags of one length, so messages that quote a name compare equal after scrubbing.
      const run = await scenario(client, name.padEnd(8, '_'));
      runs.set(name, run);
      // The user's sequence grows with every change (each step above read its events back).
      expect(run.userSequences.length).toBeGreaterThan(5);
      for (let i = 1; i < run.userSequences.length; i++) expect(run.userSequences[i]! > run.userSequences[i - 1]!, `${name} ${run.userSequences}`).toBe(true);
      expect(run.userSequences[0]).toBe(1n);
    } finally {
      client.close();
    }
  });

  it('all four produce the same resources, the same errors and the same sequence progression', () => {
    expect([...runs.keys()].sort()).toEqual([...CLIENTS].sort());
    const reference = runs.get('grpc-js')!;
    expect(reference.steps.filter((s) => !s.ok).length).toBeGreaterThanOrEqual(15);
    for (const name of CLIENTS) {
      const run = runs.get(name)!;
      expect(run.userSequences, name).toEqual(reference.userSequences);
      expect(
        run.steps.map((s) => s.step),
        name,
      ).toEqual(reference.steps.map((s) => s.step));
      for (let i = 0; i < run.steps.length; i++) expect(run.steps[i], `${name}: ${run.steps[i]!.step}`).toEqual(reference.steps[i]);
    }
  });
});
