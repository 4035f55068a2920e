/**
 * gRPC server reflection (v1 and v1alpha) and health: `buf curl` lists and calls services without proto
 * files, and a hand-rolled grpc-js reflection client checks every request kind and that the descriptors
 * it gets back are complete enough to rebuild the API (options included).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { createFileRegistry, getOption, hasOption } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { create, fromBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { http as httpExt } from '../gen/google/api/annotations_pb.js';
import { auth as authExt } from '../gen/passkeyd/options/v1/options_pb.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const exec = promisify(execFile);
const BUF = path.resolve('node_modules/.bin/buf');
const srv = useTestServer();

/** Runs `buf curl` (async: the server runs in this process). */
async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await exec(BUF, ['curl', ...args], { timeout: 60_000 });
  return stdout;
}

const OWN_SERVICES = [
  'passkeyd.internal_permission.v2.InternalPermissionService',
  'passkeyd.org.v2.OrganizationService',
  'passkeyd.session.v2.SessionService',
  'passkeyd.user.v2.SignUpService',
  'passkeyd.user.v2.UserService',
];
const INFRA_SERVICES = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

describe(`buf curl with server reflection (${BACKEND})`, () => {
  it('lists every service and method over gRPC (h2c), without a token and without proto files', async () => {
    const services = (await bufCurl('--protocol', 'grpc', '--http2-prior-knowledge', '--list-services', srv.url)).trim().split('\n');
    expect(services.sort()).toEqual([...INFRA_SERVICES, ...OWN_SERVICES].sort());
    const methods = (await bufCurl('--protocol', 'grpc', '--http2-prior-knowledge', '--list-methods', srv.url)).trim().split('\n');
    for (const m of [
      'passkeyd.user.v2.UserService/RegisterPasskey',
      'passkeyd.user.v2.UserService/VerifyPasskeyRegistration',
      'passkeyd.session.v2.SessionService/SetSession',
      'grpc.health.v1.Health/Check',
    ]) {
      expect(methods).toContain(m);
    }
  });

  it('the v1alpha protocol answers the same, and reflection works over Connect and gRPC-web too', async () => {
    const alpha = await bufCurl('--protocol', 'grpc', '--http2-prior-knowledge', '--reflect-protocol', 'grpc-v1alpha', '--list-services', srv.url);
    expect(alpha.trim().split('\n').sort()).toEqual([...INFRA_SERVICES, ...OWN_SERVICES].sort());
    const web = await bufCurl('--protocol', 'grpcweb', '--list-services', srv.url);
    expect(web).toContain('passkeyd.user.v2.UserService');
    const connect = await bufCurl('--protocol', 'connect', '--list-services', srv.url);
    expect(connect).toContain('passkeyd.session.v2.SessionService');
  });

  it('calls grpc.health.v1.Health/Check, and an authenticated RPC with JSON built from reflected schemas', async () => {
    const health = JSON.parse(await bufCurl('--protocol', 'grpc', '--http2-prior-knowledge', `${srv.url}/grpc.health.v1.Health/Check`));
    expect(health).toEqual({ status: 'SERVING' });
    const added = JSON.parse(
      await bufCurl(
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '-H',
        `Authorization: Bearer ${srv.admin}`,
        '-d',
        JSON.stringify({ username: 'reflected', profile: { given_name: 'Re', family_name: 'Flected' }, email: { email: 'reflected@example.com' } }),
        `${srv.url}/passkeyd.user.v2.UserService/AddHumanUser`,
      ),
    );
    expect(added.userId).toMatch(/^[0-9a-z]{26}$/);
    const got = JSON.parse(
      await bufCurl(
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '-H',
        `Authorization: Bearer ${srv.admin}`,
        '-d',
        JSON.stringify({ user_id: added.userId }),
        `${srv.url}/passkeyd.user.v2.UserService/GetUserByID`,
      ),
    );
    expect(got.user.username).toBe('reflected');
    // Without the token the same call is refused by the same interceptor as every other protocol.
    const refused = await exec(BUF, [
      'curl',
      '--protocol',
      'grpc',
      '--http2-prior-knowledge',
      '-d',
      JSON.stringify({ user_id: added.userId }),
      `${srv.url}/passkeyd.user.v2.UserService/GetUserByID`,
    ]).then(
      () => undefined,
      (err: { stderr: string }) => err.stderr,
    );
    expect(refused).toMatch(/unauthenticated/i);
  });
});

