/**
 * Turns failures into sentences a person can act on. Raw codes and server messages go to the console
 * for whoever debugs; the page shows words.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { WebAuthnError } from '@simplewebauthn/browser';

/** Per-call wording for the server's answers that mean something specific at that step. */
export type CodeWords = Partial<Record<Code, string>>;

const GENERIC: CodeWords = {
  [Code.Unavailable]: 'passkeyd cannot be reached right now. Check your connection and try again.',
  [Code.ResourceExhausted]: 'Too many attempts in a short time. Wait a minute, then try again.',
  [Code.DeadlineExceeded]: 'The server took too long to answer. Try again.',
  [Code.Unauthenticated]: 'Your session has ended. Sign in again.',
  [Code.PermissionDenied]: 'You are not allowed to do this.',
  [Code.Internal]: 'Something went wrong on the server. Try again later.',
};

/** Whether an error is the browser's passkey prompt being dismissed, timing out or replaced. */
function isCeremonyCancelled(err: unknown): boolean {
  const name = err instanceof WebAuthnError ? ((err.cause as Error | undefined)?.name ?? err.name) : (err as Error | undefined)?.name;
  return name === 'NotAllowedError' || name === 'AbortError' || (err instanceof WebAuthnError && err.code === 'ERROR_CEREMONY_ABORTED');
}

/** Whether an error is the one an aborted (superseded) ceremony ends with: nothing to tell the user. */
export function isAbort(err: unknown): boolean {
  const e = err as Error | undefined;
  return e?.name === 'AbortError' || (err instanceof WebAuthnError && err.code === 'ERROR_CEREMONY_ABORTED');
}

/** A sentence for any failure of a step; `words` overrides the generic wording per gRPC code. */
export function describeError(err: unknown, words: CodeWords = {}, fallback = 'Something went wrong. Try again.'): string {
  console.warn(err);
  if (err instanceof ConnectError) return words[err.code] ?? GENERIC[err.code] ?? fallback;
  if (err instanceof WebAuthnError) {
    switch (err.code) {
      case 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED':
        return 'This device or password manager already holds a passkey for this account. Use another one, or keep the one you have.';
      case 'ERROR_INVALID_DOMAIN':
      case 'ERROR_INVALID_RP_ID':
        return 'Passkeys do not work on this address. Open the page on its usual address (https, or localhost).';
      case 'ERROR_AUTHENTICATOR_MISSING_DISCOVERABLE_CREDENTIAL_SUPPORT':
      case 'ERROR_AUTHENTICATOR_MISSING_USER_VERIFICATION_SUPPORT':
      case 'ERROR_AUTHENTICATOR_NO_SUPPORTED_PUBKEYCREDPARAMS_ALG':
        return 'This authenticator cannot hold a passkey for this site. Try another device or password manager.';
    }
  }
  if (isCeremonyCancelled(err)) return 'The passkey prompt was closed or timed out. Try again when you are ready.';
  if (err instanceof TypeError) return 'passkeyd cannot be reached right now. Check your connection and try again.';
  return fallback;
}
