/** /openapi.json: generated from the same routes and descriptors that serve REST, and consistent with them. */
import { hasOption } from '@bufbuild/protobuf';
import { beforeAll, describe, expect, it } from 'vitest';
import { http } from '../gen/google/api/annotations_pb.js';
import { InternalPermissionService } from '../gen/passkeyd/internal_permission/v2/internal_permission_service_pb.js';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { SignUpService } from '../gen/passkeyd/user/v2/signup_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const srv = useTestServer();
let doc: any;

beforeAll(async () => {
  const res = await fetch(`${srv.url}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/json');
  doc = await res.json();
});

/** Every {"$ref": ...} in a value. */
function refs(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) v.forEach((x) => refs(x, out));
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') out.push(x);
      else refs(x, out);
    }
  }
  return out;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

describe(`OpenAPI document (${BACKEND})`, () => {
  it('is OpenAPI 3.1 with every REST binding as an operation, unique operation ids, resolvable refs', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.title).toBe('passkeyd');
    const operations = Object.entries(doc.paths).flatMap(([path, item]: [string, any]) =>
      Object.entries(item)
        .filter(([m]) => METHODS.includes(m))
        .map(([m, op]) => ({ path, method: m, op: op as any })),
    );
    const ids = operations.map((o) => o.op.operationId);
    const expected = [UserService, SessionService, OrganizationService, InternalPermissionService, SignUpService].flatMap((svc) =>
      svc.methods.filter((m) => hasOption(m, http)).map((m) => `${svc.name}_${m.name}`),
    );
    expect(expected.length).toBeGreaterThan(15);
    expect([...ids].sort()).toEqual(expected.sort());
    expect(new Set(ids).size).toBe(ids.length);
    for (const ref of refs(doc)) {
      expect(ref, ref).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas[ref.slice('#/components/schemas/'.length)], ref).toBeDefined();
    }
    // Every {variable} in a path is a declared, required path parameter, and nothing else is.
    for (const { path, op } of operations) {
      const vars = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = (op.parameters ?? []).filter((p: any) => p.in === 'path');
      expect(declared.map((p: any) => p.name).sort(), path).toEqual(vars);
      for (const p of declared) expect(p.required).toBe(true);
    }
  });

  it('describes ZITADEL paths with their bodies, responses, query parameters and security', () => {
    const add = doc.paths['/v2/users/human'].post;
    expect(add.operationId).toBe('UserService_AddHumanUser');
    expect(add.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/passkeyd.user.v2.AddHumanUserRequest' });
    expect(add.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/passkeyd.user.v2.AddHumanUserResponse' });
    expect(add.responses.default.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/google.rpc.Status' });
    expect(add.security).toBeUndefined(); // the document-wide Bearer requirement applies

    const passkey = doc.paths['/v2/users/{user_id}/passkeys/{passkey_id}'];
    expect(Object.keys(passkey).sort()).toEqual(['delete', 'patch', 'post']);
    expect(passkey.delete.parameters).toEqual(expect.arrayContaining([{ name: 'force', in: 'query', required: false, schema: { type: 'boolean' } }]));
    expect(passkey.post.security).toEqual([{ bearer: [] }, {}]); // a registration code may stand in

    expect(doc.paths['/v2/sessions'].post.security).toEqual([]);
    expect(doc.paths['/v2/sessions/{session_id}'].get.parameters.map((p: any) => `${p.in}:${p.name}`)).toEqual(['path:session_id', 'query:session_token']);

    const schemas = doc.components.schemas;
    expect(schemas['passkeyd.object.v2.Details'].properties).toEqual({
      sequence: { type: 'string', format: 'uint64' },
      changeDate: { type: 'string', format: 'date-time' },
      resourceOwner: { type: 'string' },
      creationDate: { type: 'string', format: 'date-time' },
    });
    expect(schemas['passkeyd.user.v2.RegisterPasskeyResponse'].properties.publicKeyCredentialCreationOptions).toEqual({ type: 'object', additionalProperties: true });
    expect(schemas['passkeyd.user.v2.AuthFactorState'].enum).toContain('AUTH_FACTOR_STATE_READY');
    expect(schemas['google.rpc.Status'].required).toEqual(['code', 'message', 'details']);
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  });

  it('the document matches what the server does: a request built from it succeeds', async () => {
    const admin = await srv.adminToken();
    const [path] = Object.entries(doc.paths).find(([, i]: [string, any]) => i.post?.operationId === 'UserService_ListUsers') as [string, any];
    const props = Object.keys(doc.components.schemas['passkeyd.user.v2.ListUsersRequest'].properties);
    expect(props).toEqual(expect.arrayContaining(['query', 'sortingColumn', 'queries']));
    const res = await fetch(srv.url + path, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: { limit: 1 } }),
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    const responseProps = Object.keys(doc.components.schemas['passkeyd.user.v2.ListUsersResponse'].properties);
    for (const key of Object.keys(body)) expect(responseProps).toContain(key);
  });
});
