/**
 * Sign-in page: usernameless passkey login, offered two ways at once. On load, a conditional request
 * (autofill) waits behind the username field, so a password manager can suggest the passkey there;
 * the button starts a modal request (usernameless, or scoped to a typed username). Either way:
 * CreateSession → the browser's ceremony → SetSession → the account page.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  browserSupportsWebAuthn,
  browserSupportsWebAuthnAutofill,
  startAuthentication,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/browser';
import { asStruct, publicKeyOf, sessions } from './api.js';
import { busy, byId, say } from './dom.js';
import { describeError, isAbort } from './messages.js';
import { loadSession, saveSession, subjectOf } from './session-store.js';
import { signalUnknownCredential } from './signals.js';
import { setUpSignUp } from './sign-up.js';

/**
 * SetSession's message when the asserted credential cannot complete the session. In a usernameless
 * login every known, ready credential can, so there it means "unknown credential". (passkeyd keeps one
 * message for all such refusals so responses do not tell users apart.)
 */
const NOT_ACCEPTED = 'this credential cannot sign in to this session';

interface BegunLogin {
  sessionId: string;
  sessionToken: string;
  options: PublicKeyCredentialRequestOptionsJSON;
  usernameless: boolean;
}

/** Thrown when the server does not know the credential the browser offered. */
class UnknownCredentialError extends Error {}

const form = byId<HTMLFormElement>('sign-in');
const username = byId<HTMLInputElement>('username');
const button = byId<HTMLButtonElement>('passkey-button');
const status = byId('status');
const error = byId('error');

async function begin(loginName: string | undefined): Promise<BegunLogin> {
  const created = await sessions.createSession({
    checks: loginName ? { user: { search: { case: 'loginName', value: loginName } } } : undefined,
    // The page's host is the RP ID: passkeyd refuses one it is not configured for, rather than
    // issuing options this browser would reject.
    challenges: { webAuthN: { domain: location.hostname } },
  });
  const options = publicKeyOf<PublicKeyCredentialRequestOptionsJSON>(created.challenges?.webAuthN?.publicKeyCredentialRequestOptions, 'CreateSession');
  return { sessionId: created.sessionId, sessionToken: created.sessionToken, options, usernameless: !loginName };
}

async function finish(begun: BegunLogin, assertion: AuthenticationResponseJSON): Promise<void> {
  say(error, '');
  say(status, 'Signing you in…');
  let done;
  try {
    done = await sessions.setSession({
      sessionId: begun.sessionId,
      sessionToken: begun.sessionToken,
      checks: { webAuthN: { credentialAssertionData: asStruct(assertion) } },
    });
  } catch (err) {
    if (begun.usernameless && err instanceof ConnectError && err.code === Code.Unauthenticated && err.rawMessage === NOT_ACCEPTED) {
      // The passkey was deleted on the server (or never finished registering): ask the browser to
      // stop offering it.
      await signalUnknownCredential(begun.options.rpId ?? location.hostname, assertion.id);
      throw new UnknownCredentialError(err.rawMessage, { cause: err });
    }
    throw err;
  }
  saveSession({
    sessionId: begun.sessionId,
    sessionToken: done.sessionToken,
    accessToken: done.accessToken,
    accessTokenExpiresAt: done.accessTokenExpirationDate ? timestampMs(done.accessTokenExpirationDate) : 0,
    userId: subjectOf(done.accessToken),
    userHandle: assertion.response.userHandle,
    rpId: begun.options.rpId ?? location.hostname,
  });
  location.assign('/account');
}

function messageFor(err: unknown): string {
  if (err instanceof UnknownCredentialError) return 'This passkey is not registered here any more (it may have been removed from your account). Use another passkey.';
  return describeError(
    err,
    {
      [Code.Unauthenticated]: 'This passkey could not sign you in. Try again, or use another passkey.',
      [Code.InvalidArgument]: 'Your passkey’s answer could not be read. Try again.',
      [Code.FailedPrecondition]: 'The sign-in took too long. Try again.',
      [Code.NotFound]: 'The sign-in took too long. Try again.',
    },
    'Signing in did not work. Try again.',
  );
}

/**
 * Waits for the user to pick a passkey from the username field's autofill. Started again after every
 * other attempt, so the field keeps offering passkeys.
 */
async function startAutofill(): Promise<void> {
  if (!(await browserSupportsWebAuthnAutofill())) return;
  try {
    const begun = await begin(undefined);
    const assertion = await startAuthentication({ optionsJSON: begun.options, useBrowserAutofill: true });
    await finish(begun, assertion);
  } catch (err) {
    // Superseded by the button's modal request: that one reports for itself.
    if (isAbort(err)) return;
    say(status, '');
    say(error, messageFor(err));
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  say(error, '');
  void busy(button, async () => {
    const loginName = username.value.trim() || undefined;
    try {
      say(status, 'Creating a sign-in request…');
      const begun = await begin(loginName);
      say(status, 'Waiting for your passkey…');
      // Starting this ceremony aborts the pending autofill one (SimpleWebAuthn allows one at a time).
      const assertion = await startAuthentication({ optionsJSON: begun.options });
      await finish(begun, assertion);
    } catch (err) {
      say(status, '');
      say(error, messageFor(err));
      void startAutofill();
    }
  });
});

if (!browserSupportsWebAuthn()) {
  say(error, 'This browser does not support passkeys. Use a current version of Chrome, Edge, Firefox or Safari.');
  button.disabled = true;
} else {
  byId('signed-in').hidden = loadSession() === undefined;
  setUpSignUp(status, error);
  void startAutofill();
}
