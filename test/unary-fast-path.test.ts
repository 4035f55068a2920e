import http2 from 'node:http2';
import { create, fromBinary, toBinary, toJson, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateSessionRequestSchema, CreateSessionResponseSchema } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { AddHumanUserRequestSchema, AddHumanUserResponseSchema, GetUserByIDRequestSchema, ListUsersRequestSchema } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { BACKEND, useTestServer } from './helpers/server.js';

/**
 * The unary fast path (src/api/unary-fast-path.ts) against Connect's own handlers, on one server: the
 * same call sent with a deadline (`grpc-timeout`, `connect-timeout-ms`) is served by Connect (the fast
 * path leaves deadlines to it), without one by the fast path. Both must answer alike; the fast path's
 * counter in /metrics shows which one served.
 */

interface RawAnswer {
  status: string;
  message: string | undefined;
  contentType: string | undefined;
  metadata: Record<string, string>;
  body: Buffer;
}

let session: http2.ClientHttp2Session;

const srv = useTestServer({ config: { 'rate-limit': '6', 'rate-limit-window': '60s' } });
beforeAll(async () => {
  session = http2.connect(srv.url);
});
afterAll(() => session?.close());

function frame(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** One gRPC call with raw bytes; `viaConnect` adds a deadline, which sends the call to Connect's handler. */
function call(path: string, body: Uint8Array, headers: Record<string, string>, viaConnect: boolean, own?: http2.ClientHttp2Session): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = (own ?? session).request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(viaConnect ? { 'grpc-timeout': '30S' } : {}),
      ...headers,
    });
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    // The answer is complete with its trailers (or, trailers-only, when the stream closes). A server
    // may answer before it read the whole body; the rest of an oversized upload is then not wanted.
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      own?.destroy();
      // Trailers-only answers carry the status in the headers.
      const all = { ...head, ...trailers } as Record<string, string>;
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(all))
        if (!k.startsWith(':') && !['content-type', 'date', 'grpc-status', 'grpc-message', 'grpc-accept-encoding', 'accept-encoding'].includes(k)) metadata[k] = String(v);
      resolve({ status: String(all['grpc-status']), message: all['grpc-message'], contentType: head['content-type'] as string | undefined, metadata, body: Buffer.concat(chunks) });
    };
    req.on('trailers', (t) => {
      trailers = t;
      // Data frames before the trailers are delivered first; let them through, then finish.
      setImmediate(finish);
    });
    req.on('close', finish);
    req.end(body);
  });
}

const encode = <D extends DescMessage>(schema: D, init: MessageInitShape<D>) => frame(toBinary(schema, create(schema, init)));

async function fastCalls(protocol: 'grpc' | 'connect' = 'grpc'): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`passkeyd_unary_fast_path_calls_total{protocol="${protocol}"}`));
  return Number(line?.split(' ')[1] ?? 0);
}

/** Sends the call both ways; returns [fast, connect] and checks that exactly one went the fast way. */
async function both(path: string, body: Uint8Array, headers: Record<string, string> = {}, fastExpected = true): Promise<[RawAnswer, RawAnswer]> {
  const before = await fastCalls();
  const fast = await call(path, body, headers, false);
  const afterFast = await fastCalls();
  const connect = await call(path, body, headers, true);
  expect(await fastCalls()).toBe(afterFast);
  expect(afterFast - before).toBe(fastExpected ? 1 : 0);
  return [fast, connect];
}

const auth = () => ({ authorization: `Bearer ${srv.admin}` });
const ADD = '/passkeyd.user.v2.UserService/AddHumanUser';
const GET = '/passkeyd.user.v2.UserService/GetUserByID';
const LIST = '/passkeyd.user.v2.UserService/ListUsers';
const CREATE_SESSION = '/passkeyd.session.v2.SessionService/CreateSession';

