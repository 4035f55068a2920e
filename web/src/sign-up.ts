/**
 * "Create an account" on the sign-in page, offered only when passkeyd says self-service sign-up is open
 * (the default organization's login policy): StartSignUp → the browser creates a passkey → FinishSignUp,
 * which creates the account with that passkey and signs it in → the account page.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { startRegistration, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';
import { asStruct, publicKeyOf, signUps } from './api.js';
import { busy, byId, defaultPasskeyName, say } from './dom.js';
import { describeError } from './messages.js';
import { saveSession } from './session-store.js';

/** Shows the offer when sign-up is open, and runs the sign-up form; `status`/`error` are the page's lines. */
export function setUpSignUp(status: HTMLElement, error: HTMLElement): void {
  const offer = byId('sign-up-offer');
  const form = byId<HTMLFormElement>('sign-up');
  const name = byId<HTMLInputElement>('new-account-name');
  const email = byId<HTMLInputElement>('new-account-email');
  const button = byId<HTMLButtonElement>('sign-up-button');

  signUps.getSignUpSettings({}).then(
    (s) => {
      offer.hidden = !s.allowSelfRegistration;
    },
    () => {
      offer.hidden = true;
    },
  );

  byId('create-account').addEventListener('click', () => {
    offer.hidden = true;
    form.hidden = false;
    name.focus();
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    say(error, '');
    const username = name.value.trim();
    if (!username) {
      say(error, 'Choose an account name.');
      return;
    }
    void busy(button, async () => {
      try {
        say(status, 'Preparing your account…');
        const started = await signUps.startSignUp({ username, email: email.value.trim() || undefined, domain: location.hostname });
        const options = publicKeyOf<PublicKeyCredentialCreationOptionsJSON>(started.publicKeyCredentialCreationOptions, 'StartSignUp');
        say(status, 'Follow your browser’s prompt to create a passkey.');
        // Starting this ceremony aborts the sign-in page's pending autofill request.
        const credential = await startRegistration({ optionsJSON: options });
        say(status, 'Creating your account…');
        const done = await signUps.finishSignUp({ signupId: started.signupId, publicKeyCredential: asStruct(credential), passkeyName: defaultPasskeyName() });
        saveSession({
          sessionId: done.sessionId,
          sessionToken: done.sessionToken,
          accessToken: done.accessToken,
          accessTokenExpiresAt: done.accessTokenExpirationDate ? timestampMs(done.accessTokenExpirationDate) : 0,
          userId: done.userId,
          userHandle: options.user.id,
          rpId: options.rp.id ?? location.hostname,
        });
        location.assign('/account');
      } catch (err) {
        say(status, '');
        say(
          error,
          describeError(
            err,
            {
              [Code.AlreadyExists]: 'That account name is taken. Choose another.',
              [Code.PermissionDenied]: 'New accounts cannot be created here.',
              [Code.InvalidArgument]: 'Check the account name and email, then try again.',
              [Code.FailedPrecondition]: 'Creating the account took too long. Try again.',
            },
            'Creating the account did not work. Try again.',
          ),
        );
      }
    });
  });
}
