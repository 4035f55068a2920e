/**
 * The soak (not in CI): `npm run soak -- --duration 60s [--rate 20] [--workers 2] [--cut 5s]`.
 * Starts passkeyd in cluster mode on a private PostgreSQL schema, with its database connections going
 * through a TCP proxy, and runs mixed calls at a steady rate: logins (CreateSession → sign → SetSession),
 * registrations (AddHumanUser → RegisterPasskey → sign → VerifyPasskeyRegistration) and management
 * calls (ListUsers, GetUserByID, ListPasskeys). At a third of the run the proxy cuts the database off
 * (refused and reset connections; the real PostgreSQL keeps running), at two thirds one worker is
 * killed (SIGKILL). Reports outcomes by code, latency p50/p99 per kind, and the service's memory at
 * start and end: RSS of the primary and its workers (from /proc) and V8 heap in use (from /metrics).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import pg from 'pg';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator, type SoftAuthenticator } from '../test/helpers/authenticator.js';
import { startTcpProxy } from '../test/helpers/tcp-proxy.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : fallback;
};
const seconds = (v: string) => (v.endsWith('ms') ? Number(v.slice(0, -2)) / 1000 : v.endsWith('m') ? Number(v.slice(0, -1)) * 60 : Number(v.replace(/s$/, '')));
const duration = seconds(flag('duration', '60s'));
const rate = Number(flag('rate', '20'));
const workers = flag('workers', '2');
const cutSeconds = seconds(flag('cut', '5s'));
const databaseUrl = flag('database-url', process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
const origin = 'http://localhost:8080';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The process and its descendants (the cluster's workers). */
function tree(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return [pid, ...kids.flatMap(tree)];
}

function rssMiB(pid: number): number {
  let kb = 0;
  for (const p of tree(pid)) {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    kb += Number(m?.[1] ?? 0);
  }
  return Math.round(kb / 102.4) / 10;
}

/** Heap in use as /metrics reports it: several scrapes, as the workers share the port (distinct values). */
async function heapMiB(url: string): Promise<number[]> {
  const seen = new Set<number>();
  for (let i = 0; i < 8; i++) {
    try {
      const text = await (await fetch(`${url}/metrics`, { headers: { connection: 'close' } })).text();
      const heap = /^nodejs_heap_size_used_bytes (\d+(?:\.\d+)?)/m.exec(text);
      if (heap) seen.add(Math.round(Number(heap[1]) / 104857.6) / 10);
    } catch {
      /* a worker restarting */
    }
  }
  return [...seen].sort((a, b) => a - b);
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('passkeyd did not become ready');
}

const codeName = (err: unknown) => {
  const e = ConnectError.from(err);
  return Code[e.code] ?? String(e.code);
};

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

