/**
 * The load generator, run as its own process by bench/run.ts: provisions users, times registrations,
 * then drives full logins (CreateSession → sign → SetSession) for a fixed time at a fixed concurrency.
 * Talks to the parent over IPC so the parent can sample the service's CPU at phase boundaries.
 */
import { createClient, type Client, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { SessionService } from '../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { createSoftAuthenticator, type SoftAuthenticator } from '../test/helpers/authenticator.js';
import { createLeanConnectClient } from './connect-client.js';
import { createLeanGrpcClient } from './grpc-client.js';
import { openLoop } from './open-loop.js';

export interface LoadParams {
  url: string;
  origin: string;
  adminToken: string;
  protocol: 'grpc' | 'connect';
  /** 'lean' (bench/grpc-client.ts, bench/connect-client.ts) or 'connect' (Connect's transports). */
  client: 'lean' | 'connect';
  users: number;
  concurrency: number;
  warmupSeconds: number;
  durationSeconds: number;
  registrationSeconds: number;
  registrationConcurrency: number;
  /** Also measure the hand-rolled baseline (bench/baseline-server.ts), alternating with passkeyd. */
  baseline: boolean;
  /** Closed-loop login phases per server (A B A B … with the baseline). */
  rounds: number;
  /** With the baseline, the null server (bench/null-server.ts) takes closed-loop turns too: the most logins/s a server can reach here. */
  ceiling: boolean;
  /** Open-loop arrivals per second; 0 means half the closed-loop rate passkeyd reached. */
  openRate: number;
  openSeconds: number;
}

export interface PhaseStats {
  ops: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
  firstError?: string;
}

export interface OpenLoopStats extends PhaseStats {
  rate: number;
  /** The p99 of the arrivals due in each second of the phase. */
  p99BySecond: number[];
  /** The longest stretch (ms) in which logins were running and none finished, and how many lasted 30 ms or more. */
  longestStall: number;
  stalls: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function stats(latencies: number[], errors: number, seconds: number, firstError?: string): PhaseStats {
  const sorted = latencies.slice().sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 100) / 100;
  return {
    ops: latencies.length,
    errors,
    seconds: r(seconds),
    perSecond: r(latencies.length / seconds),
    p50: r(percentile(sorted, 50)),
    p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)),
    ...(firstError ? { firstError } : {}),
  };
}

/** One HTTP/2 connection per few lanes, so a multi-process server gets its share of connections. */
function transports(p: LoadParams, lanes: number): Transport[] {
  const n = Math.max(1, Math.ceil(lanes / 4));
  return Array.from({ length: n }, () => (p.protocol === 'grpc' ? createGrpcTransport({ baseUrl: p.url } as any) : createConnectTransport({ baseUrl: p.url, httpVersion: '1.1' })));
}

type Sessions = Pick<Client<typeof SessionService>, 'createSession' | 'setSession'>;
type Users = Pick<Client<typeof UserService>, 'addHumanUser' | 'registerPasskey' | 'verifyPasskeyRegistration'>;

/** The clients the lanes share: the lean gRPC client, or Connect's clients on its transports. */
function clientsFor(p: LoadParams, lanes: number, url = p.url): { sessions: Sessions; users: Users }[] {
  if (p.client === 'lean') {
    return Array.from({ length: Math.max(1, Math.ceil(lanes / 4)) }, () => {
      const c = p.protocol === 'grpc' ? createLeanGrpcClient(url) : createLeanConnectClient(url, 4);
      const headersOf = (o?: { headers?: Record<string, string> }) => o?.headers;
      const sessions = {
        createSession: (m: any, o?: any) => c.call(SessionService.method.createSession, m, headersOf(o)),
        setSession: (m: any, o?: any) => c.call(SessionService.method.setSession, m, headersOf(o)),
      } as unknown as Sessions;
      const users = {
        addHumanUser: (m: any, o?: any) => c.call(UserService.method.addHumanUser, m, headersOf(o)),
        registerPasskey: (m: any, o?: any) => c.call(UserService.method.registerPasskey, m, headersOf(o)),
        verifyPasskeyRegistration: (m: any, o?: any) => c.call(UserService.method.verifyPasskeyRegistration, m, headersOf(o)),
      } as unknown as Users;
      return { sessions, users };
    });
  }
  return transports(p, lanes).map((t) => ({ sessions: createClient(SessionService, t), users: createClient(UserService, t) }));
}

type Answer = { ack?: string; baselineUrl?: string; nullUrl?: string };

function ask(msg: Record<string, unknown>): Promise<Answer> {
  return new Promise((resolve) => {
    const onMessage = (m: Answer) => {
      if (m.ack === msg.type) {
        process.off('message', onMessage);
        resolve(m);
      }
    };
    process.on('message', onMessage);
    process.send!(msg);
  });
}

