import { Code } from '@connectrpc/connect';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { createSchema, openTestStore, TEST_DATABASE_URL, BACKEND } from './helpers/server.js';
import { askAdminSocket } from '../src/server/admin-socket.js';

const run = promisify(execFile);
const BIN = path.resolve('bin/passkeyd.js');
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

interface Env {
  env: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

/** Environment for one CLI scenario: a private PGlite directory, or a private PostgreSQL schema. */
async function scenarioEnv(): Promise<Env> {
  const base: NodeJS.ProcessEnv = { ...process.env, PASSKEYD_LOG_LEVEL: 'info', PASSKEYD_PORT: '0' };
  delete base.DATABASE_URL;
  if (TEST_DATABASE_URL) {
    const { schema, drop } = await createSchema(TEST_DATABASE_URL);
    // Two workers: `serve --workers` is exercised on PostgreSQL.
    return { env: { ...base, DATABASE_URL: TEST_DATABASE_URL, PASSKEYD_DATABASE_SCHEMA: schema, PASSKEYD_WORKERS: '2' }, cleanup: drop };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-cli-'));
  return { env: { ...base, PASSKEYD_DATA_DIR: dir }, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
}

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [BIN, ...args], { env, timeout: 60_000 });
}

/** ListUsers over REST with a Bearer token: the HTTP status and the usernames listed. */
async function listUsersRest(url: string, token: string | undefined): Promise<{ status: number; usernames: string[] }> {
  const res = await fetch(`${url}/v2/users`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: '{}' });
  const body = (await res.json()) as { result?: { username: string }[] };
  return { status: res.status, usernames: (body.result ?? []).map((u) => u.username) };
}

/** Runs the CLI expecting it to fail; resolves with its exit code and stderr. */
async function cliFails(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stderr: string } | undefined> {
  return cli(env, ...args).then(
    () => undefined,
    (e: { code: number; stderr: string }) => e,
  );
}