async function main(): Promise<void> {
  const schema = `soak_${process.pid}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  const target = new URL(databaseUrl);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  const viaProxy = new URL(databaseUrl);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PASSKEYD_PORT: String(port),
    PASSKEYD_ORIGINS: origin,
    PASSKEYD_LOG_LEVEL: 'warn',
    PASSKEYD_RATE_LIMIT: '1000000000',
    PASSKEYD_WORKERS: workers,
    DATABASE_URL: viaProxy.toString(),
    PASSKEYD_DATABASE_SCHEMA: schema,
  };
  const server = spawn(process.execPath, ['bin/passkeyd.js', 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitReady(url);
    // Asynchronously: the TCP proxy runs in this process, and the CLI's connections go through it.
    const token = (await promisify(execFile)(process.execPath, ['bin/passkeyd.js', 'admin', 'token', '--role', 'instance_admin', '--ttl', '2h'], { env })).stdout.trim();
    const auth = { headers: { authorization: `Bearer ${token}` } };
    const transport = createConnectTransport({ baseUrl: url, httpVersion: '1.1' });
    const users = createClient(UserService, transport);
    const sessions = createClient(SessionService, transport);

    const registered: { userId: string; authenticator: SoftAuthenticator }[] = [];
    let n = 0;
    const register = async () => {
      const { userId } = await users.addHumanUser(
        { username: `soak-${process.pid}-${n++}`, profile: { givenName: 'Soak', familyName: 'Test' }, email: { email: `soak${n}@example.com` } },
        auth,
      );
      // Sign counter always 0 (a synced passkey): a user may log in on two calls at once.
      const authenticator = createSoftAuthenticator({ counter: 'zero' });
      const begun = await users.registerPasskey({ userId }, auth);
      const options = (begun.publicKeyCredentialCreationOptions as unknown as { publicKey: PublicKeyCredentialCreationOptionsJSON }).publicKey;
      const credential = await authenticator.register(options, { origin });
      await users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: credential as any, passkeyName: 'soak' }, auth);
      registered.push({ userId, authenticator });
    };
    const login = async () => {
      const who = registered[Math.floor(Math.random() * registered.length)]!;
      const created = await sessions.createSession({ checks: { user: { search: { case: 'userId', value: who.userId } } }, challenges: { webAuthN: {} } });
      const requestOptions = created.challenges?.webAuthN?.publicKeyCredentialRequestOptions as unknown as { publicKey: PublicKeyCredentialRequestOptionsJSON };
      const assertion = await who.authenticator.authenticate(requestOptions.publicKey, { origin });
      const set = await sessions.setSession({
        sessionId: created.sessionId,
        sessionToken: created.sessionToken,
        checks: { webAuthN: { credentialAssertionData: assertion as any } },
      });
      if (!set.accessToken) throw new Error('no access token');
    };
    const manage = async () => {
      const who = registered[Math.floor(Math.random() * registered.length)]!;
      const pick = Math.random();
      if (pick < 0.34) await users.listUsers({ query: { limit: 20 } }, auth);
      else if (pick < 0.67) await users.getUserByID({ userId: who.userId }, auth);
      else await users.listPasskeys({ userId: who.userId }, auth);
    };
    for (let i = 0; i < 20; i++) await register();

    const rssStart = rssMiB(server.pid!);
    const heapStart = await heapMiB(url);
    const latencies: Record<string, number[]> = { login: [], registration: [], management: [] };
    const outcomes: Record<string, Record<string, number>> = { login: {}, registration: {}, management: {} };
    const events: string[] = [];
    // Outcomes also by the phase a call began in, to tell the cut and the kill from steady state.
    let phase = '1 before the cut';
    const byPhase: Record<string, Record<string, number>> = {};
    const started = performance.now();
    const at = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;
    const inFlight = new Set<Promise<void>>();
    const one = (kind: string, fn: () => Promise<void>) => {
      const t = performance.now();
      const phaseTally = (byPhase[phase] ??= {});
      const count = (c: string) => {
        outcomes[kind]![c] = (outcomes[kind]![c] ?? 0) + 1;
        phaseTally[c] = (phaseTally[c] ?? 0) + 1;
      };
      const p = fn().then(
        () => {
          latencies[kind]!.push(performance.now() - t);
          count('ok');
        },
        (err) => count(codeName(err)),
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    const timers = [
      setTimeout(
        async () => {
          events.push(`${at()} database cut (proxy refuses and resets connections) for ${cutSeconds}s`);
          await proxy.cut();
          phase = '2 database cut';
          setTimeout(async () => {
            await proxy.restore();
            phase = '3 after the restore';
            events.push(`${at()} database restored`);
          }, cutSeconds * 1000);
        },
        (duration * 1000) / 3,
      ),
      setTimeout(
        () => {
          const victim = tree(server.pid!).find((p) => p !== server.pid);
          if (victim) process.kill(victim, 'SIGKILL');
          phase = '4 after the worker kill';
          events.push(`${at()} worker ${victim ?? '(none found)'} killed with SIGKILL`);
        },
        (duration * 2000) / 3,
      ),
    ];
    // A steady rate: one call every 1/rate seconds, whatever the answers take: 60% logins, 20%
    // registrations, 20% management calls.
    const total = Math.floor(duration * rate);
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const r = Math.random();
      if (r < 0.6) one('login', login);
      else if (r < 0.8) one('registration', register);
      else one('management', manage);
    }
    await Promise.all([...inFlight]);
    timers.forEach(clearTimeout);
    const elapsed = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const rssEnd = rssMiB(server.pid!);
    const heapEnd = await heapMiB(url);

    const summary = Object.fromEntries(
      Object.entries(latencies).map(([kind, l]) => {
        const sorted = l.sort((a, b) => a - b);
        return [kind, { outcomes: outcomes[kind], p50ms: Math.round(percentile(sorted, 50) * 10) / 10, p99ms: Math.round(percentile(sorted, 99) * 10) / 10 }];
      }),
    );
    const report = {
      durationSeconds: Math.round(elapsed * 10) / 10,
      ratePerSecond: rate,
      calls: total,
      workers,
      events,
      byKind: summary,
      byPhase,
      memory: { rssMiB: { start: rssStart, end: rssEnd }, heapUsedMiBSamples: { start: heapStart, end: heapEnd } },
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await proxy.close();
    await admin.query(`drop schema if exists ${schema} cascade`);
    await admin.end();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
