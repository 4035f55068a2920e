import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const BIN = path.resolve('bin/passkeyd.js');

/** `passkeyd serve` as a child process, with its log lines as they come. */
export interface ServeProcess {
  child: ChildProcess;
  /** The port of the first worker (or the process) that logged "passkeyd listening". */
  port: number;
  /** Every line of stdout and stderr so far. */
  logs: string[];
  /** The JSON log entries so far (stdout). */
  entries: Record<string, unknown>[];
  /** Resolves when `count` entries match (or rejects after `ms`). */
  waitFor(match: (e: Record<string, unknown>) => boolean, count?: number, ms?: number): Promise<void>;
  /** Resolves with the exit code (null after a signal). */
  exited: Promise<number | null>;
}

/** Starts `passkeyd serve` with `env` (added to this process's) and resolves once `listening` workers listen. */
export async function startServe(env: NodeJS.ProcessEnv, listening = 1, options: { detached?: boolean } = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, PASSKEYD_PORT: '0', PASSKEYD_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  const logs: string[] = [];
  const entries: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      logs.push(line);
      try {
        entries.push(JSON.parse(line));
      } catch {
        /* not JSON */
      }
      for (const w of waiters) w();
    }
  });
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (match: (e: Record<string, unknown>) => boolean, count = 1, ms = 60_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (entries.filter(match).length >= count) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for a log entry; logs:\n${logs.join('\n')}`));
      }, ms);
      waiters.add(check);
      exited.then(() => {
        if (waiters.has(check)) {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`serve exited; logs:\n${logs.join('\n')}`));
        }
      });
      check();
    });
  try {
    await waitFor((e) => e.msg === 'passkeyd listening', listening, 120_000);
  } catch (err) {
    // Not started in time: leave no process behind (a detached one is its own group, workers included).
    if (options.detached) process.kill(-child.pid!, 'SIGKILL');
    else child.kill('SIGKILL');
    throw err;
  }
  const port = entries.find((e) => e.msg === 'passkeyd listening')!.port as number;
  return { child, port, logs, entries, waitFor, exited };
}
