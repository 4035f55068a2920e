/**
 * Registration-link page (`/register?user=…&code_id=…&code=…`, the link passkeyd sends): creates the
 * user's passkey with the one-time code, no sign-in needed. RegisterPasskey(code) → the browser's
 * ceremony → VerifyPasskeyRegistration(name).
 */
import { Code } from '@connectrpc/connect';
import { browserSupportsWebAuthn, startRegistration, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';
import { asStruct, publicKeyOf, users } from './api.js';
import { busy, byId, defaultPasskeyName, say } from './dom.js';
import { describeError } from './messages.js';

interface RegistrationLink {
  userId: string;
  codeId: string;
  code: string;
}

const STORE_KEY = 'passkeyd.registration';

const form = byId<HTMLFormElement>('register');
const nameInput = byId<HTMLInputElement>('passkey-name');
const button = byId<HTMLButtonElement>('register-button');
const status = byId('status');
const error = byId('error');

/**
 * The link's values. They are taken out of the address bar at once, so the one-time code does not
 * linger in history, bookmarks or a shared screenshot; this tab keeps them for a reload.
 */
function readLink(): RegistrationLink | undefined {
  const q = new URLSearchParams(location.search);
  const fromUrl = { userId: q.get('user') ?? '', codeId: q.get('code_id') ?? '', code: q.get('code') ?? '' };
  if (fromUrl.userId || fromUrl.codeId || fromUrl.code) {
    history.replaceState(null, '', location.pathname);
    if (!fromUrl.userId || !fromUrl.codeId || !fromUrl.code) {
      sessionStorage.removeItem(STORE_KEY);
      return undefined;
    }
    sessionStorage.setItem(STORE_KEY, JSON.stringify(fromUrl));
    return fromUrl;
  }
  try {
    const kept = JSON.parse(sessionStorage.getItem(STORE_KEY) ?? 'null') as RegistrationLink | null;
    return kept?.userId && kept.codeId && kept.code ? kept : undefined;
  } catch {
    return undefined;
  }
}

/** A failure already put into words for its step. */
class StepError extends Error {}

// passkeyd answers an unknown, wrong, used or expired code alike (INVALID_ARGUMENT), by design.
const LINK_INVALID = 'This registration link is not valid: it may have expired, been used already, or been cut short. Ask for a new link.';

async function register(link: RegistrationLink): Promise<void> {
  const passkeyName = nameInput.value.trim() || defaultPasskeyName();
  say(status, 'Preparing your passkey…');
  let begun;
  try {
    begun = await users.registerPasskey({ userId: link.userId, code: { id: link.codeId, code: link.code }, domain: location.hostname });
  } catch (err) {
    throw new StepError(
      describeError(err, {
        [Code.Unauthenticated]: LINK_INVALID,
        [Code.NotFound]: LINK_INVALID,
        [Code.PermissionDenied]: LINK_INVALID,
        [Code.InvalidArgument]: LINK_INVALID,
      }),
    );
  }
  const options = publicKeyOf<PublicKeyCredentialCreationOptionsJSON>(begun.publicKeyCredentialCreationOptions, 'RegisterPasskey');
  say(status, `Follow your browser’s prompt to create a passkey for ${options.user.name}.`);
  const credential = await startRegistration({ optionsJSON: options });
  say(status, 'Saving your passkey…');
  try {
    await users.verifyPasskeyRegistration({ userId: link.userId, passkeyId: begun.passkeyId, publicKeyCredential: asStruct(credential), passkeyName });
  } catch (err) {
    throw new StepError(
      describeError(err, {
        [Code.Unauthenticated]: LINK_INVALID,
        [Code.FailedPrecondition]: 'The registration took too long. Start again.',
        [Code.InvalidArgument]: 'Your passkey could not be verified. Try again, or use another device.',
        [Code.AlreadyExists]: 'This passkey is already registered.',
      }),
    );
  }
}

const link = readLink();
if (!browserSupportsWebAuthn()) {
  say(error, 'This browser does not support passkeys. Use a current version of Chrome, Edge, Firefox or Safari.');
} else if (!link) {
  say(error, 'This registration link is incomplete. Open the whole link from your message, or ask for a new one.');
} else {
  nameInput.value = defaultPasskeyName();
  form.hidden = false;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    say(error, '');
    if (!form.reportValidity()) return;
    void busy(button, async () => {
      try {
        await register(link);
        sessionStorage.removeItem(STORE_KEY);
        form.hidden = true;
        say(status, '');
        byId('done').hidden = false;
        byId('done-title').focus();
      } catch (err) {
        say(status, '');
        say(error, err instanceof StepError ? err.message : describeError(err, {}, 'Creating the passkey did not work. Try again.'));
      }
    });
  });
}
