/**
 * The README's walk-through is executable documentation: every ```sh block between the markers
 * `<!-- readme-test:start -->` and `<!-- readme-test:end -->` runs, in order, in one bash session against a
 * real server. The test provides PASSKEYD_URL and ADMIN_TOKEN, and stands in for the browser: the
 * commands `webauthn_create` / `webauthn_get` read WebAuthn options on stdin and print the answer of a
 * software authenticator (the REGISTRATION_RESPONSE_JSON / ASSERTION_RESPONSE_JSON a page would post).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftAuthenticator } from './helpers/authenticator.js';
import { DEFAULT_ORIGIN } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const START = '<!-- readme-test:start -->';
const END = '<!-- readme-test:end -->';

/** A fenced shell block and the line it starts on (for error messages). */
interface ShellBlock {
  line: number;
  code: string;
}

/** The ```sh / ```bash blocks between the markers, in order; undefined when there are no markers. */
function extractShellBlocks(markdown: string): ShellBlock[] | undefined {
  const blocks: ShellBlock[] = [];
  let found = false;
  // Every marked region, in order: they run as one session.
  for (let start = markdown.indexOf(START); start >= 0; start = markdown.indexOf(START, start + 1)) {
    const end = markdown.indexOf(END, start + 1);
    if (end < 0) break;
    found = true;
    const before = markdown.slice(0, start).split('\n').length;
    const lines = markdown.slice(start, end).split('\n');
    let current: { line: number; lines: string[] } | undefined;
    lines.forEach((text, i) => {
      if (!current && /^```(sh|bash|shell)\s*$/.test(text)) current = { line: before + i, lines: [] };
      else if (current && /^```\s*$/.test(text)) {
        blocks.push({ line: current.line, code: current.lines.join('\n') });
        current = undefined;
      } else current?.lines.push(text);
    });
  }
  return found ? blocks : undefined;
}

/** README.md's walk-through blocks. */
function walkthrough(): { file: string; blocks: ShellBlock[] } {
  const blocks = extractShellBlocks(readFileSync('README.md', 'utf8'));
  if (!blocks) throw new Error(`no ${START} … ${END} section in README.md`);
  return { file: 'README.md', blocks };
}

const srv = useTestServer();
let browser: http.Server;
let browserUrl: string;

beforeAll(async () => {
  // The browser's part, over HTTP so that the bash session can reach it.
  const authenticator = createSoftAuthenticator();
  browser = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      try {
        const input = JSON.parse(body);
        // Accept passkeyd's Struct ({"publicKey": …}) or the bare options, as browser libraries do.
        const options = input.publicKey ?? input;
        const out =
          req.url === '/create' ? await authenticator.register(options, { origin: DEFAULT_ORIGIN }) : await authenticator.authenticate(options, { origin: DEFAULT_ORIGIN });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(out));
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(String(err));
      }
    });
  });
  await new Promise<void>((resolve) => browser.listen(0, '127.0.0.1', resolve));
  browserUrl = `http://127.0.0.1:${(browser.address() as AddressInfo).port}`;
});
afterAll(async () => {
  browser?.close();
});

const PRELUDE = `set -euo pipefail
webauthn_create() { curl -sS --fail-with-body -X POST --data-binary @- "$SOFT_AUTHENTICATOR_URL/create"; }
webauthn_get() { curl -sS --fail-with-body -X POST --data-binary @- "$SOFT_AUTHENTICATOR_URL/get"; }
`;

function runBash(script: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { env: { ...process.env, ...env }, cwd: process.cwd() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe(`README walk-through (${BACKEND})`, () => {
  it('extracts only the shell blocks between the markers', () => {
    const md = [
      '# x',
      '```sh',
      'echo outside',
      '```',
      START,
      'text',
      '```sh',
      'echo one',
      '```',
      '```ts',
      'no()',
      '```',
      '```bash',
      'echo two',
      'echo three',
      '```',
      END,
      '```sh',
      'echo after',
      '```',
    ].join('\n');
    expect(extractShellBlocks(md)).toEqual([
      { line: 7, code: 'echo one' },
      { line: 13, code: 'echo two\necho three' },
    ]);
    expect(extractShellBlocks('# no markers')).toBeUndefined();
  });

  it('runs every example, in order, in one bash session against a real server', async () => {
    const { file, blocks } = walkthrough();
    expect(blocks.length).toBeGreaterThan(5);
    const script = `${PRELUDE + blocks.map((b, i) => `echo "readme-test: block ${i + 1} (${file}:${b.line})" >&2\n${b.code}\n`).join('')}echo "readme-test: done" >&2\n`;
    const r = await runBash(script, { PASSKEYD_URL: srv.url, ADMIN_TOKEN: await srv.adminToken(), SOFT_AUTHENTICATOR_URL: browserUrl });
    const lastBlock = [...r.stderr.matchAll(/readme-test: block \d+ \([^)]*\)/g)].at(-1)?.[0];
    expect({ exit: r.code, lastBlock, stderr: r.code === 0 ? '' : r.stderr.slice(-3000), stdout: r.code === 0 ? '' : r.stdout.slice(-3000) }).toEqual({
      exit: 0,
      lastBlock: `readme-test: block ${blocks.length} (${file}:${blocks.at(-1)!.line})`,
      stderr: '',
      stdout: '',
    });
    expect(r.stderr).toContain('readme-test: done');

    // The examples really did the lifecycle on this server: two users, each with a passkey registered,
    // used to log in (the login is its session's event, made by the user), renamed, removed, and the user deleted.
    const events = await srv.app.store.db.selectFrom('events').select(['aggregate_type', 'aggregate_id', 'event_type', 'creator']).orderBy('position').execute();
    const byUser = new Map<string, string[]>();
    for (const e of events) {
      const user = e.aggregate_type === 'user' ? e.aggregate_id : e.event_type === 'session.webauthn.checked' ? e.creator : undefined;
      if (user) byUser.set(user, [...(byUser.get(user) ?? []), e.event_type]);
    }
    const lifecycles = [...byUser.values()].filter((types) =>
      ['user.human.added', 'user.passkey.added', 'session.webauthn.checked', 'user.passkey.renamed', 'user.passkey.removed', 'user.removed'].every((t) =>
        types.some((x) => x.startsWith(t)),
      ),
    );
    expect(lifecycles).toHaveLength(2);
    // About 60 commands, each its own process (curl, jq, node, and `npx buf curl`, which alone takes 1-2 s
    // of start-up): measured 26 s to 84 s here, depending on what else the machine was running.
  }, 240_000);
});
