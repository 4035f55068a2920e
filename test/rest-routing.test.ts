/** The REST route table compiled from passkeyd's own protos: ZITADEL's paths, no wrong shadowing. */
import type { DescMethod, DescService } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { buildRouteTable } from '../src/api/transport/rest/route-table.js';
import { specGrpcMessage } from '../src/api/transport/grpc-message.js';
import { compareSpecificity, matchTemplate, parseTemplate, splitPath, TemplateError } from '../src/api/transport/rest/path-template.js';

const handlersOf = (...services: DescService[]) => services.flatMap((s) => s.methods.map((method: DescMethod) => ({ method })));
const table = buildRouteTable(handlersOf(UserService, SessionService, OrganizationService));

function target(httpMethod: string, path: string): string | undefined {
  const found = table.lookup(httpMethod, path);
  return found.kind === 'match'
    ? `${found.route.method.name} ${JSON.stringify(Object.fromEntries(found.bindings))}`
    : found.kind === 'method-not-allowed'
      ? `405 ${found.allowed.join(',')}`
      : undefined;
}

describe('REST route table of passkeyd', () => {
  it('binds every RPC with an http rule: the ZITADEL v2 paths', () => {
    const expected: [string, string, string][] = [
      ['POST', '/v2/users/human', 'AddHumanUser {}'],
      ['GET', '/v2/users/u1', 'GetUserByID {"user_id":"u1"}'],
      ['PUT', '/v2/users/human/u1', 'UpdateHumanUser {"user_id":"u1"}'],
      ['POST', '/v2/users', 'ListUsers {}'],
      ['DELETE', '/v2/users/u1', 'DeleteUser {"user_id":"u1"}'],
      ['POST', '/v2/users/u1/passkeys', 'RegisterPasskey {"user_id":"u1"}'],
      ['POST', '/v2/users/u1/passkeys/p1', 'VerifyPasskeyRegistration {"user_id":"u1","passkey_id":"p1"}'],
      ['POST', '/v2/users/u1/passkeys/registration_link', 'CreatePasskeyRegistrationLink {"user_id":"u1"}'],
      ['POST', '/v2/users/u1/passkeys/_search', 'ListPasskeys {"user_id":"u1"}'],
      ['PATCH', '/v2/users/u1/passkeys/p1', 'RenamePasskey {"user_id":"u1","passkey_id":"p1"}'],
      ['DELETE', '/v2/users/u1/passkeys/p1', 'RemovePasskey {"user_id":"u1","passkey_id":"p1"}'],
      ['POST', '/v2/passkeys/availability', 'CheckPasskeyAvailability {}'],
      ['POST', '/v2/sessions', 'CreateSession {}'],
      ['PATCH', '/v2/sessions/s1', 'SetSession {"session_id":"s1"}'],
      ['GET', '/v2/sessions/s1', 'GetSession {"session_id":"s1"}'],
      ['DELETE', '/v2/sessions/s1', 'DeleteSession {"session_id":"s1"}'],
      ['POST', '/v2/sessions/search', 'ListSessions {}'],
    ];
    for (const [m, p, want] of expected) expect(target(m, p), `${m} ${p}`).toBe(want);
    // Every user and session RPC is reachable over REST.
    const unrouted = [UserService, SessionService].flatMap((s) => s.methods).filter((m) => !table.routes.some((r) => r.method === m));
    expect(unrouted.map((m) => m.name)).toEqual([]);
  });

  it('literal segments win over variables; variables still take what no literal claims', () => {
    expect(target('POST', '/v2/users/human')).toBe('AddHumanUser {}');
    // GET has no literal /v2/users/human: the variable route takes "human" as an id.
    expect(target('GET', '/v2/users/human')).toBe('GetUserByID {"user_id":"human"}');
    expect(target('POST', '/v2/users/registration_link/passkeys/registration_link')).toBe('CreatePasskeyRegistrationLink {"user_id":"registration_link"}');
    expect(target('POST', '/v2/sessions/search')).toBe('ListSessions {}');
    expect(target('GET', '/v2/sessions/search')).toBe('GetSession {"session_id":"search"}');
  });

  it('decodes percent-escapes in variables; trailing slashes and empty segments do not match', () => {
    expect(target('GET', '/v2/users/a%2Fb%20c')).toBe('GetUserByID {"user_id":"a/b c"}');
    expect(target('GET', '/v2/users/')).toBeUndefined();
    expect(target('GET', '/v2/users//passkeys')).toBeUndefined();
    expect(target('POST', '/v2/users/u1/passkeys/')).toBeUndefined();
    expect(target('GET', '/v2/users/%zz')).toBeUndefined();
  });

  it('another method on a known path is 405 with the allowed methods', () => {
    expect(target('PUT', '/v2/users/u1')).toBe('405 DELETE,GET');
    expect(target('GET', '/v2/users')).toBe('405 POST');
    expect(target('GET', '/v2/users/u1/passkeys/p1')).toBe('405 DELETE,PATCH,POST');
  });
});