describe(`unary fast path, gRPC (${BACKEND})`, () => {
  it('answers a successful call like Connect: status, content type, message shape', async () => {
    let n = 0;
    const body = () => encode(AddHumanUserRequestSchema, { username: `fast-${n++}`, profile: { givenName: 'F', familyName: 'P' }, email: { email: `fast${n}@example.com` } });
    const before = await fastCalls();
    const fast = await call(ADD, body(), auth(), false);
    expect(await fastCalls()).toBe(before + 1);
    const connect = await call(ADD, body(), auth(), true);
    for (const a of [fast, connect]) {
      expect(a.status).toBe('0');
      expect(a.contentType).toBe('application/grpc+proto');
      expect(a.body.readUInt32BE(1)).toBe(a.body.length - 5);
    }
    const shape = (a: RawAnswer) => Object.keys(toJson(AddHumanUserResponseSchema, fromBinary(AddHumanUserResponseSchema, a.body.subarray(5))) as object).sort();
    expect(shape(fast)).toEqual(shape(connect));
    expect(shape(fast)).toContain('userId');
    // Created for real: the fast path's user reads back.
    const userId = fromBinary(AddHumanUserResponseSchema, fast.body.subarray(5)).userId;
    const [read] = await both(GET, encode(GetUserByIDRequestSchema, { userId }), auth());
    expect(read.status).toBe('0');
  });

  it('answers errors like Connect: code, spec-encoded message, metadata', async () => {
    const cases: [string, Uint8Array, Record<string, string>, string][] = [
      [GET, encode(GetUserByIDRequestSchema, { userId: 'nö-such-user' }), auth(), '5'],
      [LIST, encode(ListUsersRequestSchema, {}), {}, '16'],
      [LIST, encode(ListUsersRequestSchema, {}), { authorization: 'Bearer not-a-token' }, '16'],
      [ADD, encode(AddHumanUserRequestSchema, { username: 'bad-mail', profile: { givenName: 'B', familyName: 'M' }, email: { email: 'not an address' } }), auth(), '3'],
    ];
    for (const [path, body, headers, status] of cases) {
      const [fast, connect] = await both(path, body, headers);
      expect(fast.status, path).toBe(status);
      expect(connect.status, path).toBe(status);
      expect(fast.message, path).toBe(connect.message);
      expect(fast.metadata, path).toEqual(connect.metadata);
      expect(fast.body.length).toBe(0);
    }
    // gRPC's percent-encoding: printable ASCII as is, the rest (here ö) as %XX.
    const [fast] = await both(GET, cases[0]![1], auth());
    expect(fast.message).toContain('n%C3%B6-such-user');
    expect(fast.message).not.toContain('%20');
  });

  it('rate limits apply on both paths, with the same retry hint', async () => {
    const body = encode(CreateSessionRequestSchema, { challenges: { webAuthN: {} } });
    const answers: RawAnswer[] = [];
    for (let i = 0; i < 4; i++) answers.push(...(await both(CREATE_SESSION, body)));
    const ok = answers.filter((a) => a.status === '0');
    const refused = answers.filter((a) => a.status === '8');
    expect(ok).toHaveLength(6);
    expect(refused).toHaveLength(2);
    expect(fromBinary(CreateSessionResponseSchema, ok[0]!.body.subarray(5)).sessionToken).not.toBe('');
    for (const r of refused) expect(r.metadata['retry-after']).toMatch(/^\d+$/);
    expect(refused[0]!.message).toBe(refused[1]!.message);
  });

  it('hands what it does not serve to Connect, with the bytes it read: same answers, not counted', async () => {
    const valid = toBinary(GetUserByIDRequestSchema, create(GetUserByIDRequestSchema, { userId: 'x' }));
    const oversized = Buffer.alloc(1024 * 1024 + 64, 0x41);
    const cases: [string, Buffer][] = [
      ['bytes that are not the request message', frame(Buffer.from([0x0a, 0xff, 0xff, 0xff]))],
      ['two messages in one unary call', Buffer.concat([frame(valid), frame(valid)])],
      ['the compressed flag without an encoding', frame(valid, 1)],
      ['a body shorter than the prefix', Buffer.from([0, 0])],
      ['a prefix announcing more than the body holds', frame(valid).subarray(0, 7)],
      ['a message over the size limit', frame(oversized)],
    ];
    for (const [what, body] of cases) {
      const fastBefore = await fastCalls();
      const fast = await call(GET, body, auth(), false, http2.connect(srv.url));
      const connect = await call(GET, body, auth(), true, http2.connect(srv.url));
      expect(await fastCalls(), what).toBe(fastBefore);
      expect(fast.status, what).toBe(connect.status);
      expect(fast.message, what).toBe(connect.message);
      expect(fast.status, what).not.toBe('0');
    }
  });

  it('leaves compressed calls to Connect, which serves them', async () => {
    const { gzipSync } = await import('node:zlib');
    const message = toBinary(GetUserByIDRequestSchema, create(GetUserByIDRequestSchema, { userId: 'no-such-user' }));
    const [fast, connect] = await both(GET, frame(gzipSync(message), 1), { ...auth(), 'grpc-encoding': 'gzip' }, false);
    expect(fast.status).toBe('5');
    expect(connect.status).toBe('5');
  });
});

interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One Connect-protocol call over HTTP/1.1; `viaConnect` adds a deadline, which sends it to Connect's handler. */
async function connectCall(path: string, body: Uint8Array | string, contentType: string, headers: Record<string, string>, viaConnect: boolean): Promise<HttpAnswer> {
  const res = await fetch(`${srv.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType, 'connect-protocol-version': '1', ...(viaConnect ? { 'connect-timeout-ms': '30000' } : {}), ...headers },
    body: typeof body === 'string' ? body : new Uint8Array(body),
  });
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (!['date', 'connection', 'keep-alive'].includes(k)) out[k] = v;
  });
  return { status: res.status, headers: out, body: Buffer.from(await res.arrayBuffer()) };
}

async function connectBoth(
  path: string,
  body: Uint8Array | string,
  contentType: string,
  headers: Record<string, string> = {},
  fastExpected = true,
): Promise<[HttpAnswer, HttpAnswer]> {
  const before = await fastCalls('connect');
  const fast = await connectCall(path, body, contentType, headers, false);
  const afterFast = await fastCalls('connect');
  const connect = await connectCall(path, body, contentType, headers, true);
  expect(await fastCalls('connect')).toBe(afterFast);
  expect(afterFast - before, `${path} ${contentType}`).toBe(fastExpected ? 1 : 0);
  return [fast, connect];
}

describe(`unary fast path, Connect protocol (${BACKEND})`, () => {
  const json = 'application/json';
  const proto = 'application/proto';

  it('answers successful JSON and protobuf calls like Connect: status, headers, body', async () => {
    const added = await connectCall(
      ADD,
      JSON.stringify({ username: 'connect-fast', profile: { givenName: 'C', familyName: 'F' }, email: { email: 'cf@example.com' } }),
      json,
      auth(),
      false,
    );
    expect(added.status).toBe(200);
    const userId = JSON.parse(added.body.toString()).userId as string;
    const [fast, connect] = await connectBoth(GET, JSON.stringify({ userId }), json, auth());
    expect(fast.status).toBe(200);
    expect(fast.headers).toEqual(connect.headers);
    expect(JSON.parse(fast.body.toString())).toEqual(JSON.parse(connect.body.toString()));
    const [fastProto, connectProto] = await connectBoth(GET, toBinary(GetUserByIDRequestSchema, create(GetUserByIDRequestSchema, { userId })), proto, auth());
    expect(fastProto.status).toBe(200);
    expect(fastProto.headers['content-type']).toBe(proto);
    expect(fastProto.headers).toEqual(connectProto.headers);
    expect(fastProto.body.equals(connectProto.body)).toBe(true);
  });

  it('answers errors like Connect: HTTP status, JSON error body, metadata headers', async () => {
    const cases: [string, string, Record<string, string>, number][] = [
      [GET, JSON.stringify({ userId: 'nö-such-user' }), auth(), 404],
      [LIST, '{}', {}, 401],
      [LIST, '{}', { authorization: 'Bearer not-a-token' }, 401],
      [ADD, JSON.stringify({ username: 'bad-mail', profile: { givenName: 'B', familyName: 'M' }, email: { email: 'not an address' } }), auth(), 400],
    ];
    for (const [path, body, headers, status] of cases) {
      const [fast, connect] = await connectBoth(path, body, json, headers);
      expect(fast.status, path).toBe(status);
      expect(connect.status, path).toBe(status);
      expect(fast.headers, path).toEqual(connect.headers);
      expect(JSON.parse(fast.body.toString()), path).toEqual(JSON.parse(connect.body.toString()));
    }
  });

  it('hands what it does not serve to Connect: same answers, not counted', async () => {
    const cases: [string, string | Uint8Array, string, Record<string, string>][] = [
      ['JSON that is not JSON', '{"userId": ', json, {}],
      ['an unknown JSON field', '{"userId": "x", "nope": 1}', json, {}],
      ['an empty JSON body', '', json, {}],
      ['protobuf bytes that do not decode', Buffer.from([0x0a, 0xff, 0xff]), proto, {}],
      ['a body over the size limit', JSON.stringify({ userId: 'x'.repeat(1024 * 1024) }), json, {}],
      ['a compressed body', (await import('node:zlib')).gzipSync(JSON.stringify({ userId: 'x' })), json, { 'content-encoding': 'gzip' }],
    ];
    for (const [what, body, type, headers] of cases) {
      const before = await fastCalls('connect');
      const fast = await connectCall(GET, body, type, { ...auth(), ...headers }, false);
      const connect = await connectCall(GET, body, type, { ...auth(), ...headers }, true);
      expect(await fastCalls('connect'), what).toBe(before);
      expect(fast.status, what).toBe(connect.status);
      expect(fast.body.toString(), what).toBe(connect.body.toString());
    }
  });
});

/** Resolves once the server has acknowledged a PING sent now on `session`. */
async function ping(session: http2.ClientHttp2Session): Promise<void> {
  if (session.connecting) await new Promise((resolve) => session.once('connect', resolve)); // a PING sent earlier is cancelled
  await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
}

/** One Connect unary call on an existing HTTP/2 connection: HTTP status and body. */
function unaryOn(session: http2.ClientHttp2Session, path: string, body: Uint8Array, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, ...headers });
    let status = 0;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end(body);
  });
}

describe(`unary fast path, aborted uploads (${BACKEND})`, () => {
  it('a call whose client resets the stream mid-upload is not run', async () => {
    const username = 'never-created';
    const message = toBinary(
      AddHumanUserRequestSchema,
      create(AddHumanUserRequestSchema, { username, profile: { givenName: 'N', familyName: 'C' }, email: { email: 'nc@example.com' } }),
    );
    // A complete request followed by an (unknown, ignorable) field 99 of 100 bytes: cut before that
    // field, what arrived is still a valid request, which must not run.
    const trailer = Buffer.concat([Buffer.from([0x9a, 0x06, 100]), Buffer.alloc(100, 0x61)]);
    const full = Buffer.concat([message, trailer]);
    const before = await fastCalls('connect');
    const own = http2.connect(srv.url);
    try {
      const headers = { 'content-type': 'application/proto', 'content-length': String(full.length), ...auth() };
      const req = own.request({ ':method': 'POST', ':path': ADD, ...headers });
      req.on('error', () => {});
      req.write(message);
      // The server handles a connection's frames in order and answers a PING after the frames sent
      // before it: no fixed sleep, each wait ends once the server has what came before.
      await ping(own); // it has the message
      req.close(http2.constants.NGHTTP2_CANCEL);
      await ping(own); // it has the reset, and has decided about the cut call
      // The same bytes, whole, on the same connection, are a valid call. Had the cut call run, it would
      // have run first (decided before this one arrived): this one would be ALREADY_EXISTS.
      const whole = await unaryOn(own, ADD, full, headers);
      expect(whole.status).toBe(200);
      const { userId } = fromBinary(AddHumanUserResponseSchema, whole.body);
      const rows = await srv.app.store.db.selectFrom('users').select('id').where('username', '=', username).execute();
      expect(rows).toEqual([{ id: userId }]);
      // And only the whole call went through the fast path (its counter moves before the call runs).
      expect(await fastCalls('connect')).toBe(before + 1);
    } finally {
      own.destroy();
    }
  });
});
