/**
 * The signed-in state of this tab. sessionStorage, not localStorage: it ends with the tab, is never
 * sent with requests (unlike a cookie, so no CSRF surface), and one tab's sign-out cannot leave a
 * stale token in another.
 */

const KEY = 'passkeyd.session';

/** What a successful SetSession leaves for the account page. */
export interface StoredSession {
  sessionId: string;
  sessionToken: string;
  accessToken: string;
  /** Access token expiry, ms since the epoch (0 when unknown). */
  accessTokenExpiresAt: number;
  /** The user id (the token's `sub`). */
  userId: string;
  /** The WebAuthn user handle (base64url) of the signed-in user, as the authenticator returned it. */
  userHandle: string | undefined;
  /** The relying-party id the user signed in for. */
  rpId: string;
}

/** Keeps the session for this tab. */
export function saveSession(s: StoredSession): void {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

/** The tab's session, or undefined when there is none or its access token has expired. */
export function loadSession(now = Date.now()): StoredSession | undefined {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as StoredSession;
    if (!s.sessionId || !s.accessToken || !s.userId) return undefined;
    if (s.accessTokenExpiresAt && s.accessTokenExpiresAt <= now) return undefined;
    return s;
  } catch {
    return undefined;
  }
}

/** Forgets the tab's session. */
export function clearSession(): void {
  sessionStorage.removeItem(KEY);
}

/**
 * The `sub` claim of a JWT, read without verifying it: the page only needs to know whose account to
 * show, and passkeyd verifies the token on every call anyway.
 */
export function subjectOf(jwt: string): string {
  const payload = jwt.split('.')[1];
  if (!payload) throw new Error('the access token is not a JWT');
  const b64 = payload.replace(/-/g, '+').replace(/_/g, '/');
  const claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))) as { sub?: unknown };
  if (typeof claims.sub !== 'string' || !claims.sub) throw new Error('the access token has no subject');
  return claims.sub;
}
