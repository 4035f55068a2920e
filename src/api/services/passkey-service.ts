import type { JsonObject, MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { AuthFactorState, PasskeyAuthenticator, PasskeyDeviceType, type PasskeySchema } from '../../../gen/passkeyd/user/v2/passkey_pb.js';
import type { UserService } from '../../../gen/passkeyd/user/v2/user_service_pb.js';
import { precondition, unauthenticated } from '../../errors.js';
import { checkLinkTemplate, defaultLinkTemplate, webhookDelivery } from '../../domain/link-delivery.js';
import { beginPasskeyRegistration, completePasskeyRegistration, listPasskeys, removePasskey, renamePasskey, type PasskeyRow } from '../../domain/passkeys.js';
import { begunChallenges } from '../../domain/registration-finish.js';
import { checkRegistrationCode, createRegistrationCode } from '../../domain/registration-codes.js';
import { pageFrom } from '../../domain/types.js';
import type { AuthenticatorAttachment } from '../../webauthn/creation-options.js';
import { expectedOrigins, resolveRpId } from '../../webauthn/relying-party.js';
import { principalKey } from '../context.js';
import { detailsOf, listDetailsOf } from '../mappers.js';
import { callerOf, type ServiceDeps } from './deps.js';

const ATTACHMENTS: Record<PasskeyAuthenticator, AuthenticatorAttachment> = {
  [PasskeyAuthenticator.UNSPECIFIED]: undefined,
  [PasskeyAuthenticator.PLATFORM]: 'platform',
  [PasskeyAuthenticator.CROSS_PLATFORM]: 'cross-platform',
};

/** The API shape of a stored passkey. */
function passkeyOf(p: PasskeyRow): MessageInitShape<typeof PasskeySchema> {
  return {
    id: p.id,
    state: p.state === 'ready' ? AuthFactorState.READY : AuthFactorState.NOT_READY,
    name: p.name,
    aaguid: p.aaguid,
    authenticatorName: p.authenticator_name,
    backupEligible: p.backup_eligible,
    backedUp: p.backed_up,
    deviceType: p.backup_eligible ? PasskeyDeviceType.MULTI_DEVICE : PasskeyDeviceType.SINGLE_DEVICE,
    transports: p.transports,
    rpId: p.rp_id,
    creationDate: timestampFromDate(new Date(p.created_at)),
    lastUsedDate: p.last_used_at ? timestampFromDate(new Date(p.last_used_at)) : undefined,
    attestationFormat: p.attestation_format,
    credentialId: p.credential_id ? Buffer.from(p.credential_id).toString('base64url') : '',
  };
}

/**
 * UserService handlers for the passkey registration lifecycle. The permission interceptor has already
 * checked SELF / ORG_ADMIN for callers with a token; token-less callers reach RegisterPasskey only with
 * a code (checked here) and VerifyPasskeyRegistration only for a code-begun registration (checked in
 * the domain).
 */
export function createPasskeyService({
  config,
  db,
  metadata,
}: ServiceDeps): Pick<
  ServiceImpl<typeof UserService>,
  'registerPasskey' | 'verifyPasskeyRegistration' | 'createPasskeyRegistrationLink' | 'listPasskeys' | 'renamePasskey' | 'removePasskey'
> {
  // The registrations this process begins, so that their VerifyPasskeyRegistration needs no read.
  const begunHere = begunChallenges();
  return {
    async registerPasskey(req, ctx) {
      const principal = ctx.values.get(principalKey);
      const rpId = resolveRpId(config, req.domain);
      if (!principal && !req.code) throw unauthenticated('this call needs a Bearer access token or a registration code');
      // A code is checked whenever one is sent, also next to a token, and binds the registration to it.
      const code = req.code ? await checkRegistrationCode(db, req.userId, { id: req.code.id, code: req.code.code }) : undefined;
      const begun = await beginPasskeyRegistration(
        db,
        {
          userId: req.userId,
          rpId,
          rpName: config.rpName,
          config,
          attachment: ATTACHMENTS[req.authenticator],
          challengeTtlSeconds: config.challengeTtlSeconds,
          registrationCodeId: code?.id,
          begun: begunHere,
        },
        principal?.subject ?? `registration_code:${code!.id}`,
      );
      return {
        details: detailsOf(begun.details),
        passkeyId: begun.passkeyId,
        publicKeyCredentialCreationOptions: { publicKey: begun.options as unknown as JsonObject },
      };
    },

    async verifyPasskeyRegistration(req, ctx) {
      const principal = ctx.values.get(principalKey);
      const details = await completePasskeyRegistration(db, {
        userId: req.userId,
        passkeyId: req.passkeyId,
        credential: req.publicKeyCredential,
        name: req.passkeyName,
        origins: expectedOrigins(config),
        config,
        metadata,
        anonymous: !principal,
        creator: principal?.subject,
        begun: begunHere,
      });
      return { details: detailsOf(details) };
    },

    async createPasskeyRegistrationLink(req, ctx) {
      const caller = callerOf(ctx);
      if (req.medium.case === 'returnCode') {
        const created = await createRegistrationCode(db, { userId: req.userId, ttlSeconds: config.registrationCodeTtlSeconds }, caller.subject);
        return { details: detailsOf(created.details), code: { id: created.id, code: created.code } };
      }
      // send_link, also when no medium is chosen (as ZITADEL does).
      const template = (req.medium.case === 'sendLink' ? req.medium.value.urlTemplate : undefined) ?? defaultLinkTemplate(config.issuer);
      checkLinkTemplate(template);
      if (!config.linkWebhookUrl) throw precondition('no link delivery configured: set PASSKEYD_LINK_WEBHOOK_URL (or use return_code)');
      const created = await createRegistrationCode(
        db,
        { userId: req.userId, ttlSeconds: config.registrationCodeTtlSeconds, delivery: webhookDelivery(config.linkWebhookUrl, template) },
        caller.subject,
      );
      return { details: detailsOf(created.details) };
    },

    async listPasskeys(req) {
      const r = await listPasskeys(db, config, req.userId, pageFrom(req.query));
      return { details: listDetailsOf(r), result: r.items.map(passkeyOf), ssoRequired: r.ssoRequired };
    },

    async renamePasskey(req, ctx) {
      const details = await renamePasskey(db, req.userId, req.passkeyId, req.name, callerOf(ctx).subject);
      return { details: detailsOf(details) };
    },

    async removePasskey(req, ctx) {
      const caller = callerOf(ctx);
      const admin = { instanceAdmin: caller.roles.has('instance_admin'), orgAdminOf: caller.roles.has('org_admin') ? caller.orgId : undefined };
      const details = await removePasskey(db, req.userId, req.passkeyId, { force: req.force, self: caller.subject === req.userId, admin }, caller.subject);
      return { details: detailsOf(details) };
    },
  };
}
