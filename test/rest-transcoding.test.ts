/**
 * The REST transcoder's mechanics over real HTTP, on a service built for the purpose (every field kind,
 * every template feature), served by the same ConnectRouter handlers the server uses.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Code, ConnectError, createConnectRouter, createContextValues, type Interceptor } from '@connectrpc/connect';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAddressKey, restKey } from '../src/api/context.js';
import { createRestTranscoder } from '../src/api/transport/rest/transcoder.js';
import { EchoService, Shelf } from './helpers/rest-echo-service.js';

const MAX = 4096;
let server: http.Server;
let base: string;
const seen: { method: string; rest: boolean; authorization: string | null; acceptEncoding: string | null; address: string }[] = [];

beforeAll(async () => {
  const recorder: Interceptor = (next) => async (req) => {
    seen.push({
      method: req.method.name,
      rest: req.contextValues.get(restKey),
      authorization: req.header.get('authorization'),
      acceptEncoding: req.header.get('accept-encoding'),
      address: req.contextValues.get(clientAddressKey),
    });
    return next(req);
  };
  const router = createConnectRouter({ jsonOptions: { ignoreUnknownFields: false } });
  const echo = (req: unknown) => req;
  router.service(
    EchoService,
    {
      get: echo,
      post: echo,
      literal: echo,
      picked: echo,
      files: echo,
      fail(req: { count: number }) {
        throw new ConnectError(`failing with ${Code[req.count]}`, req.count as Code, { 'retry-after': '7' }, [{ desc: Shelf, value: { id: 'detail-id', size: 3 } }]);
      },
    } as any,
    { interceptors: [recorder] },
  );
  const rest = createRestTranscoder({
    handlers: router.handlers,
    contextValues: (req) => createContextValues().set(clientAddressKey, req.socket.remoteAddress ?? 'unknown'),
    maxBodyBytes: MAX,
    maxJsonDepth: 64,
    log: pino({ level: 'silent' }),
  });
  server = http.createServer((req, res) => rest(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function call(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { method, body, headers: { 'content-type': 'application/json', ...headers } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined };
}

describe('REST transcoding mechanics', () => {
  it('GET: nested and multi-segment path variables, every scalar kind from the query string', async () => {
    const q = new URLSearchParams([
      ['count', '-5'],
      ['big', '9007199254740993'],
      ['limit', '7'],
      ['flag', 'true'],
      ['ratio', '0.5'],
      ['color', 'COLOR_BLUE'],
      ['tags', 'a'],
      ['tags', 'b c'],
      ['colors', '1'],
      ['colors', 'COLOR_BLUE'],
      ['at', '2024-01-02T03:04:05Z'],
      ['maybe', '3'],
      ['shelf.size', '4'],
      ['userNote', 'camel'],
      ['blob', 'AQID'],
    ]);
    const r = await call('GET', `/v1/shelves/s%201/books/pages/p%2F2?${q}`, undefined, { authorization: 'Bearer abc', 'accept-encoding': 'gzip' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.json).toEqual({
      name: 'pages/p%2F2',
      shelf: { id: 's 1', size: 4 },
      count: -5,
      big: '9007199254740993',
      limit: 7,
      flag: true,
      ratio: 0.5,
      color: 'COLOR_BLUE',
      tags: ['a', 'b c'],
      colors: ['COLOR_RED', 'COLOR_BLUE'],
      at: '2024-01-02T03:04:05Z',
      maybe: 3,
      userNote: 'camel',
      blob: 'AQID',
    });
    const last = seen[seen.length - 1]!;
    expect(last).toMatchObject({ method: 'Get', rest: true, authorization: 'Bearer abc', address: '127.0.0.1' });
    // The client's Accept-Encoding is its business with this server, not the inner Connect call's.
    expect(last.acceptEncoding).toBeNull();
  });

  it('query values that do not fit their field are INVALID_ARGUMENT (400), naming the parameter', async () => {
    for (const [query, fragment] of [
      ['count=2147483648', 'count'],
      ['count=1.5', 'count'],
      ['limit=-1', 'limit'],
      ['big=12x', 'big'],
      ['flag=yes', 'flag'],
      ['ratio=abc', 'ratio'],
      ['color=PURPLE', 'COLOR_RED'],
      ['nope=1', 'nope'],
      ['count=1&count=2', 'more than once'],
      ['shelf.id=x', 'already set'],
      ['extra=1', 'JSON body'],
      ['at=yesterday', 'at'],
    ] as const) {
      const r = await call('GET', `/v1/shelves/s1/books/pages/p?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.json.code, query).toBe(Code.InvalidArgument);
      expect(r.json.message, query).toContain(fragment);
      expect(r.json.details).toEqual([]);
    }
  });

  it('POST body "*": snake_case and lowerCamelCase in, lowerCamelCase out; Struct and Timestamp JSON', async () => {
    const body = {
      user_note: 'snake',
      shelf: { id: 'x', size: 2 },
      at: '2024-05-06T07:08:09.250+02:00',
      extra: { n: 1.5, s: 'two', b: false, z: null, list: [1, 'a', { deep: true }], obj: { k: 'v' } },
      colors: ['COLOR_RED', 2],
      big: 42,
    };
    const r = await call('POST', '/v1/echo', JSON.stringify(body));
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      userNote: 'snake',
      shelf: { id: 'x', size: 2 },
      at: '2024-05-06T05:08:09.250Z',
      extra: body.extra,
      colors: ['COLOR_RED', 'COLOR_BLUE'],
      big: '42',
    });
  });

  it('body "*" takes no query parameters; a no-body route takes no body; bad JSON and unknown fields are 400', async () => {
    expect((await call('POST', '/v1/echo?count=1', '{}')).status).toBe(400);
    const noBody = await call('DELETE', '/v1/fail/a', '{"count":1}');
    expect(noBody.status).toBe(400);
    expect(noBody.json.message).toContain('takes no request body');
    const bad = await call('POST', '/v1/echo', '{"count":');
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ code: Code.InvalidArgument, details: [] });
    expect(bad.json.message).toContain('not valid JSON');
    const notObject = await call('POST', '/v1/echo', '[1,2]');
    expect(notObject.status).toBe(400);
    const unknown = await call('POST', '/v1/echo', '{"colour":"red"}');
    expect(unknown.status).toBe(400);
    expect(unknown.json.code).toBe(Code.InvalidArgument);
    const wrongType = await call('POST', '/v1/echo', '{"count":"many"}');
    expect(wrongType.status).toBe(400);
    // An empty body is an empty message.
    expect((await call('POST', '/v1/echo', '')).json).toEqual({});
  });

  it('path variables win over the same field in the body', async () => {
    const r = await call('POST', '/v1/shelves/from-path:echo', JSON.stringify({ k: 'v' }));
    expect(r.json).toEqual({ shelf: { id: 'from-path' }, extra: { k: 'v' } });
  });

  it('additional_bindings with a single-field body; a literal segment wins over a variable', async () => {
    const viaBinding = await call('POST', '/v1/shelves/other:echo', JSON.stringify({ any: ['json'] }));
    expect(viaBinding.status).toBe(200);
    expect(viaBinding.json).toEqual({ shelf: { id: 'other' }, extra: { any: ['json'] } });
    expect(seen[seen.length - 1]!.method).toBe('Get');
    const literal = await call('POST', '/v1/shelves/special:echo', JSON.stringify({ name: 'lit' }));
    expect(literal.json).toEqual({ name: 'lit' });
    expect(seen[seen.length - 1]!.method).toBe('Literal');
  });

  it('response_body sends one field; "**" captures the rest of the path', async () => {
    const picked = await call('GET', '/v1/picked/n?shelf.id=z&shelf.size=9');
    expect(picked.json).toEqual({ id: 'z', size: 9 });
    const files = await call('GET', '/v1/files/a/b%2Fc/d');
    expect(files.json).toEqual({ name: 'a/b%2Fc/d' });
    expect((await call('GET', '/v1/files/')).status).toBe(404);
  });

  it('every gRPC code maps to its HTTP status with a google.rpc.Status body, details and retry-after', async () => {
    const expected: Record<number, number> = {
      [Code.Canceled]: 499,
      [Code.Unknown]: 500,
      [Code.InvalidArgument]: 400,
      [Code.DeadlineExceeded]: 504,
      [Code.NotFound]: 404,
      [Code.AlreadyExists]: 409,
      [Code.PermissionDenied]: 403,
      [Code.ResourceExhausted]: 429,
      [Code.FailedPrecondition]: 400,
      [Code.Aborted]: 409,
      [Code.OutOfRange]: 400,
      [Code.Unimplemented]: 501,
      [Code.Internal]: 500,
      [Code.Unavailable]: 503,
      [Code.DataLoss]: 500,
      [Code.Unauthenticated]: 401,
    };
    for (const [code, status] of Object.entries(expected)) {
      const r = await call('DELETE', `/v1/fail/x?count=${code}`);
      expect(r.status, Code[Number(code)]).toBe(status);
      expect(r.json).toEqual({
        code: Number(code),
        message: `failing with ${Code[Number(code)]}`,
        details: [{ '@type': 'type.googleapis.com/test.echo.v1.Shelf', id: 'detail-id', size: 3 }],
      });
      expect(r.headers.get('retry-after')).toBe('7');
      expect(r.headers.get('content-type')).toBe('application/json');
    }
  });

  it('unknown paths are 404 and known paths with another method 405 with Allow, both in the JSON error form', async () => {
    const missing = await call('GET', '/v1/nothing/here');
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ code: Code.NotFound, details: [] });
    const wrong = await call('PUT', '/v1/echo', '{}');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    expect(wrong.json).toMatchObject({ code: Code.Unimplemented, details: [] });
    expect((await call('GET', '/v1/shelves/s1/books/notpages/p')).status).toBe(404);
    expect((await call('GET', '/v1/shelves/s1/books/pages/%E0%A4%A')).status).toBe(404);
  });

  it(`bodies over the limit are refused with 413 before parsing, whether announced or streamed`, async () => {
    const big = JSON.stringify({ name: 'x'.repeat(MAX) });
    const announced = await call('POST', '/v1/echo', big);
    expect(announced.status).toBe(413);
    expect(announced.json).toMatchObject({ code: Code.ResourceExhausted, details: [] });
    const before = seen.length;
    // Chunked, without Content-Length: refused as the bytes arrive.
    const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${base}/v1/echo`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.write(big.slice(0, 3000));
      setTimeout(() => req.end(big.slice(3000)), 20);
    });
    expect(streamed.status).toBe(413);
    expect(JSON.parse(streamed.body).code).toBe(Code.ResourceExhausted);
    expect(seen.length).toBe(before);
    // Just under the limit is fine.
    expect((await call('POST', '/v1/echo', JSON.stringify({ name: 'y'.repeat(MAX - 20) }))).status).toBe(200);
  });
});
