/**
 * The hosted pages end to end in a real browser: Debian's chromium (headless, via playwright-core) with a
 * CDP virtual WebAuthn authenticator, against a real passkeyd. Registration link → passkey created →
 * sign-in by autofill (conditional UI) → sign out → sign-in with the button in a fresh browser context →
 * account page: add a second passkey, rename, remove it, and the refusal to remove the last one →
 * a removed passkey offered at sign-in is signalled as unknown; two devices: the account page's session
 * list, sign out of one and of all other devices. Every API call must be gRPC-web over
 * HTTP/1.1; no page may trip its Content-Security-Policy. Screenshots go to test-artifacts/pages/.
 */
import { mkdirSync } from 'node:fs';
import { Code, ConnectError } from '@connectrpc/connect';
import type { BrowserContext, CDPSession, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { addVirtualAuthenticator, base64url, CHROMIUM_PATH, credentialsOf, freePort, HAS_CHROMIUM, launchChromium } from './helpers/browser.js';
import { bearer, clientFor } from './helpers/clients.js';
import { buildPages } from './helpers/pages.js';
import { createUser } from './helpers/passkeys.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const ARTIFACTS = 'test-artifacts/pages';
const LAST_PASSKEY_REFUSAL = 'This is your only passkey. Add another passkey before removing this one.';

if (!HAS_CHROMIUM) {
  console.warn(`e2e-pages: skipped, ${CHROMIUM_PATH} is not installed (apt-get install -y chromium; or set PASSKEYD_CHROMIUM)`);
}

// CI installs chromium (.ci/run exports CI=true): there, a missing browser is a failure, not a skip.
if (!HAS_CHROMIUM && process.env.CI === 'true') {
  describe('hosted pages in chromium', () => {
    it('needs chromium in CI', () => {
      expect.fail(`${CHROMIUM_PATH} is missing: .ci/run must apt-get install chromium`);
    });
  });
}

/** What the pages did, as recorded by an init script in every document (survives navigations). */
interface Recorded {
  signals: { name: string; opts: Record<string, unknown> }[];
  gets: { mediation: string; outcome: 'resolved' | 'rejected' }[];
  csp: string[];
}

/**
 * Wraps the Signal API methods and navigator.credentials.get (calling through to the real ones) and
 * listens for CSP violations; reports each to Node through an exposed binding.
 */
const RECORDER = `(() => {
  const report = (kind, entry) => window.__e2eRecord && window.__e2eRecord(kind, entry);
  const P = window.PublicKeyCredential;
  for (const name of ['signalUnknownCredential', 'signalAllAcceptedCredentials', 'signalCurrentUserDetails']) {
    const real = P && P[name];
    if (typeof real !== 'function') continue;
    P[name] = function (opts) { report('signal', { name, opts: JSON.parse(JSON.stringify(opts)) }); return real.call(this, opts); };
  }
  if (window.__e2eNoAutofill && P) P.isConditionalMediationAvailable = async () => false;
  const get = navigator.credentials.get.bind(navigator.credentials);
  navigator.credentials.get = (opts) => {
    const mediation = (opts && opts.mediation) || 'optional';
    return get(opts).then(
      (c) => { report('get', { mediation, outcome: 'resolved' }); return c; },
      (e) => { report('get', { mediation, outcome: 'rejected' }); throw e; },
    );
  };
  document.addEventListener('securitypolicyviolation', (e) => report('csp', e.violatedDirective + ' ' + e.blockedURI));
})();`;

interface Traffic {
  /** RPC requests: method path and request content type. */
  rpcs: { path: string; requestType: string; responseType: string; status: number }[];
  /** Protocol per response URL (CDP Network.responseReceived). */
  protocols: { url: string; protocol: string }[];
  consoleErrors: string[];
}

describe.skipIf(!HAS_CHROMIUM)(`hosted pages in chromium (${BACKEND})`, () => {
  let base: string;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const recorded: Recorded = { signals: [], gets: [], csp: [] };
  const traffic: Traffic = { rpcs: [], protocols: [], consoleErrors: [] };

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const [, launched] = await Promise.all([buildPages(), launchChromium()]);
    browser = launched;
  });
  afterAll(() => browser?.close());
  // WebAuthn origins name the port, so it is chosen first; another process may grab it in between (retried).
  const srv = useTestServer(
    async () => {
      const port = await freePort();
      base = `http://localhost:${port}`;
      return { config: { port: String(port), 'rp-id': 'localhost', origins: base, issuer: base } };
    },
    { retries: 3 },
  );

  /** A browser context with the recorder and traffic capture; `noAutofill` hides conditional UI from the page. */
  async function openContext(opts: { noAutofill?: boolean } = {}): Promise<{ context: BrowserContext; page: Page; cdp: CDPSession }> {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
    await context.exposeBinding('__e2eRecord', (_source, kind: 'signal' | 'get' | 'csp', entry: any) => {
      if (kind === 'signal') recorded.signals.push(entry);
      else if (kind === 'get') recorded.gets.push(entry);
      else recorded.csp.push(entry);
    });
    if (opts.noAutofill) await context.addInitScript('window.__e2eNoAutofill = true;');
    await context.addInitScript(RECORDER);
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error') traffic.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => traffic.consoleErrors.push(String(e)));
    page.on('response', async (response) => {
      const url = new URL(response.url());
      if (!/^\/(passkeyd|grpc)\./.test(url.pathname)) return;
      traffic.rpcs.push({
        path: url.pathname,
        requestType: (await response.request().headerValue('content-type')) ?? '',
        responseType: response.headers()['content-type'] ?? '',
        status: response.status(),
      });
    });
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', (e) => traffic.protocols.push({ url: e.response.url, protocol: e.response.protocol ?? '' }));
    await cdp.send('WebAuthn.enable');
    return { context, page, cdp };
  }

  /** expect.poll with room for a browser ceremony on a busy machine. */
  const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 15_000, interval: 100 });
  /** The visible text of the only element a locator matches, or '' while there is none. */
  const textOf = (locator: Locator) => locator.innerText({ timeout: 500 }).catch(() => '');
  const shot = (page: Page, name: string) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
  const passkeyItem = (page: Page, name: string) => page.locator('li.passkey').filter({ has: page.getByRole('heading', { name, exact: true }) });

  it('registers from a link, signs in (autofill and button), manages passkeys, and signals the browser', async () => {
    const admin = srv.admin;
    const api = clientFor(UserService, 'connect', srv.url);
    const username = `alice-${Date.now().toString(36)}`;
    const userId = await createUser(srv.url, admin, username);
    const link = await api.createPasskeyRegistrationLink({ userId, medium: { case: 'returnCode', value: {} } }, bearer(admin));
    expect(link.code?.code).toBeTruthy();

    // 1. The registration link page creates the passkey with the one-time code.
    const a = await openContext();
    const authA = await addVirtualAuthenticator(a.cdp);
    await a.page.goto(`${base}/register?user=${encodeURIComponent(userId)}&code_id=${encodeURIComponent(link.code!.id)}&code=${encodeURIComponent(link.code!.code)}`);
    await poll(() => a.page.url()).toBe(`${base}/register`); // the code left the address bar
    const nameField = a.page.getByLabel('Name for this passkey');
    await poll(() => nameField.inputValue()).toMatch(/^Passkey on /);
    await shot(a.page, '1-register');
    await nameField.fill('Laptop passkey');
    await a.page.getByRole('button', { name: 'Create passkey' }).click();
    await a.page.getByRole('heading', { name: 'Your passkey is ready' }).waitFor();
    await shot(a.page, '2-register-done');
    const [credential] = await credentialsOf(a.cdp, authA);
    expect(credential?.isResidentCredential).toBe(true);
    expect(credential?.rpId).toBe('localhost');
    const userHandle = base64url(credential!.userHandle!);
    const firstId = base64url(credential!.credentialId);
    // A used code cannot register a second passkey.
    await a.page.goto(`${base}/register?user=${encodeURIComponent(userId)}&code_id=${encodeURIComponent(link.code!.id)}&code=${encodeURIComponent(link.code!.code)}`);
    await a.page.getByRole('button', { name: 'Create passkey' }).click();
    await poll(() => textOf(a.page.getByRole('alert'))).toMatch(/registration link is not valid/);

    // 2. Sign-in page: the autofill (conditional mediation) request picks the passkey by itself, since
    // the virtual authenticator consents at once.
    await a.page.goto(`${base}/`);
    await a.page.waitForURL(`${base}/account`);
    expect(recorded.gets).toContainEqual({ mediation: 'conditional', outcome: 'resolved' });
    await a.page.getByText(`Signed in as Test ${username}`).waitFor();
    const oldAccessToken = await a.page.evaluate(() => JSON.parse(sessionStorage.getItem('passkeyd.session') ?? '{}').accessToken as string);
    expect(await api.getUserByID({ userId }, bearer(oldAccessToken)).then((r) => r.user?.userId)).toBe(userId);

    // 3. Sign out: the session ends on the server too. (Presence off first, or autofill signs in again.)
    await a.cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: authA, enabled: false });
    await a.page.getByRole('button', { name: 'Sign out' }).click();
    await a.page.waitForURL(`${base}/`);
    expect(await a.page.evaluate(() => sessionStorage.getItem('passkeyd.session'))).toBeNull();
    const ended = await api.getUserByID({ userId }, bearer(oldAccessToken)).then(
      () => 'ok',
      (e) => ConnectError.from(e).code,
    );
    expect(ended).toBe(Code.Unauthenticated);
    // The passkey as it is now (its signature counter moved with the sign-in), to sync to another browser.
    const [synced] = await credentialsOf(a.cdp, authA);
    expect(synced?.signCount).toBeGreaterThan(credential!.signCount);
    await a.context.close();

    // 4. A fresh browser (the passkey synced to it), without autofill: the button, used by keyboard.
    const b = await openContext({ noAutofill: true });
    const authB1 = await addVirtualAuthenticator(b.cdp);
    await b.cdp.send('WebAuthn.addCredential', { authenticatorId: authB1, credential: synced! });
    await b.page.goto(`${base}/`);
    const usernameField = b.page.getByLabel('Username');
    expect(await usernameField.getAttribute('autocomplete')).toBe('username webauthn');
    await shot(b.page, '3-sign-in');
    await usernameField.focus();
    await b.page.keyboard.press('Tab');
    await poll(() => b.page.evaluate(() => document.activeElement?.textContent)).toBe('Sign in with a passkey');
    const modalGets = recorded.gets.length;
    await b.page.keyboard.press('Enter');
    await b.page.waitForURL(`${base}/account`);
    expect(recorded.gets.slice(modalGets)).toEqual([{ mediation: 'optional', outcome: 'resolved' }]);

    // 5. The account page lists the passkey with its details.
    await b.page.getByText(`Signed in as Test ${username}`).waitFor();
    const first = passkeyItem(b.page, 'Laptop passkey');
    await poll(() => first.count()).toBe(1);
    const firstText = await first.innerText();
    expect(firstText).toMatch(/Authenticator\s+Unknown authenticator/); // the virtual authenticator's AAGUID is all zeros
    expect(firstText).toMatch(/Created\s+\S/);
    expect(firstText).not.toMatch(/Last used\s+Never/); // it was just used to sign in
    expect(firstText).toMatch(/Synced\s+This device only/);
    await shot(b.page, '4-account');

    // 6. Add a second passkey (on another authenticator: this one already holds the first).
    await b.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: authB1 });
    const authB2 = await addVirtualAuthenticator(b.cdp);
    await b.page.getByLabel('Name for the new passkey').fill('Security key');
    await b.page.getByRole('button', { name: 'Add a passkey' }).click();
    await b.page.getByText('Added “Security key”.').waitFor();
    await poll(() => b.page.locator('li.passkey').count()).toBe(2);
    const [second] = await credentialsOf(b.cdp, authB2);
    expect(base64url(second!.userHandle!)).toBe(userHandle);
    const secondId = base64url(second!.credentialId);

    // 7. Rename the first, from the keyboard; the browser is told the user's current details.
    await b.page.getByRole('button', { name: 'Rename Laptop passkey' }).click();
    const renameField = b.page.getByLabel('New name for Laptop passkey');
    await renameField.fill('Work laptop');
    await renameField.press('Enter');
    await b.page.getByText('Renamed “Laptop passkey” to “Work laptop”.').waitFor();
    await poll(() => passkeyItem(b.page, 'Work laptop').count()).toBe(1);
    await poll(() => recorded.signals.filter((s) => s.name === 'signalCurrentUserDetails')).toEqual([
      { name: 'signalCurrentUserDetails', opts: { rpId: 'localhost', userId: userHandle, name: username, displayName: `Test ${username}` } },
    ]);

    // 8. Remove the second (after confirming). The page then tells the browser which credentials are
    // still accepted, and Chromium drops the removed one from the authenticator that held it.
    const droppedBySignal = new Promise<string>((resolve) => b.cdp.once('WebAuthn.credentialDeleted', (e) => resolve(base64url(e.credentialId))));
    await b.page.getByRole('button', { name: 'Remove Security key' }).click();
    await passkeyItem(b.page, 'Security key').getByRole('button', { name: 'Remove passkey' }).click();
    await b.page.getByText('Removed “Security key”.').waitFor();
    await poll(() => b.page.locator('li.passkey').count()).toBe(1);

    // 9. The last one cannot go: the refusal in words.
    await b.page.getByRole('button', { name: 'Remove Work laptop' }).click();
    await passkeyItem(b.page, 'Work laptop').getByRole('button', { name: 'Remove passkey' }).click();
    await poll(() => textOf(passkeyItem(b.page, 'Work laptop').getByRole('alert'))).toBe(LAST_PASSKEY_REFUSAL);
    await shot(b.page, '5-account-last-passkey');
    const left = await api.listPasskeys({ userId }, bearer(admin));
    expect(left.result.map((p) => [p.name, p.state])).toEqual([['Work laptop', 2]]);

    // The accepted list has every credential id the user still has (ListPasskeys returns them).
    const accepted = recorded.signals.filter((s) => s.name === 'signalAllAcceptedCredentials');
    expect(accepted.at(-1)?.opts).toEqual({ rpId: 'localhost', userId: userHandle, allAcceptedCredentialIds: [firstId] });
    expect(await droppedBySignal).toBe(secondId);
    expect(await credentialsOf(b.cdp, authB2)).toEqual([]);

    // 10. A passkey the server no longer knows (an admin removed it elsewhere), offered at sign-in:
    // refused, and signalled as unknown to the browser, which drops it.
    await b.cdp.send('WebAuthn.addCredential', { authenticatorId: authB2, credential: synced! });
    await api.removePasskey({ userId, passkeyId: left.result[0]!.id, force: true }, bearer(admin));
    await b.page.getByRole('button', { name: 'Sign out' }).click();
    await b.page.waitForURL(`${base}/`);
    const deleted = new Promise<string>((resolve) => b.cdp.once('WebAuthn.credentialDeleted', (e) => resolve(base64url(e.credentialId))));
    await b.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await poll(() => textOf(b.page.getByRole('alert'))).toMatch(/not registered here any more/);
    expect(recorded.signals.filter((s) => s.name === 'signalUnknownCredential')).toEqual([{ name: 'signalUnknownCredential', opts: { rpId: 'localhost', credentialId: firstId } }]);
    expect(await deleted).toBe(firstId);
    expect(await credentialsOf(b.cdp, authB2)).toEqual([]);
    await shot(b.page, '6-sign-in-unknown-passkey');
    await b.context.close();

    // Every API call went as gRPC-web, and succeeded or failed as gRPC-web does (HTTP 200, status in headers).
    const called = new Set(traffic.rpcs.map((r) => r.path.split('/').pop()));
    for (const rpc of [
      'RegisterPasskey',
      'VerifyPasskeyRegistration',
      'CreateSession',
      'SetSession',
      'GetUserByID',
      'ListPasskeys',
      'RenamePasskey',
      'RemovePasskey',
      'DeleteSession',
    ]) {
      expect(called, rpc).toContain(rpc);
    }
    for (const r of traffic.rpcs) {
      expect(r.requestType, r.path).toMatch(/^application\/grpc-web(\+proto)?$/);
      expect(r.responseType, r.path).toMatch(/^application\/grpc-web(\+proto)?$/);
      expect(r.status, r.path).toBe(200);
    }
    // ... over HTTP/1.1: pages, assets and RPCs alike.
    expect(traffic.protocols.length).toBeGreaterThan(20);
    expect(new Set(traffic.protocols.map((p) => p.protocol))).toEqual(new Set(['http/1.1']));
    // No page tripped its Content-Security-Policy or logged an error other than the refusals it expects.
    expect(recorded.csp).toEqual([]);
    expect(traffic.consoleErrors.filter((e) => !/status of (400|401|412)|net::ERR/.test(e))).toEqual([]);
  });

  it('two devices: the account page lists both sessions, signs out one, then all other devices', async () => {
    const api = clientFor(UserService, 'connect', srv.url);
    const username = `bob-${Date.now().toString(36)}`;
    const userId = await createUser(srv.url, srv.admin, username);
    // Each device registers its own passkey from a registration link (a copied credential's counter would not move in step).
    const registerOn = async (device: { page: Page; cdp: CDPSession }) => {
      await addVirtualAuthenticator(device.cdp);
      const link = await api.createPasskeyRegistrationLink({ userId, medium: { case: 'returnCode', value: {} } }, bearer(srv.admin));
      await device.page.goto(`${base}/register?user=${encodeURIComponent(userId)}&code_id=${encodeURIComponent(link.code!.id)}&code=${encodeURIComponent(link.code!.code)}`);
      await device.page.getByRole('button', { name: 'Create passkey' }).click();
      await device.page.getByRole('heading', { name: 'Your passkey is ready' }).waitFor();
    };
    const phone = await openContext({ noAutofill: true });
    const laptop = await openContext({ noAutofill: true });
    await registerOn(phone);
    await registerOn(laptop);
    const signIn = async (device: { page: Page }) => {
      await device.page.goto(`${base}/`);
      await device.page.getByRole('button', { name: 'Sign in with a passkey' }).click();
      await device.page.waitForURL(`${base}/account`);
      await device.page.getByText(`Signed in as Test ${username}`).waitFor();
    };
    const tokenOf = (device: { page: Page }) => device.page.evaluate(() => JSON.parse(sessionStorage.getItem('passkeyd.session') ?? '{}').accessToken as string);
    const stillWorks = async (token: string) =>
      api.getUserByID({ userId }, bearer(token)).then(
        () => 'ok',
        (e) => ConnectError.from(e).code,
      );
    await signIn(phone);
    await signIn(laptop);
    const sessionsOf = (page: Page) => page.locator('li.session');
    await laptop.page.reload();
    await poll(() => sessionsOf(laptop.page).count()).toBe(2);
    const current = sessionsOf(laptop.page).filter({ hasText: '(this device)' });
    expect(await current.count()).toBe(1);
    expect(await current.innerText()).toMatch(/Chrome on Linux \(this device\)[\s\S]*Signed in\s+\S[\s\S]*Last used\s+\S/);
    await shot(laptop.page, '7-account-sessions');

    // Sign out the phone from the laptop: its token is refused at once; the laptop stays signed in.
    const phoneToken = await tokenOf(phone);
    await sessionsOf(laptop.page)
      .filter({ hasNotText: '(this device)' })
      .getByRole('button', { name: /^Sign out / })
      .click();
    await laptop.page.getByText('Signed out Chrome on Linux.').waitFor();
    await poll(() => sessionsOf(laptop.page).count()).toBe(1);
    expect(await stillWorks(phoneToken)).toBe(Code.Unauthenticated);
    await phone.page.reload();
    await phone.page.getByText('Your session has ended. Sign in again.').waitFor();

    // The phone signs in again; the laptop signs out of all other devices.
    await signIn(phone);
    await laptop.page.reload();
    await poll(() => sessionsOf(laptop.page).count()).toBe(2);
    await laptop.page.getByRole('button', { name: 'Sign out of all other devices' }).click();
    await laptop.page.getByText('Signed out of 1 other device.').waitFor();
    await poll(() => sessionsOf(laptop.page).count()).toBe(1);
    expect(await laptop.page.getByRole('button', { name: 'Sign out of all other devices' }).isHidden()).toBe(true);
    expect(await stillWorks(await tokenOf(phone))).toBe(Code.Unauthenticated);
    expect(await stillWorks(await tokenOf(laptop))).toBe('ok');
    await phone.page.reload();
    await phone.page.getByText('Your session has ended. Sign in again.').waitFor();
    await shot(laptop.page, '8-account-signed-out-others');
    await phone.context.close();
    await laptop.context.close();
    expect(recorded.csp).toEqual([]);
  });
});