describe('path templates', () => {
  it('parses variables with patterns, "**" and verbs, and refuses malformed templates', () => {
    const t = parseTemplate('/v1/{parent=projects/*/locations/*}/things/{thing.id}:publish');
    expect(t.verb).toBe('publish');
    expect(t.variables.map((v) => [v.fieldPath.join('.'), v.start, v.end])).toEqual([
      ['parent', 1, 5],
      ['thing.id', 6, 7],
    ]);
    const m = matchTemplate(t, splitPath('/v1/projects/p/locations/l/things/x:publish')!);
    expect(Object.fromEntries(m!)).toEqual({ parent: 'projects/p/locations/l', 'thing.id': 'x' });
    expect(matchTemplate(t, splitPath('/v1/projects/p/locations/l/things/x:other')!)).toBeUndefined();
    expect(matchTemplate(t, splitPath('/v1/projects/p/things/x:publish')!)).toBeUndefined();
    for (const bad of ['v1/x', '/v1/{x', '/v1/**/x', '/v1/{a-b}', '/v1//x', '/v1/x:']) expect(() => parseTemplate(bad), bad).toThrow(TemplateError);
  });

  it('orders literal > variable > "**"', () => {
    const a = parseTemplate('/v2/users/human');
    const b = parseTemplate('/v2/users/{user_id}');
    const c = parseTemplate('/v2/{name=**}');
    expect(compareSpecificity(a, b)).toBeGreaterThan(0);
    expect(compareSpecificity(b, c)).toBeGreaterThan(0);
    expect(compareSpecificity(c, a)).toBeLessThan(0);
  });

  it('two RPCs binding the same method and template fail at start-up', () => {
    const getUser = UserService.method.getUserByID;
    const deleteUser = UserService.method.deleteUser;
    expect(() => buildRouteTable([{ method: getUser }, { method: getUser }])).toThrow(/both bind GET \/v2\/users\/\{user_id\}/);
    expect(() => buildRouteTable([{ method: getUser }, { method: deleteUser }])).not.toThrow();
  });
});

describe('grpc-message encoding on gRPC responses', () => {
  it('re-encodes as the gRPC spec asks: only "%" and bytes outside printable ASCII', () => {
    // connect-node sends encodeURIComponent's form; clients that decode with decodeURI (grpc-js) would show "%3A".
    expect(specGrpcMessage(encodeURIComponent('email.email: is not valid (a/b?c=d)'))).toBe('email.email: is not valid (a/b?c=d)');
    expect(specGrpcMessage(encodeURIComponent('100% sicher, grüße\n'))).toBe('100%25 sicher, gr%C3%BC%C3%9Fe%0A');
    expect(specGrpcMessage('%E0%A4%A')).toBe('%E0%A4%A');
  });
});