/** Runs `work` on `lanes` concurrent loops until the deadline; returns latencies in ms. */
async function drive(
  lanes: number,
  seconds: number,
  work: (lane: number) => Promise<void>,
): Promise<{ latencies: number[]; errors: number; elapsed: number; firstError?: string }> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await work(lane);
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= String((err as Error).message ?? err);
          if (errors > 1000) return;
        }
      }
    }),
  );
  return { latencies, errors, elapsed: (performance.now() - start) / 1000, ...(firstError ? { firstError } : {}) };
}

async function main(p: LoadParams): Promise<void> {
  const auth = { headers: { authorization: `Bearer ${p.adminToken}` } };
  const userClients = clientsFor(p, p.registrationConcurrency).map((c) => c.users);

  // The registration phase cycles through the users, so each ends up with several passkeys (about ten at
  // 500 registrations/s): lift the login policy's limit (10 by default) for the run, untimed.
  const policy = await fetch(`${p.url}/v2/login_policy`, {
    method: 'PUT',
    headers: { ...auth.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ policy: { maxPasskeysPerUser: 1000 } }),
  });
  if (!policy.ok) throw new Error(`setting the default login policy: HTTP ${policy.status} ${await policy.text()}`);

  // Users, untimed.
  const userIds: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async (_, lane) => {
      while (next < p.users) {
        const i = next++;
        const r = await userClients[lane % userClients.length]!.addHumanUser(
          { username: `bench-${i}-${process.pid}`, profile: { givenName: 'Bench', familyName: `${i}` }, email: { email: `bench${i}@example.com` } },
          auth,
        );
        userIds.push(r.userId);
      }
    }),
  );

  // Registrations, timed: RegisterPasskey + sign + VerifyPasskeyRegistration.
  const registered: { userId: string; authenticator: SoftAuthenticator }[] = [];
  let cursor = 0;
  const register = async (users: Users, userId: string) => {
    const authenticator = createSoftAuthenticator({ counter: 'increment' });
    const begun = await users.registerPasskey({ userId }, auth);
    const options = (begun.publicKeyCredentialCreationOptions as unknown as { publicKey: PublicKeyCredentialCreationOptionsJSON }).publicKey;
    const credential = await authenticator.register(options, { origin: p.origin });
    await users.verifyPasskeyRegistration({ userId, passkeyId: begun.passkeyId, publicKeyCredential: credential as any, passkeyName: 'bench' }, auth);
    registered.push({ userId, authenticator });
  };
  await ask({ type: 'phase-start', phase: 'registration' });
  const reg = await drive(p.registrationConcurrency, p.registrationSeconds, (lane) => register(userClients[lane % userClients.length]!, userIds[cursor++ % userIds.length]!));
  await ask({ type: 'phase-end', phase: 'registration', ops: reg.latencies.length });
  // Every user needs a passkey to log in: register the rest untimed.
  const have = new Set(registered.map((r) => r.userId));
  const missing = userIds.filter((id) => !have.has(id));
  await Promise.all(
    Array.from({ length: 16 }, async (_, lane) => {
      for (let id = missing.pop(); id; id = missing.pop()) await register(userClients[lane % userClients.length]!, id);
    }),
  );

  // Logins: passkeyd, and with --baseline the hand-rolled server, in turns (A B A B …).
  const targets: { phase: 'login' | 'baseline' | 'null'; sessions: Sessions[] }[] = [{ phase: 'login', sessions: clientsFor(p, p.concurrency).map((c) => c.sessions) }];
  // The null server (bench/null-server.ts) is driven in the open loop, where it shows the machine's own
  // tail, and with --ceiling in the closed loop as well (A B C A B C …).
  let nullServer: Sessions[] | undefined;
  if (p.baseline) {
    const { baselineUrl, nullUrl } = await ask({ type: 'provisioned' });
    // The baseline speaks Connect JSON on HTTP/1.1 only, whatever protocol passkeyd is driven over.
    const json = { ...p, protocol: 'connect', client: 'lean' } as const;
    targets.push({ phase: 'baseline', sessions: clientsFor(json, p.concurrency, baselineUrl).map((c) => c.sessions) });
    nullServer = clientsFor(json, p.concurrency, nullUrl).map((c) => c.sessions);
    if (p.ceiling) targets.push({ phase: 'null', sessions: nullServer });
  }
  // Each lane owns its own users, as people do: one authenticator never signs two logins at once
  // (that would reorder its sign counter, which the service rightly refuses).
  const turns = new Array<number>(p.concurrency).fill(0);
  const closedLoop = (sessions: Sessions[]) => async (lane: number) => {
    const mine = Math.max(1, Math.floor(registered.length / p.concurrency));
    const turn = turns[lane]!;
    turns[lane] = turn + 1;
    await login(sessions[lane % sessions.length]!, registered[(lane + p.concurrency * (turn % mine)) % registered.length]!, p.origin);
  };
  const phases: Record<string, ReturnType<typeof merge>> = {};
  const rounds: Record<string, number[]> = { login: [], baseline: [], null: [] };
  for (const t of targets) await drive(p.concurrency, p.warmupSeconds, closedLoop(t.sessions));
  for (let round = 0; round < p.rounds; round++) {
    for (const t of targets) {
      await ask({ type: 'phase-start', phase: t.phase });
      const r = await drive(p.concurrency, p.durationSeconds, closedLoop(t.sessions));
      await ask({ type: 'phase-end', phase: t.phase, ops: r.latencies.length });
      phases[t.phase] = merge(phases[t.phase], r);
      rounds[t.phase]!.push(Math.round(r.latencies.length / r.elapsed));
    }
  }

  // Open loop: arrivals at a steady rate, latency counted from each arrival's scheduled time.
  const closedRate = phases.login!.latencies.length / phases.login!.elapsed;
  const rate = p.openRate > 0 ? p.openRate : Math.max(1, Math.round(closedRate / 2));
  const open: Record<string, OpenLoopStats> = {};
  const openTargets = [...targets, ...(nullServer && !p.ceiling ? [{ phase: 'null' as const, sessions: nullServer }] : [])];
  for (const t of openTargets) {
    const phase = t.phase === 'login' ? 'open-loop' : `open-loop-${t.phase}`;
    // Each server sat idle while the others were measured: warm it again, as the closed-loop phases
    // were, so the phase measures a steady rate. (The servers keep their idle database connections in
    // the bench: see run.ts.)
    await drive(p.concurrency, Math.min(3, p.warmupSeconds), closedLoop(t.sessions));
    // Each arrival takes a user who is not mid-login (one authenticator's logins must not race on its
    // counter). When every user is mid-login (the server stalled with that many logins in flight), the
    // arrival waits for the next user to finish: the wait counts in its latency, from its due time.
    const free = registered.map((_, i) => i);
    const waiting: ((i: number) => void)[] = [];
    const takeUser = (): Promise<number> => {
      const i = free.pop();
      return i === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(i);
    };
    const giveBack = (i: number) => {
      const next = waiting.shift();
      if (next) next(i);
      else free.unshift(i);
    };
    let k = 0;
    await ask({ type: 'phase-start', phase });
    const r = await openLoop(rate, p.openSeconds, async () => {
      const i = await takeUser();
      try {
        await login(t.sessions[k++ % t.sessions.length]!, registered[i]!, p.origin);
      } finally {
        giveBack(i);
      }
    });
    await ask({ type: 'phase-end', phase, ops: r.latencies.length });
    const p99BySecond = r.bySecond.map((l) => Math.round(stats(l, 0, 1).p99));
    open[phase] = { ...stats(r.latencies, r.errors, r.elapsed, r.firstError), rate, p99BySecond, longestStall: Math.round(r.longestStall), stalls: r.stalls };
  }

  const finished = (phase: string) => {
    const m = phases[phase];
    return m ? { ...stats(m.latencies, m.errors, m.elapsed, m.firstError), rounds: rounds[phase] } : undefined;
  };
  process.send!({
    type: 'result',
    registration: stats(reg.latencies, reg.errors, reg.elapsed, reg.firstError),
    login: finished('login'),
    baseline: finished('baseline'),
    null: finished('null'),
    open,
  });
}

