import { loadConfig, parseDuration, ConfigError, type Config } from '../config/config.js';
import {
  checkAdminRole,
  checkAdminTokenTtl,
  createMachineUserWithRole,
  inviteUser,
  mintAdminToken,
  retiredMessage,
  retireSigningKey,
  rotateSigningKey,
  type MachineUserRequest,
} from '../domain/admin.js';
import { isDatabaseUnavailable, PasskeydError } from '../errors.js';
import { createTokenService } from '../auth/tokens.js';
import { bootstrap } from '../domain/bootstrap.js';
import { createLogger, type Logger } from '../log.js';
import { openStore, storeOptions, type Store } from '../store/db.js';
import { migrateToLatest } from '../store/migrate.js';
import { askAdminSocket, startAdminSocket } from '../server/admin-socket.js';
import { createApp, type App } from '../server/app.js';
import { DataDirBusyError, lockDataDir } from '../server/data-dir-lock.js';
import { listen } from '../server/listen.js';
import { cluster, portClosed, runPrimary, workerCount } from '../server/cluster.js';
import { parseArgs, takeFlags } from './args.js';

const USAGE = `usage: passkeyd <command> [options]

commands:
  serve                      run the service (default)
  migrate                    apply database migrations and first-start set-up, then exit
  admin machine-user create --name NAME --role instance_admin|org_admin|session_manager
                            [--org ID] [--description TEXT] [--key | --pat] [--ttl 365d]
                             create a machine user in the organization (default: the default one),
                             grant it the role and print its credential, revocable, on stdout:
                             the key file JSON (--key, the default) or a personal access token (--pat)
  admin token --role instance_admin|org_admin|session_manager [--org ID] [--user ID] [--ttl 1h]
                             for development: print an admin access token (only the token, on stdout);
                             it cannot be revoked, so --ttl is at most 24h
  admin keys rotate          add a new signing key; older tokens stay valid until they expire, then
                             the older key retires by itself (after the longest token lifetime, 24h)
  admin keys retire KID      retire a signing key now: its tokens are refused everywhere within a second
                             and it leaves JWKS (the key signing new tokens is replaced first)
  admin invite --username NAME [--email E] [--org ID]
                             create a user and print a registration link to the hosted page, where
                             they create a passkey (valid for PASSKEYD_REGISTRATION_CODE_TTL)

Every setting is an environment variable or a flag (see the README), e.g. --port 8080 --database-url postgres://...`;

/** Opens the store for a one-shot command, holding the PGlite lock while it runs. */
async function withStore<T>(config: Config, fn: (store: Store) => Promise<T>): Promise<T> {
  const unlock = config.databaseUrl ? () => {} : lockDataDir(config.dataDir);
  const store = await openStore(storeOptions(config));
  try {
    await migrateToLatest(store.db, store.schema);
    await bootstrap(store.db);
    return await fn(store);
  } finally {
    await store.close();
    unlock();
  }
}

/**
 * Asks the server that holds the PGlite directory, or opens the database when none does. A server that
 * is still starting holds the lock before its socket listens: wait for the socket a little while.
 */
