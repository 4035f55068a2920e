/**
 * Self-service sign-up on the hosted sign-in page, in Debian's chromium with a CDP virtual authenticator
 * against a real passkeyd: with the login policy off the "Create an account" offer is absent and the
 * RPCs refuse; with it on, create account → passkey created → signed in → account page; the same name
 * again is refused on the page.
 */
import { mkdirSync } from 'node:fs';
import { Code } from '@connectrpc/connect';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrganizationService } from '../gen/passkeyd/org/v2/org_service_pb.js';
import { SignUpService } from '../gen/passkeyd/user/v2/signup_service_pb.js';
import { UserService } from '../gen/passkeyd/user/v2/user_service_pb.js';
import { addVirtualAuthenticator, credentialsOf, freePort, HAS_CHROMIUM, launchChromium } from './helpers/browser.js';
import { bearer, clientFor } from './helpers/clients.js';
import { codeOf } from './helpers/codes.js';
import { buildPages } from './helpers/pages.js';
import { BACKEND, useTestServer } from './helpers/server.js';

const ARTIFACTS = 'test-artifacts/pages';

describe.skipIf(!HAS_CHROMIUM)(`sign-up page in chromium (${BACKEND})`, () => {
  let base: string;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const [, launched] = await Promise.all([buildPages(), launchChromium()]);
    browser = launched;
  });
  afterAll(() => browser?.close());
  const srv = useTestServer(
    async () => {
      const port = await freePort();
      base = `http://localhost:${port}`;
      return { config: { port: String(port), 'rp-id': 'localhost', origins: base, issuer: base } };
    },
    { retries: 3 },
  );

  /** A fresh browser context (no autofill, so only the sign-up ceremony runs) with a virtual authenticator. */
  async function openPage(): Promise<{ page: Page; authenticator: () => Promise<unknown[]>; close: () => Promise<void>; errors: string[] }> {
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    await context.addInitScript('if (window.PublicKeyCredential) window.PublicKeyCredential.isConditionalMediationAvailable = async () => false;');
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const id = await addVirtualAuthenticator(cdp);
    return { page, authenticator: () => credentialsOf(cdp, id), close: () => context.close(), errors };
  }

  /** Opens the sign-in page and waits until it has asked whether sign-up is open. */
  async function openSignIn(page: Page): Promise<void> {
    const asked = page.waitForResponse((r) => r.url().endsWith('/passkeyd.user.v2.SignUpService/GetSignUpSettings'));
    await page.goto(`${base}/`);
    expect((await asked).status()).toBe(200);
  }

  it('offers "Create an account" only when the policy allows it, and signs the new user in', async () => {
    const orgs = clientFor(OrganizationService, 'connect', srv.url);
    const signUps = clientFor(SignUpService, 'connect', srv.url);
    const defaultOrg = (await orgs.listOrganizations({ query: { asc: true } }, bearer(srv.admin))).result.find((o) => o.isDefault)!.id;
    const username = `newcomer-${Date.now().toString(36)}`;

    // Policy off: no offer on the page, and the RPC refuses.
    const off = await openPage();
    await openSignIn(off.page);
    await off.page.getByRole('button', { name: 'Sign in with a passkey' }).waitFor();
    expect(await off.page.getByRole('button', { name: 'Create an account' }).isVisible()).toBe(false);
    expect(await codeOf(signUps.startSignUp({ username }))).toBe(Code.PermissionDenied);
    await off.close();

    await orgs.setLoginPolicy({ organizationId: defaultOrg, policy: { allowSelfRegistration: true } }, bearer(srv.admin));
    try {
      const on = await openPage();
      await openSignIn(on.page);
      await on.page.getByRole('button', { name: 'Create an account' }).click();
      await on.page.getByLabel('Account name').fill(username);
      await on.page.screenshot({ path: `${ARTIFACTS}/signup-1-form.png`, fullPage: true });
      await on.page.getByRole('button', { name: 'Create account with a passkey' }).click();
      await on.page.waitForURL(`${base}/account`);
      await on.page.getByText(`Signed in as ${username}`).waitFor();
      await on.page.screenshot({ path: `${ARTIFACTS}/signup-2-account.png`, fullPage: true });
      expect(await on.authenticator()).toHaveLength(1);
      // The account page lists the passkey the sign-up created, through the user's own token.
      const token = await on.page.evaluate(() => JSON.parse(sessionStorage.getItem('passkeyd.session') ?? '{}').accessToken as string);
      const userId = await on.page.evaluate(() => JSON.parse(sessionStorage.getItem('passkeyd.session') ?? '{}').userId as string);
      const listed = await clientFor(UserService, 'connect', srv.url).listPasskeys({ userId }, bearer(token));
      expect(listed.result).toHaveLength(1);
      expect(on.errors).toEqual([]);
      await on.close();

      // The same name again, from another browser: refused on the page.
      const again = await openPage();
      await openSignIn(again.page);
      await again.page.getByRole('button', { name: 'Create an account' }).click();
      await again.page.getByLabel('Account name').fill(username.toUpperCase());
      await again.page.getByRole('button', { name: 'Create account with a passkey' }).click();
      await expect
        .poll(
          () =>
            again.page
              .getByRole('alert')
              .innerText()
              .catch(() => ''),
          { timeout: 15_000 },
        )
        .toBe('That account name is taken. Choose another.');
      expect(await again.authenticator()).toHaveLength(0);
      await again.close();
    } finally {
      await orgs.resetLoginPolicy({ organizationId: defaultOrg }, bearer(srv.admin));
    }
  });
});
