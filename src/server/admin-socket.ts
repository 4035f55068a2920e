import { createHash } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  createMachineUserWithRole,
  inviteUser,
  mintAdminToken,
  retiredMessage,
  retireSigningKey,
  rotateSigningKey,
  type AdminTokenRequest,
  type InviteRequest,
  type MachineUserRequest,
} from '../domain/admin.js';
import { PasskeydError, type ErrorKind } from '../errors.js';
import type { App } from './app.js';

/** Where the admin socket of a PGlite data directory lives (short enough for AF_UNIX paths). */
function adminSocketPath(dataDir: string): string {
  const p = path.resolve(dataDir, 'passkeyd.sock');
  if (p.length < 100) return p;
  return path.join(os.tmpdir(), `passkeyd-${createHash('sha256').update(p).digest('hex').slice(0, 16)}.sock`);
}

/** Carries a {@link PasskeydError}'s kind from the server's answer back to the CLI. */
const ERROR_KIND_HEADER = 'x-passkeyd-error-kind';

async function readJson(req: http.IncomingMessage): Promise<any> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 65536) throw new Error('too large');
  }
  return body ? JSON.parse(body) : {};
}

/**
 * A local-only channel for `passkeyd admin ...` while `serve` holds the PGlite directory: an HTTP
 * server on a Unix socket that only the owner of the data directory can open (mode 0600).
 */
export async function startAdminSocket(app: App): Promise<() => Promise<void>> {
  const file = adminSocketPath(app.config.dataDir);
  rmSync(file, { force: true });
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'POST' && req.url === '/token') {
        const body = (await readJson(req)) as AdminTokenRequest;
        const token = await mintAdminToken(app.store.db, app.tokens, body);
        res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
      } else if (req.method === 'POST' && req.url === '/keys/rotate') {
        const kid = await rotateSigningKey(app.store.db, app.tokens, { tokenTtlSeconds: app.config.tokenTtlSeconds });
        res.writeHead(200, { 'content-type': 'text/plain' }).end(kid);
      } else if (req.method === 'POST' && req.url === '/keys/retire') {
        const body = (await readJson(req)) as { kid: string };
        const { retired, newKid } = await retireSigningKey(app.store.db, app.tokens, String(body.kid), 'cli', { tokenTtlSeconds: app.config.tokenTtlSeconds });
        res.writeHead(200, { 'content-type': 'text/plain' }).end(retiredMessage(retired, newKid));
      } else if (req.method === 'POST' && req.url === '/machine-users') {
        const body = (await readJson(req)) as MachineUserRequest;
        const created = await createMachineUserWithRole(app.store.db, body, 'cli');
        res.writeHead(200, { 'content-type': 'text/plain' }).end(created.secret);
      } else if (req.method === 'POST' && req.url === '/invite') {
        const body = (await readJson(req)) as InviteRequest;
        const link = await inviteUser(app.store.db, body, { issuer: app.config.issuer, codeTtlSeconds: app.config.registrationCodeTtlSeconds }, 'cli');
        res.writeHead(200, { 'content-type': 'text/plain' }).end(link);
      } else {
        res.writeHead(404).end('not found');
      }
    } catch (err) {
      // A refusal keeps its kind, so the CLI reports it like one made against the database directly.
      if (err instanceof PasskeydError) res.writeHead(400, { 'content-type': 'text/plain', [ERROR_KIND_HEADER]: err.kind }).end(err.message);
      else res.writeHead(500, { 'content-type': 'text/plain' }).end((err as Error).message);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => resolve());
  });
  chmodSync(file, 0o600);
  return async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(file, { force: true });
  };
}

/**
 * Asks a running server over its admin socket; undefined when none answers. A refusal rejects with a
 * {@link PasskeydError} of the same kind and message; any other failure with a plain Error.
 */
export async function askAdminSocket(dataDir: string, route: string, body: unknown): Promise<string | undefined> {
  const socketPath = adminSocketPath(dataDir);
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: route, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        if (res.statusCode === 200) return resolve(text);
        const kind = res.headers[ERROR_KIND_HEADER];
        reject(typeof kind === 'string' ? new PasskeydError(kind as ErrorKind, text) : new Error(text));
      });
    });
    req.on('error', () => resolve(undefined));
    req.end(JSON.stringify(body));
  });
}