async function viaServerOrStore(config: Config, route: string, body: unknown, direct: (store: Store) => Promise<string>): Promise<string> {
  if (config.databaseUrl) return withStore(config, direct);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = await askAdminSocket(config.dataDir, route, body);
    if (answer !== undefined) return answer;
    try {
      return await withStore(config, direct);
    } catch (err) {
      if (!(err instanceof DataDirBusyError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** A flag that takes no value (`--key`); present or absent. */
function switchFlag(value: string | undefined, name: string): boolean {
  if (value === undefined) return false;
  if (value !== 'true') throw new ConfigError(`--${name} takes no value (got "${value}")`);
  return true;
}

/** `admin machine-user create`: the command's flags → the domain's request; the rest stays configuration. */
function machineUserRequest(flags: Record<string, string>): MachineUserRequest {
  const opts = takeFlags(flags, ['name', 'org', 'description', 'role', 'key', 'pat', 'ttl']);
  if (!opts.name || opts.name === 'true') throw new ConfigError('admin machine-user create needs --name NAME');
  if (!opts.role) throw new ConfigError('admin machine-user create needs --role instance_admin|org_admin|session_manager');
  const key = switchFlag(opts.key, 'key');
  const pat = switchFlag(opts.pat, 'pat');
  if (key && pat) throw new ConfigError('choose one credential: --key or --pat');
  return {
    name: opts.name,
    org: opts.org,
    description: opts.description,
    role: opts.role,
    credential: pat ? 'pat' : 'key',
    ttlSeconds: opts.ttl ? parseDuration(opts.ttl) : undefined,
  };
}

/**
 * Runs an admin command. With PGlite the running server (if any) owns the data directory, so it is asked
 * over its local socket; otherwise the database is opened directly. The command's own flags are taken
 * first; the rest are configuration.
 */
async function admin(words: string[], flags: Record<string, string>): Promise<string> {
  const [what, sub] = words;
  if (what === 'token') {
    const opts = takeFlags(flags, ['role', 'org', 'user', 'ttl']);
    const cfg = loadConfig(flags);
    if (!opts.role) throw new ConfigError('admin token needs --role instance_admin|org_admin|session_manager');
    const request = { role: opts.role, org: opts.org, user: opts.user, ttlSeconds: opts.ttl ? parseDuration(opts.ttl) : undefined };
    // Refused here too, before any database or socket: the server checks them again.
    checkAdminRole(request.role);
    if (request.ttlSeconds !== undefined) checkAdminTokenTtl(request.ttlSeconds);
    return viaServerOrStore(cfg, '/token', request, async (store) => {
      const tokens = await createTokenService(store.db, { issuer: cfg.issuer, audience: cfg.audience });
      try {
        return await mintAdminToken(store.db, tokens, request);
      } finally {
        tokens.close();
      }
    });
  }
  if (what === 'machine-user' && sub === 'create' && words.length === 2) {
    const request = machineUserRequest(flags);
    checkAdminRole(request.role);
    const cfg = loadConfig(flags);
    return viaServerOrStore(cfg, '/machine-users', request, async (store) => (await createMachineUserWithRole(store.db, request, 'cli')).secret);
  }
  if (what === 'invite' && words.length === 1) {
    const opts = takeFlags(flags, ['username', 'email', 'org']);
    if (!opts.username || opts.username === 'true') throw new ConfigError('admin invite needs --username NAME');
    const request = { username: opts.username, email: opts.email, org: opts.org };
    const cfg = loadConfig(flags);
    const link = { issuer: cfg.issuer, codeTtlSeconds: cfg.registrationCodeTtlSeconds };
    return viaServerOrStore(cfg, '/invite', request, (store) => inviteUser(store.db, request, link, 'cli'));
  }
  if (what === 'keys' && sub === 'rotate' && words.length === 2) {
    const config = loadConfig(flags);
    return viaServerOrStore(config, '/keys/rotate', {}, async (store) => {
      const tokens = await createTokenService(store.db, { issuer: config.issuer, audience: config.audience });
      try {
        return await rotateSigningKey(store.db, tokens, { tokenTtlSeconds: config.tokenTtlSeconds });
      } finally {
        tokens.close();
      }
    });
  }
  if (what === 'keys' && sub === 'retire' && words.length === 3) {
    const config = loadConfig(flags);
    const kid = words[2]!;
    return viaServerOrStore(config, '/keys/retire', { kid }, async (store) => {
      const tokens = await createTokenService(store.db, { issuer: config.issuer, audience: config.audience });
      try {
        const { retired, newKid } = await retireSigningKey(store.db, tokens, kid, 'cli', { tokenTtlSeconds: config.tokenTtlSeconds });
        return retiredMessage(retired, newKid);
      } finally {
        tokens.close();
      }
    });
  }
  throw new ConfigError(`unknown admin command "${words.join(' ')}"\n\n${USAGE}`);
}

/** After SIGTERM, how long an idle keep-alive connection may still bring a request (answered with `Connection: close`). */
const IDLE_LINGER_MS = 2000;

/**
 * A cluster worker's app. A worker may start while the database is away (it replaces one that died
 * during an outage, or the outage began while the workers were starting): it waits for the database,
 * as running workers do, instead of exiting with code 1, which the primary would answer with another
 * worker that dies the same way, until it gave up on them all ("workers keep dying").
 */
async function startWorkerApp(config: Config, log: Logger): Promise<App> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createApp(config, { log, migrated: true });
    } catch (err) {
      if (!isDatabaseUnavailable(err)) throw err;
      log.warn({ attempt, err: (err as Error).message }, 'database unavailable at start; retrying');
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
    }
  }
}

async function serve(config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  const workers = workerCount(config.workers, config.databaseUrl);
  if (workers > 1 && cluster.isPrimary) {
    // Migrate once here, so the workers start against an up-to-date schema without racing.
    await withStore(config, async () => undefined);
    runPrimary(workers, log, config.shutdownGraceSeconds);
    return;
  }
  const unlock = config.databaseUrl ? () => {} : lockDataDir(config.dataDir);
  const app = cluster.isWorker ? await startWorkerApp(config, log) : await createApp(config, { log });
  const closeSocket = config.databaseUrl ? async () => {} : await startAdminSocket(app);
  const server = await listen(app, cluster.isWorker ? { portClosed } : {});
  let stopping = false;
  const stop = async (signal: string) => {
    // A second signal changes nothing: a process manager that signals the whole process group reaches a
    // worker both directly and through the primary, and the default action would cut the drain short.
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await closeSocket();
    await server.close(IDLE_LINGER_MS);
    unlock();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const { words, flags } = parseArgs(argv);
  const [command = 'serve', ...rest] = words;
  if (flags.help || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  switch (command) {
    case 'serve':
      return serve(loadConfig(flags));
    case 'migrate': {
      const config = loadConfig(flags);
      await withStore(config, async () => undefined);
      process.stderr.write('migrations up to date\n');
      return;
    }
    case 'admin':
      process.stdout.write(`${await admin(rest, flags)}\n`);
      return;
    default:
      throw new ConfigError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  const known = err instanceof ConfigError || err instanceof PasskeydError || err instanceof DataDirBusyError;
  process.stderr.write(`passkeyd: ${known ? err.message : ((err as Error).stack ?? String(err))}\n`);
  process.exit(known ? 2 : 1);
});