/** A grpc-js client of grpc.reflection.v1 loaded from the .proto the @grpc/reflection package ships. */
function reflectionClient(url: string, version: 'v1' | 'v1alpha') {
  const def = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [path.resolve('node_modules/@grpc/reflection/build/proto')],
    keepCase: true,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  const Client = pkg.grpc.reflection[version].ServerReflection;
  return new Client(url.replace(/^http:\/\//, ''), grpc.credentials.createInsecure()) as grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<any, any> };
}

/** Sends requests on one reflection stream, one at a time, and collects the answers. */
async function ask(version: 'v1' | 'v1alpha', requests: object[]): Promise<any[]> {
  const client = reflectionClient(srv.url, version);
  try {
    const stream = client.ServerReflectionInfo();
    const answers: any[] = [];
    const next = () =>
      new Promise<any>((resolve, reject) => {
        stream.once('data', resolve);
        stream.once('error', reject);
      });
    for (const r of requests) {
      const p = next();
      stream.write(r);
      answers.push(await p);
    }
    stream.end();
    return answers;
  } finally {
    client.close();
  }
}

/** Files in dependency order (imports first), as a FileDescriptorSet must list them. */
function topological(files: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((f) => [f.name, f]));
  const out: FileDescriptorProto[] = [];
  const visit = (f: FileDescriptorProto | undefined) => {
    if (!f || out.includes(f)) return;
    f.dependency.forEach((d) => visit(byName.get(d)));
    out.push(f);
  };
  files.forEach(visit);
  return out;
}

const decode = (answer: any) => (answer.file_descriptor_response.file_descriptor_proto as Buffer[]).map((b) => fromBinary(FileDescriptorProtoSchema, b));

describe(`grpc.reflection over @grpc/grpc-js (${BACKEND})`, () => {
  it.each(['v1', 'v1alpha'] as const)('%s: every request kind; descriptors rebuild the API with its options', async (version) => {
    const [list, bySymbol, again, byFile, byExtension, numbers, method, missing] = await ask(version, [
      { list_services: '' },
      { file_containing_symbol: 'passkeyd.user.v2.UserService' },
      { file_containing_symbol: 'passkeyd.user.v2.Passkey' },
      { file_by_filename: 'google/api/http.proto' },
      { file_containing_extension: { containing_type: 'google.protobuf.MethodOptions', extension_number: 72295728 } },
      { all_extension_numbers_of_type: 'google.protobuf.MethodOptions' },
      { file_containing_symbol: 'passkeyd.session.v2.SessionService.SetSession' },
      { file_containing_symbol: 'passkeyd.user.v2.NoSuchThing' },
    ]);
    expect(list.list_services_response.service.map((s: { name: string }) => s.name).sort()).toEqual([...INFRA_SERVICES, ...OWN_SERVICES].sort());

    // The service's file first, then every file it imports, transitively, once.
    const files = decode(bySymbol);
    expect(files[0]!.name).toBe('passkeyd/user/v2/user_service.proto');
    const names = files.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const dep of [
      'google/api/annotations.proto',
      'google/api/http.proto',
      'google/protobuf/descriptor.proto',
      'google/protobuf/struct.proto',
      'google/protobuf/timestamp.proto',
      'passkeyd/options/v1/options.proto',
      'passkeyd/object/v2/object.proto',
    ]) {
      expect(names).toContain(dep);
    }
    // A rebuilt registry has the service, its messages and its method options (http rule, auth rule).
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: topological(files) }));
    const users = registry.getService('passkeyd.user.v2.UserService')!;
    expect(users.methods.map((m) => m.name)).toContain('RegisterPasskey');
    const register = users.methods.find((m) => m.name === 'RegisterPasskey')!;
    expect(hasOption(register, httpExt)).toBe(true);
    expect(getOption(register, httpExt).pattern).toEqual({ case: 'post', value: '/v2/users/{user_id}/passkeys' });
    expect(getOption(register, authExt).codeField).toBe('code');
    expect(registry.getMessage('passkeyd.user.v2.RegisterPasskeyResponse')?.fields.map((f) => f.jsonName)).toContain('publicKeyCredentialCreationOptions');

    // Same stream: the file asked for comes again, imports already sent do not.
    expect(decode(again).map((f) => f.name)).toEqual(['passkeyd/user/v2/passkey.proto']);
    expect(decode(byFile)[0]!.name).toBe('google/api/http.proto');
    expect(decode(byExtension)[0]!.name).toBe('google/api/annotations.proto');
    expect(numbers.all_extension_numbers_response.base_type_name).toBe('google.protobuf.MethodOptions');
    const authNumber = registry.getExtension('passkeyd.options.v1.auth')!.number;
    expect(numbers.all_extension_numbers_response.extension_number).toEqual([72295728, authNumber].sort((a, b) => a - b));
    expect(decode(method)[0]!.name).toBe('passkeyd/session/v2/session_service.proto');
    expect(missing.error_response.error_code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error_response.error_message).toContain('NoSuchThing');
  });

  it('answers file_by_filename for a missing file with NOT_FOUND, and the stream stays usable', async () => {
    const [missing, found] = await ask('v1', [{ file_by_filename: 'nope.proto' }, { file_by_filename: 'health/v1/health.proto' }]);
    expect(missing.error_response.error_code).toBe(grpc.status.NOT_FOUND);
    expect(decode(found)[0]!.package).toBe('grpc.health.v1');
  });
});
