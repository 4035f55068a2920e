import type { JsonObject } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { SignUpService } from '../../../gen/passkeyd/user/v2/signup_service_pb.js';
import { createSignUp } from '../../domain/sign-up.js';
import { expectedOrigins, resolveRpId } from '../../webauthn/relying-party.js';
import { detailsOf } from '../mappers.js';
import type { ServiceDeps } from './deps.js';

/**
 * SignUpService: self-service sign-up with a passkey. Public (rate limited); the domain refuses it
 * with PERMISSION_DENIED unless the organization's login policy allows self-registration.
 */
export function createSignUpService({ db, config, tokens, metadata }: ServiceDeps): ServiceImpl<typeof SignUpService> {
  const signUp = createSignUp({ db, config, tokens, metadata });
  return {
    async getSignUpSettings(req) {
      return { allowSelfRegistration: await signUp.isOpen(req.organizationId) };
    },
    async startSignUp(req) {
      const rpId = resolveRpId(config, req.domain);
      const begun = await signUp.start({ username: req.username, email: req.email, orgId: req.organizationId, rpId });
      return { signupId: begun.signUpId, publicKeyCredentialCreationOptions: { publicKey: begun.options as unknown as JsonObject } };
    },
    async finishSignUp(req) {
      const done = await signUp.finish({ signUpId: req.signupId, credential: req.publicKeyCredential, name: req.passkeyName || 'Passkey', origins: expectedOrigins(config) });
      return {
        details: detailsOf(done.details),
        userId: done.userId,
        passkeyId: done.passkeyId,
        sessionId: done.sessionId,
        sessionToken: done.sessionToken,
        accessToken: done.accessToken,
        accessTokenExpirationDate: timestampFromDate(done.accessTokenExpiresAt),
      };
    },
  };
}