/** Starts `passkeyd serve` and resolves with its port once it logs that it listens. */
function serve(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; port: number; logs: string[] }> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line);
          if (entry.msg === 'passkeyd listening') resolve({ child, port: entry.port, logs });
        } catch {
          /* not JSON */
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${logs.join('\n')}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

describe(`passkeyd CLI (${BACKEND})`, () => {
  // Several CLI processes, each loading the TypeScript sources through tsx: on a loaded machine that alone takes a minute.
  it('admin token prints only a JWT, also while serve runs; keys rotate keeps old tokens valid, keys retire ends them; SIGTERM stops cleanly', async () => {
    const { env, cleanup } = await scenarioEnv();
    try {
      // Before any server: the CLI opens the database itself (and creates it).
      const offline = await cli(env, 'admin', 'token', '--role', 'instance_admin', '--ttl', '10m');
      expect(offline.stdout.trim()).toMatch(JWT);
      expect(offline.stdout.trim().split('\n')).toHaveLength(1);

      const { child, port, logs } = await serve(env);
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      const users = clientFor(UserService, 'grpc', url);

      // While serve holds the database (PGlite: through its local socket).
      const online = (await cli(env, 'admin', 'token', '--role', 'instance_admin')).stdout.trim();
      expect(online).toMatch(JWT);
      expect((await users.listUsers({}, bearer(online))).details?.totalResult).toBe(0n);
      expect((await users.listUsers({}, bearer(offline.stdout.trim()))).details).toBeTruthy();

      const kidOf = (t: string) => JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()).kid as string;
      const rotated = (await cli(env, 'admin', 'keys', 'rotate')).stdout.trim();
      expect(rotated).not.toBe(kidOf(online));
      const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual([kidOf(online), rotated].sort());
      const fresh = (await cli(env, 'admin', 'token', '--role', 'org_admin')).stdout.trim();
      expect(kidOf(fresh)).toBe(rotated);
      // Old-key tokens keep working; new-key tokens work.
      expect((await users.listUsers({}, bearer(online))).details).toBeTruthy();
      expect((await users.listUsers({}, bearer(fresh))).details).toBeTruthy();

      // keys retire: the old key's tokens are refused within a second (on PostgreSQL, by both workers,
      // which learn it from the database) and it leaves JWKS; the current key's tokens keep working.
      const retired = (await cli(env, 'admin', 'keys', 'retire', kidOf(online))).stdout.trim();
      expect(retired).toBe(`retired ${kidOf(online)}`);
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 4; i++) expect(await codeOf(users.listUsers({}, bearer(online)))).toBe(Code.Unauthenticated);
      const after = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      expect(after.keys.map((k) => k.kid)).toEqual([rotated]);
      expect((await users.listUsers({}, bearer(fresh))).details).toBeTruthy();
      const again = await cliFails(env, 'admin', 'keys', 'retire', kidOf(online));
      expect(again?.code).toBe(2);
      expect(again?.stderr).toMatch(/^passkeyd: signing key .* is retired already/);

      // At the default level a failed call is logged (a successful one only at debug): one line, no token.
      expect(await codeOf(users.listUsers({}, bearer('not-a-token')))).toBe(Code.Unauthenticated);
      await new Promise((r) => setTimeout(r, 200)); // pino writes asynchronously
      const logged = logs.join('\n');
      const line = logged.split('\n').find((l) => l.includes('"procedure":"passkeyd.user.v2.UserService/ListUsers"'));
      expect(line).toBeDefined();
      expect(JSON.parse(line!)).toMatchObject({ level: 30, protocol: 'grpc', code: 'Unauthenticated', msg: 'rpc' });
      expect(logged).not.toContain(online);
      expect(logged).not.toContain('not-a-token');

      child.kill('SIGTERM');
      expect(await exited(child), logs.join('\n')).toBe(0);
      expect(logs.join('\n')).toContain('passkeyd stopped');
      if (env.DATABASE_URL) {
        // A primary and two workers that share the port; SIGTERM drains both.
        expect(logs.join('\n')).toContain('"workers":2,"msg":"passkeyd primary started"');
        expect(logs.filter((l) => l.includes('"msg":"passkeyd listening"'))).toHaveLength(2);
        expect(logs.filter((l) => l.includes('"msg":"passkeyd stopped"'))).toHaveLength(2);
      }
      if (env.PASSKEYD_DATA_DIR) {
        expect(existsSync(path.join(env.PASSKEYD_DATA_DIR, 'passkeyd.lock'))).toBe(false);
        expect(existsSync(path.join(env.PASSKEYD_DATA_DIR, 'passkeyd.sock'))).toBe(false);
      }
    } finally {
      await cleanup();
    }
  }, 180_000);

  // Five CLI processes of about 2.5 s start-up each here; a loaded round (both suites at once) took this
  // test past 60 s while one of them still opened and migrated the database before refusing.
  it('mistakes get a clear message and exit code 2, no stack trace', async () => {
    const { env, cleanup } = await scenarioEnv();
    try {
      const mistakes = [
        ['admin', 'token'],
        ['admin', 'token', '--role', 'root'],
        ['admin', 'machine-user', 'create', '--name', 'ci', '--role', 'root'],
        ['serve', '--prot', '1'],
        ['frobnicate'],
      ];
      for (const args of mistakes) {
        const err = await cliFails(env, ...args);
        expect(err?.code, args.join(' ')).toBe(2);
        expect(err?.stderr).toMatch(/^passkeyd: /);
        expect(err?.stderr).not.toMatch(/\n\s+at /);
      }
      // Each was refused before the database was opened: nothing was created or migrated.
      if (env.PASSKEYD_DATA_DIR) expect(readdirSync(env.PASSKEYD_DATA_DIR)).toEqual([]);
      else {
        const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
        await client.connect();
        try {
          const tables = await client.query<{ n: number }>('select count(*)::int as n from information_schema.tables where table_schema = $1', [env.PASSKEYD_DATABASE_SCHEMA]);
          expect(tables.rows[0]?.n).toBe(0);
        } finally {
          await client.end();
        }
      }
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('admin machine-user create prints only a key file or a PAT that works as a Bearer token; admin token is capped at 24h', async () => {
    const { env, cleanup } = await scenarioEnv();
    try {
      // Before any server: the CLI opens the database itself. --key is the default credential.
      const keyOut = (await cli(env, 'admin', 'machine-user', 'create', '--name', 'deployer', '--role', 'org_admin')).stdout;
      expect(keyOut.trim().split('\n')).toHaveLength(1);
      const keyFile = JSON.parse(keyOut) as Record<string, string>;
      expect(keyFile).toMatchObject({ type: 'serviceaccount', keyId: expect.any(String), userId: expect.any(String) });
      expect(keyFile.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect(createPrivateKey(keyFile.key!).asymmetricKeyType).toBe('rsa');
      const year = Date.parse(keyFile.expirationDate!) - Date.now();
      expect(year).toBeGreaterThan(364 * 86400_000);
      expect(year).toBeLessThanOrEqual(365 * 86400_000);

      // Longer than 24h is refused, and the message points to the revocable credential; 24h works.
      const tooLong = await cliFails(env, 'admin', 'token', '--role', 'instance_admin', '--ttl', '25h');
      expect(tooLong?.code).toBe(2);
      expect(tooLong?.stderr).toMatch(/^passkeyd: .*at most 24h.*admin machine-user create/);
      expect(tooLong?.stderr).not.toMatch(/\n\s+at /);
      const day = (await cli(env, 'admin', 'token', '--role', 'instance_admin', '--ttl', '24h')).stdout.trim();
      expect(day).toMatch(JWT);

      const { child, port, logs } = await serve(env);
      children.push(child);
      const url = `http://127.0.0.1:${port}`;

      // While serve runs (PGlite: through the admin socket).
      const pats: Record<string, string> = {};
      for (const role of ['org_admin', 'instance_admin', 'session_manager']) {
        const { stdout } = await cli(env, 'admin', 'machine-user', 'create', '--name', `svc-${role}`, '--role', role, '--pat', '--ttl', '30d');
        expect(stdout).toMatch(/^pat_[\w-]+\n$/);
        pats[role] = stdout.trim();
      }
      for (const role of ['org_admin', 'instance_admin']) {
        const listed = await listUsersRest(url, pats[role]);
        expect(listed.status, role).toBe(200);
        expect(listed.usernames).toEqual(expect.arrayContaining(['deployer', 'svc-org_admin']));
      }
      // A session manager may not list users; an unknown token is not authenticated.
      expect((await listUsersRest(url, pats.session_manager)).status).toBe(403);
      expect((await listUsersRest(url, `${pats.org_admin}x`)).status).toBe(401);
      expect((await listUsersRest(url, day)).status).toBe(200);

      // Mistakes while serve runs are still exit code 2 with the domain's message.
      const taken = await cliFails(env, 'admin', 'machine-user', 'create', '--name', 'deployer', '--role', 'org_admin', '--pat');
      expect(taken?.code).toBe(2);
      expect(taken?.stderr).toMatch(/^passkeyd: username "deployer" is already taken/);
      const both = await cliFails(env, 'admin', 'machine-user', 'create', '--name', 'x', '--role', 'org_admin', '--key', '--pat');
      expect(both?.code).toBe(2);
      if (env.PASSKEYD_DATA_DIR) {
        // The server refuses a long admin token too (the CLI checks first, so ask its socket directly).
        await expect(askAdminSocket(env.PASSKEYD_DATA_DIR, '/token', { role: 'instance_admin', ttlSeconds: 25 * 3600 })).rejects.toThrow(/at most 24h/);
      }

      child.kill('SIGTERM');
      expect(await exited(child), logs.join('\n')).toBe(0);

      // The audit trail names the CLI as the creator.
      const { store, cleanup: close } = env.DATABASE_URL
        ? await openTestStore({ schema: env.PASSKEYD_DATABASE_SCHEMA })
        : await openTestStore({ dataDir: env.PASSKEYD_DATA_DIR, embedded: true });
      try {
        const rows = await store.db.selectFrom('events').select(['event_type', 'creator']).where('aggregate_id', '=', keyFile.userId!).orderBy('sequence').execute();
        expect(rows).toEqual([
          { event_type: 'user.machine.added', creator: 'cli' },
          { event_type: 'user.administrator.added', creator: 'cli' },
          { event_type: 'user.key.added', creator: 'cli' },
        ]);
      } finally {
        await store.close();
        await close();
      }
    } finally {
      await cleanup();
    }
  }, 180_000);
});
