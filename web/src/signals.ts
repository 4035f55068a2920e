/**
 * The WebAuthn Signal API, where the browser has it: tells the browser (and through it the password
 * manager or authenticator) what the server knows, so deleted passkeys stop being offered and renamed
 * accounts show their current names. Signals are best effort: every function here resolves to whether
 * the browser took the signal and never throws, so a page never fails because of one.
 */
import { sendSignal } from '@simplewebauthn/browser';

type SignalName = 'signalUnknownCredential' | 'signalAllAcceptedCredentials' | 'signalCurrentUserDetails';

/** Whether this browser implements a signal (feature detection, not user-agent sniffing). */
function supportsSignal(name: SignalName): boolean {
  const pkc = (globalThis as { PublicKeyCredential?: unknown }).PublicKeyCredential as Record<string, unknown> | undefined;
  return typeof pkc?.[name] === 'function';
}

async function send(name: SignalName, run: () => Promise<unknown>): Promise<boolean> {
  if (!supportsSignal(name)) return false;
  try {
    await run();
    return true;
  } catch (err) {
    // A refused signal (e.g. an RP ID the page may not speak for) changes nothing the user can act on.
    console.warn(`${name} was not accepted`, err);
    return false;
  }
}

/** A login named a credential the server does not know (any more): the browser may hide or delete it. */
export function signalUnknownCredential(rpId: string, credentialId: string): Promise<boolean> {
  return send('signalUnknownCredential', () => sendSignal({ signalName: 'unknownCredential', rpID: rpId, credentialID: credentialId }));
}

/**
 * The complete list of a user's credentials the server accepts. Only ever call this with the WHOLE list:
 * a credential missing from it may be deleted from the user's password manager.
 */
export function signalAllAcceptedCredentials(rpId: string, userHandle: string, credentialIds: string[]): Promise<boolean> {
  return send('signalAllAcceptedCredentials', () => sendSignal({ signalName: 'allAcceptedCredentials', rpID: rpId, userID: userHandle, allAcceptedCredentialIDs: credentialIds }));
}

/** The user's current name and display name, so passkey pickers show them instead of stale ones. */
export function signalCurrentUserDetails(rpId: string, userHandle: string, name: string, displayName: string): Promise<boolean> {
  return send('signalCurrentUserDetails', () => sendSignal({ signalName: 'currentUserDetails', rpID: rpId, userID: userHandle, userName: name, userDisplayName: displayName }));
}
