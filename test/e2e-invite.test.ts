/**
 * The README's quick start, as a newcomer runs it: `passkeyd serve`, then `passkeyd admin invite`, whose
 * printed link registers a passkey in Debian's chromium (virtual authenticator) and signs the user in.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addVirtualAuthenticator, credentialsOf, freePort, HAS_CHROMIUM, launchChromium } from './helpers/browser.js';
import { buildPages } from './helpers/pages.js';
import { BACKEND, createSchema, TEST_DATABASE_URL } from './helpers/server.js';

const BIN = path.resolve('bin/passkeyd.js');
const run = promisify(execFile);

/** Starts `passkeyd serve` and resolves once it logs that it listens. */
function serve(env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      logs.push(d.toString());
      if (d.toString().includes('"msg":"passkeyd listening"')) resolve(child);
    });
    child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${logs.join('')}`)));
  });
}

describe.skipIf(!HAS_CHROMIUM)(`admin invite, quick start (${BACKEND})`, () => {
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let server: ChildProcess | undefined;
  let cleanup = async () => {};
  let env: NodeJS.ProcessEnv;
  let base: string;

  beforeAll(async () => {
    const port = await freePort();
    base = `http://localhost:${port}`;
    env = { ...process.env, PASSKEYD_LOG_LEVEL: 'info', PASSKEYD_PORT: String(port), PASSKEYD_ORIGINS: base, PASSKEYD_ISSUER: base, PASSKEYD_RP_ID: 'localhost' };
    delete env.DATABASE_URL;
    if (TEST_DATABASE_URL) {
      const { schema, drop } = await createSchema(TEST_DATABASE_URL);
      env = { ...env, DATABASE_URL: TEST_DATABASE_URL, PASSKEYD_DATABASE_SCHEMA: schema, PASSKEYD_WORKERS: '1' };
      cleanup = drop;
    } else {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'passkeyd-invite-'));
      env = { ...env, PASSKEYD_DATA_DIR: dir };
      cleanup = async () => rmSync(dir, { recursive: true, force: true });
    }
    const [, launched] = await Promise.all([buildPages(), launchChromium()]);
    browser = launched;
    server = await serve(env);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    await cleanup();
  });

  it('prints one link; opening it registers a passkey, which then signs in', async () => {
    const username = `ada-${Date.now().toString(36)}`;
    const { stdout } = await run(process.execPath, [BIN, 'admin', 'invite', '--username', username, '--email', `${username}@example.com`], { env, timeout: 60_000 });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const link = new URL(lines[0]!);
    expect(`${link.origin}${link.pathname}`).toBe(`${base}/register`);
    expect([...link.searchParams.keys()]).toEqual(['user', 'code_id', 'code']);

    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const authenticator = await addVirtualAuthenticator(cdp);
    await page.goto(link.href);
    await page.getByRole('button', { name: 'Create passkey' }).click();
    await page.getByRole('heading', { name: 'Your passkey is ready' }).waitFor();
    expect(await credentialsOf(cdp, authenticator)).toHaveLength(1);
    // The sign-in page's autofill request picks the new passkey (the virtual authenticator consents).
    await page.goto(`${base}/`);
    await page.waitForURL(`${base}/account`);
    await page.getByText(`Signed in as ${username}`).waitFor();
    await context.close();

    // The same name again, and a missing --username: a clear message and exit code 2.
    const again = await run(process.execPath, [BIN, 'admin', 'invite', '--username', username], { env, timeout: 60_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(again).toMatchObject({ code: 2 });
    expect((again as { stderr: string }).stderr).toMatch(/^passkeyd: username .* is already taken/);
    const missing = await run(process.execPath, [BIN, 'admin', 'invite'], { env, timeout: 60_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 2 });
    expect((missing as { stderr: string }).stderr).toContain('admin invite needs --username NAME');
    // Three CLI processes and a browser ceremony: room for a busy machine, as the CLI tests have.
  }, 180_000);
});
