/**
 * Test helpers for the hosted pages in a real browser: Debian's chromium driven by playwright-core
 * (never a downloaded browser), a CDP virtual WebAuthn authenticator, and a free port chosen before the
 * server starts (WebAuthn origins must name the port, and the page must be on `localhost`, a secure
 * context without TLS).
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { chromium, type Browser, type CDPSession } from 'playwright-core';

/** The browser the E2E tests drive (`apt-get install -y chromium`); PASSKEYD_CHROMIUM overrides. */
export const CHROMIUM_PATH = process.env.PASSKEYD_CHROMIUM || '/usr/bin/chromium';

/** Whether that browser is installed; the E2E tests are skipped without it. */
export const HAS_CHROMIUM = existsSync(CHROMIUM_PATH);

/** Headless chromium without sandbox (containers), GPU, background traffic or QUIC. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** Options of WebAuthn.addVirtualAuthenticator (CDP). */
export interface VirtualAuthenticatorOptions {
  protocol?: 'ctap2' | 'u2f';
  transport?: 'internal' | 'usb' | 'nfc' | 'ble' | 'hybrid';
  hasResidentKey?: boolean;
  hasUserVerification?: boolean;
  isUserVerified?: boolean;
  automaticPresenceSimulation?: boolean;
}

/** A passkey-capable platform authenticator (ctap2, internal, resident keys, user verification) that always consents. */
export async function addVirtualAuthenticator(cdp: CDPSession, options: VirtualAuthenticatorOptions = {}): Promise<string> {
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true, ...options },
  });
  return authenticatorId;
}

/** The credentials a virtual authenticator holds (ids base64, as CDP reports them). */
export async function credentialsOf(cdp: CDPSession, authenticatorId: string) {
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  return credentials;
}

/** A TCP port free on 127.0.0.1 right now (the OS picks it; the caller binds it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The CDP base64 of a credential id as the base64url WebAuthn uses. */
export function base64url(b64: string): string {
  return Buffer.from(b64, 'base64').toString('base64url');
}
