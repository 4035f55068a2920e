/**
 * Account page: who is signed in, their passkeys (authenticator, created, last used, synced), rename,
 * remove (with passkeyd's lockout rule put into words), add another passkey, where the user is signed in
 * (sign out one device, or all others), sign out. Every call carries
 * the access token from sign-in; the WebAuthn Signal API keeps the browser's passkey list in step.
 */
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { startRegistration, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';
import { AuthFactorState, type Passkey } from '../../gen/passkeyd/user/v2/passkey_pb.js';
import type { User } from '../../gen/passkeyd/user/v2/user_pb.js';
import { asStruct, bearer, publicKeyOf, sessions, users } from './api.js';
import { busy, byId, defaultPasskeyName, h, say } from './dom.js';
import { describeError, type CodeWords } from './messages.js';
import { createSessionsSection } from './account-sessions.js';
import { clearSession, loadSession, saveSession, type StoredSession } from './session-store.js';
import { signalAllAcceptedCredentials, signalCurrentUserDetails } from './signals.js';

/** passkeyd's lockout rule (RemovePasskey: FAILED_PRECONDITION), as the user reads it. */
const LAST_PASSKEY = 'This is your only passkey. Add another passkey before removing this one.';

/** More than any user should have; a longer list is incomplete, and is then never signalled. */
const LIST_LIMIT = 1000;

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

const signOutButton = byId<HTMLButtonElement>('sign-out');
const accountView = byId('account');
const who = byId('who');
const list = byId<HTMLUListElement>('passkeys');
const listStatus = byId('list-status');
const addForm = byId<HTMLFormElement>('add-passkey');
const addName = byId<HTMLInputElement>('new-passkey-name');
const addButton = byId<HTMLButtonElement>('add-button');
const addStatus = byId('add-status');
const addError = byId('add-error');
const pageError = byId('error');

let session: StoredSession;
let profile: { name: string; displayName: string } | undefined;

/** Thrown once the access token is refused: the page switches to its signed-out view. */
class SessionEnded extends Error {}

function signedOut(text: string): void {
  clearSession();
  accountView.hidden = true;
  signOutButton.hidden = true;
  byId('signed-out-text').textContent = text;
  byId('signed-out').hidden = false;
}

/** Runs a call; an UNAUTHENTICATED answer means the session ended (signed out elsewhere, expired). */
async function authed<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
      signedOut('Your session has ended. Sign in again.');
      throw new SessionEnded();
    }
    throw err;
  }
}

/** A failure's sentence, or nothing when the session ended (the signed-out view says it). */
function failure(err: unknown, words: CodeWords, fallback: string): string {
  return err instanceof SessionEnded ? '' : describeError(err, words, fallback);
}

function formatDate(ts: Timestamp | undefined): Node {
  if (!ts) return document.createTextNode('Never');
  const d = timestampDate(ts);
  return h('time', { datetime: d.toISOString() }, dateFormat.format(d));
}

function syncText(p: Passkey): string {
  if (p.backedUp) return 'Synced (backed up)';
  if (p.backupEligible) return 'Can sync, not backed up yet';
  return 'This device only';
}

/** The credential ids, or undefined if any is missing (a partial list would make password managers delete valid passkeys). */
function credentialIdsOf(passkeys: Passkey[]): string[] | undefined {
  const ids = passkeys.map((p) => p.credentialId);
  return ids.every((id) => id !== '') ? ids : undefined;
}

/** Tells the browser the complete set of this user's passkeys for this RP, when the page knows it. */
async function signalAccepted(passkeys: Passkey[], complete: boolean): Promise<void> {
  if (!complete || !session.userHandle) return;
  const ids = credentialIdsOf(passkeys.filter((p) => p.rpId === session.rpId));
  if (ids) await signalAllAcceptedCredentials(session.rpId, session.userHandle, ids);
}

async function signalDetails(): Promise<void> {
  if (session.userHandle && profile) await signalCurrentUserDetails(session.rpId, session.userHandle, profile.name, profile.displayName);
}

