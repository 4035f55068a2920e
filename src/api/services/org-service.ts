import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import type { OrganizationService } from '../../../gen/passkeyd/org/v2/org_service_pb.js';
import { AttestationConveyance, OrganizationState, UserVerificationPolicy, type LoginPolicy, type LoginPolicySchema } from '../../../gen/passkeyd/org/v2/org_pb.js';
import { readLoginPolicy, resetLoginPolicy, writeLoginPolicy, type LoginPolicyFields } from '../../domain/login-policy.js';
import { addOrganization, listOrganizations } from '../../domain/orgs.js';
import { pageFrom } from '../../domain/types.js';
import { detailsOf, listDetailsOf, rowDetails } from '../mappers.js';
import { callerOf, type ServiceDeps } from './deps.js';

const ATTESTATION: Record<AttestationConveyance, LoginPolicyFields['attestation']> = {
  [AttestationConveyance.UNSPECIFIED]: '',
  [AttestationConveyance.NONE]: 'none',
  [AttestationConveyance.INDIRECT]: 'indirect',
  [AttestationConveyance.DIRECT]: 'direct',
  [AttestationConveyance.ENTERPRISE]: 'enterprise',
};

const USER_VERIFICATION: Record<UserVerificationPolicy, LoginPolicyFields['user_verification']> = {
  [UserVerificationPolicy.UNSPECIFIED]: '',
  [UserVerificationPolicy.REQUIRED]: 'required',
  [UserVerificationPolicy.PREFERRED]: 'preferred',
};

function reverse<K extends number, V>(table: Record<K, V>, value: V): K {
  const found = Object.entries(table).find(([, v]) => v === value);
  return Number(found?.[0] ?? 0) as K;
}

/** The API's policy as the domain takes it (the validation interceptor has checked the bounds). */
function fieldsOf(p: LoginPolicy | undefined): LoginPolicyFields {
  return {
    sso_required: p?.ssoRequired ?? false,
    max_passkeys_per_user: p?.maxPasskeysPerUser ?? 0,
    allowed_aaguids: p?.allowedAaguids ?? [],
    denied_aaguids: p?.deniedAaguids ?? [],
    attestation: ATTESTATION[p?.attestation ?? AttestationConveyance.UNSPECIFIED] ?? '',
    require_trusted_attestation: p?.requireTrustedAttestation ?? false,
    user_verification: USER_VERIFICATION[p?.userVerification ?? UserVerificationPolicy.UNSPECIFIED] ?? '',
    allow_self_registration: p?.allowSelfRegistration ?? false,
  };
}

function policyOf(f: LoginPolicyFields): MessageInitShape<typeof LoginPolicySchema> {
  return {
    ssoRequired: f.sso_required,
    maxPasskeysPerUser: f.max_passkeys_per_user,
    allowedAaguids: f.allowed_aaguids,
    deniedAaguids: f.denied_aaguids,
    attestation: reverse(ATTESTATION, f.attestation),
    requireTrustedAttestation: f.require_trusted_attestation,
    userVerification: reverse(USER_VERIFICATION, f.user_verification),
    allowSelfRegistration: f.allow_self_registration,
  };
}

/** OrganizationService handlers (permissions as declared in the proto). */
export function createOrgService({ db }: ServiceDeps): ServiceImpl<typeof OrganizationService> {
  return {
    async addOrganization(req, ctx) {
      const { id, details } = await addOrganization(db, { name: req.name, orgId: req.orgId }, callerOf(ctx).subject);
      return { organizationId: id, details: detailsOf(details) };
    },
    async listOrganizations(req) {
      const r = await listOrganizations(db, pageFrom(req.query));
      return {
        details: listDetailsOf(r),
        result: r.items.map((o) => ({
          id: o.id,
          name: o.name,
          isDefault: o.is_default,
          state: o.state === 'active' ? OrganizationState.ACTIVE : OrganizationState.INACTIVE,
          details: rowDetails(o, o.id),
        })),
      };
    },
    async getLoginPolicy(req) {
      const view = await readLoginPolicy(db, req.organizationId);
      return { policy: policyOf(view.fields), isDefault: view.isDefault, details: view.details && detailsOf(view.details) };
    },
    async setLoginPolicy(req, ctx) {
      return { details: detailsOf(await writeLoginPolicy(db, req.organizationId, fieldsOf(req.policy), callerOf(ctx).subject)) };
    },
    async resetLoginPolicy(req, ctx) {
      return { details: detailsOf(await resetLoginPolicy(db, req.organizationId, callerOf(ctx).subject)) };
    },
    async getDefaultLoginPolicy() {
      const view = await readLoginPolicy(db, '');
      return { policy: policyOf(view.fields), details: view.details && detailsOf(view.details) };
    },
    async setDefaultLoginPolicy(req, ctx) {
      return { details: detailsOf(await writeLoginPolicy(db, '', fieldsOf(req.policy), callerOf(ctx).subject)) };
    },
  };
}