/** One full login: CreateSession → the authenticator signs → SetSession, which returns the access token. */
async function login(client: Sessions, who: { userId: string; authenticator: SoftAuthenticator }, origin: string): Promise<void> {
  const created = await client.createSession({ checks: { user: { search: { case: 'userId', value: who.userId } } }, challenges: { webAuthN: {} } });
  const requestOptions = created.challenges?.webAuthN?.publicKeyCredentialRequestOptions;
  if (!requestOptions) throw new Error('CreateSession returned no WebAuthn challenge');
  const options = (requestOptions as unknown as { publicKey: PublicKeyCredentialRequestOptionsJSON }).publicKey;
  const assertion = await who.authenticator.authenticate(options, { origin });
  const set = await client.setSession({ sessionId: created.sessionId, sessionToken: created.sessionToken, checks: { webAuthN: { credentialAssertionData: assertion as any } } });
  if (!set.accessToken) throw new Error('no access token');
}

type Driven = Awaited<ReturnType<typeof drive>>;

function merge(a: Driven | undefined, b: Driven): Driven {
  if (!a) return { ...b, latencies: b.latencies.slice() };
  a.latencies.push(...b.latencies);
  return { latencies: a.latencies, errors: a.errors + b.errors, elapsed: a.elapsed + b.elapsed, firstError: a.firstError ?? b.firstError };
}

process.once('message', (p: LoadParams) => {
  main(p).then(
    () => process.exit(0),
    (err) => {
      process.send!({ type: 'error', message: String((err as Error).stack ?? err) });
      process.exit(1);
    },
  );
});