function passkeyItem(p: Passkey): HTMLLIElement {
  const name = p.name || 'Unnamed passkey';
  const base = `pk-${p.id}`;
  const heading = h('h3', { id: `${base}-name`, tabindex: '-1' }, name);
  const error = h('p', { class: 'error', role: 'alert', hidden: true });

  const renameButton = h('button', { type: 'button', class: 'secondary', 'aria-label': `Rename ${name}` }, 'Rename');
  const removeButton = h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${name}` }, 'Remove');
  const actions = h('div', { class: 'actions' }, renameButton, removeButton);

  const renameInput = h('input', { id: `${base}-new-name`, type: 'text', required: true, maxlength: '200', autocomplete: 'off', value: p.name });
  const saveButton = h('button', { type: 'submit' }, 'Save name');
  const cancelRename = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const renameForm = h(
    'form',
    { hidden: true, 'aria-label': `Rename ${name}` },
    h('label', { for: renameInput.id }, `New name for ${name}`),
    renameInput,
    h('div', { class: 'actions' }, saveButton, cancelRename),
  );

  const confirmButton = h('button', { type: 'button', class: 'danger' }, 'Remove passkey');
  const cancelRemove = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  const confirm = h(
    'div',
    { class: 'confirm', hidden: true, role: 'group', 'aria-label': `Remove ${name}?` },
    h('p', {}, `Remove “${name}”? You will no longer be able to sign in with it.`),
    h('div', { class: 'actions' }, confirmButton, cancelRemove),
  );

  const showActions = (focus: HTMLElement) => {
    renameForm.hidden = true;
    confirm.hidden = true;
    actions.hidden = false;
    focus.focus();
  };
  renameButton.addEventListener('click', () => {
    say(error, '');
    say(addStatus, '');
    actions.hidden = true;
    renameForm.hidden = false;
    renameInput.value = p.name;
    renameInput.select();
    renameInput.focus();
  });
  cancelRename.addEventListener('click', () => showActions(renameButton));
  renameForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') showActions(renameButton);
  });
  renameForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const newName = renameInput.value.trim();
    if (!newName) {
      say(error, 'Enter a name for the passkey.');
      renameInput.focus();
      return;
    }
    void busy(saveButton, async () => {
      try {
        await authed(() => users.renamePasskey({ userId: session.userId, passkeyId: p.id, name: newName }, bearer(session.accessToken)));
        await refresh(false);
        say(listStatus, `Renamed “${name}” to “${newName}”.`);
        document.getElementById(`${base}-name`)?.focus();
        await signalDetails();
      } catch (err) {
        say(
          error,
          failure(
            err,
            { [Code.NotFound]: 'This passkey no longer exists. Reload the page.', [Code.InvalidArgument]: 'Use a name of 1 to 200 characters.' },
            'Renaming did not work. Try again.',
          ),
        );
      }
    });
  });

  removeButton.addEventListener('click', () => {
    say(error, '');
    say(addStatus, '');
    actions.hidden = true;
    confirm.hidden = false;
    cancelRemove.focus();
  });
  cancelRemove.addEventListener('click', () => showActions(removeButton));
  confirm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') showActions(removeButton);
  });
  confirmButton.addEventListener('click', () => {
    void busy(confirmButton, async () => {
      try {
        await authed(() => users.removePasskey({ userId: session.userId, passkeyId: p.id }, bearer(session.accessToken)));
        await refresh(true);
        say(listStatus, `Removed “${name}”.`);
        byId('passkeys-title').focus();
      } catch (err) {
        showActions(removeButton);
        say(
          error,
          failure(err, { [Code.FailedPrecondition]: LAST_PASSKEY, [Code.NotFound]: 'This passkey no longer exists. Reload the page.' }, 'Removing did not work. Try again.'),
        );
      }
    });
  });

  const details = h(
    'dl',
    {},
    h('dt', {}, 'Authenticator'),
    h('dd', {}, p.authenticatorName || 'Unknown authenticator'),
    h('dt', {}, 'Created'),
    h('dd', {}, formatDate(p.creationDate)),
    h('dt', {}, 'Last used'),
    h('dd', {}, formatDate(p.lastUsedDate)),
    h('dt', {}, 'Synced'),
    h('dd', {}, syncText(p)),
  );
  return h('li', { class: 'passkey', 'aria-labelledby': heading.id, 'data-passkey-id': p.id }, heading, details, actions, renameForm, confirm, error);
}

/** Loads and shows the passkeys; `signal` also tells the browser the accepted set. */
async function refresh(signal: boolean): Promise<void> {
  const r = await authed(() => users.listPasskeys({ userId: session.userId, query: { limit: LIST_LIMIT } }, bearer(session.accessToken)));
  // Registrations that were begun but never finished are not passkeys the user can use.
  const ready = r.result.filter((p) => p.state === AuthFactorState.READY);
  list.replaceChildren(...ready.map(passkeyItem));
  if (ready.length === 0) say(listStatus, 'You have no passkeys yet.');
  if (signal) await signalAccepted(ready, r.details === undefined || Number(r.details.totalResult) <= r.result.length);
}

function showUser(user: User | undefined): void {
  if (!user) return;
  const human = user.type.case === 'human' ? user.type.value.profile : undefined;
  const displayName = human?.displayName || [human?.givenName, human?.familyName].filter(Boolean).join(' ') || user.username;
  const name = user.preferredLoginName || user.username;
  profile = { name: user.username || name, displayName };
  who.replaceChildren('Signed in as ', h('strong', {}, displayName), name && name !== displayName ? ` (${name})` : '', '.');
}

async function addPasskey(): Promise<void> {
  const passkeyName = addName.value.trim() || defaultPasskeyName();
  say(addStatus, 'Preparing your passkey…');
  const begun = await authed(() => users.registerPasskey({ userId: session.userId, domain: location.hostname }, bearer(session.accessToken)));
  const options = publicKeyOf<PublicKeyCredentialCreationOptionsJSON>(begun.publicKeyCredentialCreationOptions, 'RegisterPasskey');
  if (!session.userHandle) {
    session = { ...session, userHandle: options.user.id };
    saveSession(session);
  }
  say(addStatus, 'Follow your browser’s prompt to create the passkey.');
  const credential = await startRegistration({ optionsJSON: options });
  say(addStatus, 'Saving your passkey…');
  await authed(() =>
    users.verifyPasskeyRegistration({ userId: session.userId, passkeyId: begun.passkeyId, publicKeyCredential: asStruct(credential), passkeyName }, bearer(session.accessToken)),
  );
  await refresh(true);
  say(addStatus, `Added “${passkeyName}”.`);
  addName.value = defaultPasskeyName();
}

addForm.addEventListener('submit', (event) => {
  event.preventDefault();
  say(addError, '');
  void busy(addButton, async () => {
    try {
      await addPasskey();
    } catch (err) {
      say(addStatus, '');
      say(
        addError,
        failure(
          err,
          {
            [Code.FailedPrecondition]: 'Adding the passkey took too long. Try again.',
            [Code.InvalidArgument]: 'Your new passkey could not be verified. Try again, or use another device.',
            [Code.AlreadyExists]: 'This passkey is already registered.',
          },
          'Adding the passkey did not work. Try again.',
        ),
      );
    }
  });
});

signOutButton.addEventListener('click', () => {
  void busy(signOutButton, async () => {
    try {
      await sessions.deleteSession({ sessionId: session.sessionId, sessionToken: session.sessionToken }, bearer(session.accessToken));
    } catch (err) {
      // Already ended (expired, or signed out in another tab): forgetting it here is all that is left.
      console.warn(err);
    } finally {
      clearSession();
      location.assign('/');
    }
  });
});

async function start(): Promise<void> {
  const stored = loadSession();
  if (!stored) {
    signedOut('You are not signed in.');
    return;
  }
  session = stored;
  signOutButton.hidden = false;
  accountView.hidden = false;
  addName.value = defaultPasskeyName();
  say(listStatus, 'Loading your passkeys…');
  try {
    const [got] = await Promise.all([
      authed(() => users.getUserByID({ userId: session.userId }, bearer(session.accessToken))),
      refresh(true).then(() => say(listStatus, list.childElementCount ? '' : 'You have no passkeys yet.')),
    ]);
    showUser(got.user);
    await createSessionsSection({ session: () => session, authed, failure }).refresh();
  } catch (err) {
    say(listStatus, '');
    say(pageError, failure(err, {}, 'Your account could not be loaded. Reload the page to try again.'));
  }
}

void start();
