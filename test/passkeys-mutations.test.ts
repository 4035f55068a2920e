/**
 * 1,000 random mutations of one valid registration response, each sent to VerifyPasskeyRegistration over
 * Connect: none may be accepted, none may be INTERNAL. Failed verifications consume nothing, so all of
 * them run against one pending registration, which the unmutated response completes at the end.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { bearer, clientFor } from './helpers/clients.js';
import { createUser, creationOptionsOf, DEFAULT_ORIGIN } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';
import { prng } from './helpers/prng.js';

const MUTATIONS = 1000;
const SEED = Number(process.env.PASSKEYD_MUTATION_SEED ?? 20261122);

const srv = useTestServer();

type CborValue = Parameters<typeof isoCBOR.encode>[0];
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

const REQUIRED: string[][] = [['id'], ['rawId'], ['type'], ['response'], ['response', 'clientDataJSON'], ['response', 'attestationObject']];
const ALL_PATHS: string[][] = [
  ...REQUIRED,
  ['clientExtensionResults'],
  ['authenticatorAttachment'],
  ['response', 'transports'],
  ['response', 'authenticatorData'],
  ['response', 'publicKey'],
  ['response', 'publicKeyAlgorithm'],
];
const BINARY = ['clientDataJSON', 'attestationObject'] as const;

function parentOf(o: Obj, path: string[]): Obj {
  let v: Json = o;
  for (const k of path.slice(0, -1)) v = (v as Obj)[k]!;
  return v as Obj;
}

/** A value of a different JSON type than `v` (never null for optional members: null means absent). */
function otherType(v: Json | undefined, rand: () => number, allowNull: boolean): Json {
  const choices: Json[] = [42, -1.5, true, 'x', [], [1, 'a'], {}, { a: 1 }];
  if (allowNull) choices.push(null);
  const kind = (x: Json | undefined) => (x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x);
  const candidates = choices.filter((c) => kind(c) !== kind(v));
  return candidates[Math.floor(rand() * candidates.length)]!;
}

function mutate(base: Obj, rand: () => number): { name: string; value: Obj } {
  const o = structuredClone(base);
  const res = o.response as Obj;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const kind = Math.floor(rand() * 10);
  switch (kind) {
    case 0:
    case 1:
    case 2: {
      // Flip 1–3 bytes of the decoded clientDataJSON or attestationObject.
      const field = pick(BINARY);
      const bytes = Buffer.from(res[field] as string, 'base64url');
      const n = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) {
        const at = Math.floor(rand() * bytes.length);
        bytes[at] = bytes[at]! ^ (1 + Math.floor(rand() * 255));
      }
      res[field] = bytes.toString('base64url');
      return { name: `flip ${n} byte(s) of ${field}`, value: o };
    }
    case 3: {
      const field = pick(BINARY);
      const bytes = Buffer.from(res[field] as string, 'base64url');
      const cut = Math.floor(rand() * bytes.length);
      res[field] = rand() < 0.5 ? bytes.subarray(0, cut).toString('base64url') : Buffer.concat([bytes, Buffer.from([Math.floor(rand() * 256)])]).toString('base64url');
      return { name: `truncate/extend ${field}`, value: o };
    }
    case 4: {
      const path = pick(REQUIRED);
      delete parentOf(o, path)[path.at(-1)!];
      return { name: `drop ${path.join('.')}`, value: o };
    }
    case 5: {
      const path = pick(REQUIRED);
      const parent = parentOf(o, path);
      const key = path.at(-1)!;
      parent[`${key}${pick(['_', 'X', 's', ' '])}`] = parent[key]!;
      delete parent[key];
      return { name: `rename ${path.join('.')}`, value: o };
    }
    case 6: {
      const path = pick(ALL_PATHS);
      const parent = parentOf(o, path);
      const key = path.at(-1)!;
      const required = REQUIRED.some((p) => p.join('.') === path.join('.'));
      parent[key] = otherType(parent[key], rand, required);
      return { name: `retype ${path.join('.')}`, value: o };
    }
    case 7: {
      const field = pick([...BINARY, 'id'] as const);
      const target = field === 'id' ? o : res;
      const s = target[field] as string;
      const at = Math.floor(rand() * s.length);
      target[field] = s.slice(0, at) + pick(['+', '/', '!', ' ', '=', '.', 'é']) + s.slice(at + 1);
      if (field === 'id') o.rawId = o.id!;
      return { name: `bad base64url in ${field}`, value: o };
    }
    case 8: {
      // Change one member of the client data and re-encode it properly.
      const cd = JSON.parse(Buffer.from(res.clientDataJSON as string, 'base64url').toString('utf8')) as Obj;
      const key = pick(['type', 'challenge', 'origin', 'crossOrigin', 'topOrigin']);
      cd[key] = pick<Json>(['webauthn.get', 'webauthn.create ', 'https://evil.example', `${cd.challenge}A`, true, 1, null]);
      res.clientDataJSON = Buffer.from(JSON.stringify(cd)).toString('base64url');
      return { name: `clientData.${key} changed`, value: o };
    }
    default: {
      // Change the attestation object's structure and re-encode it as valid CBOR.
      const att = isoCBOR.decodeFirst<Map<string, CborValue>>(new Uint8Array(Buffer.from(res.attestationObject as string, 'base64url')));
      const stmt = att.get('attStmt') as Map<string, CborValue>;
      const which = Math.floor(rand() * 5);
      if (which === 0) att.set('fmt', pick(['none', 'fido-u2f', 'tpm', 'apple', 'android-key', 'bogus']));
      else if (which === 1) stmt.delete(pick(['sig', 'alg']));
      else if (which === 2) stmt.set('alg', pick([-8, -257, -35, 1, 0]));
      else if (which === 3) att.delete(pick(['fmt', 'attStmt', 'authData']));
      else att.set('authData', new Uint8Array(37));
      res.attestationObject = Buffer.from(isoCBOR.encode(att)).toString('base64url');
      return { name: `attestationObject structure (${which})`, value: o };
    }
  }
}

describe(`mutation test (${BACKEND})`, () => {
  it(`${MUTATIONS} mutations of a valid registration response: zero accepted, zero INTERNAL`, async () => {
    const userId = await createUser(srv.url, srv.admin);
    const users = clientFor(UserService, 'connect', srv.url);
    const begun = await users.registerPasskey({ userId }, bearer(srv.admin));
    // Packed self-attestation: the signature covers authenticator data and the client data hash.
    const valid = (await createSoftAuthenticator({ attestation: 'packed' }).register(creationOptionsOf(begun.publicKeyCredentialCreationOptions), {
      origin: DEFAULT_ORIGIN,
    })) as unknown as Obj;
    const rand = prng(SEED);
    const codes = new Map<string, number>();
    const accepted: string[] = [];
    const internal: string[] = [];
    for (let i = 0; i < MUTATIONS; i++) {
      const { name, value } = mutate(valid, rand);
      let code: string;
      try {
        await users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: value as JsonObject, passkeyName: 'mutant' }, bearer(srv.admin));
        code = 'OK';
        accepted.push(`#${i} ${name}`);
      } catch (err) {
        const e = ConnectError.from(err);
        code = Code[e.code];
        if (e.code === Code.Internal || e.code === Code.Unknown) internal.push(`#${i} ${name}: ${e.rawMessage}`);
      }
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    expect({ seed: SEED, accepted }).toEqual({ seed: SEED, accepted: [] });
    expect({ seed: SEED, internal }).toEqual({ seed: SEED, internal: [] });
    expect([...codes.keys()]).toEqual(['InvalidArgument']);
    // Nothing was consumed or stored along the way: the untouched response still completes, once.
    const row = await srv.app.store.db.selectFrom('passkeys').select(['state', 'credential_id']).where('id', '=', begun.passkeyId).executeTakeFirstOrThrow();
    expect(row).toEqual({ state: 'not_ready', credential_id: null });
    const ok = await users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: valid as JsonObject, passkeyName: 'real' }, bearer(srv.admin));
    expect(ok.details?.sequence).toBe(3n); // user.human.added, user.passkey.added, user.passkey.verified
  });
});
