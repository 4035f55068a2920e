import type { Kysely } from 'kysely';
import type { Config } from '../config/config.js';
import { alreadyExists, denied, invalid, notFound } from '../errors.js';
import { appendEvents, lockAggregate } from '../store/events.js';
import { deleteLoginPolicy, findLoginPolicy, findLoginPolicyOfLogin, orgExists, upsertLoginPolicy, type LoginPolicyFields, type LoginPolicyRow } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { event } from './events.js';
import type { ChangeDetails } from './types.js';

export type { LoginPolicyFields } from '../store/orgs.js';

/** The organization id under which the instance default is stored and recorded. */
const INSTANCE = '';

/** Passkeys a user may have when no policy says otherwise (Hanko's default). */
export const DEFAULT_MAX_PASSKEYS = 10;

/** The policy fields before anyone set them. */
const BUILT_IN: LoginPolicyFields = {
  sso_required: false,
  max_passkeys_per_user: DEFAULT_MAX_PASSKEYS,
  allowed_aaguids: [],
  denied_aaguids: [],
  attestation: '',
  require_trusted_attestation: false,
  user_verification: '',
  allow_self_registration: false,
};

/** A policy as it applies: the server's defaults filled in where the policy leaves them to it. */
export interface EffectivePolicy extends Omit<LoginPolicyFields, 'attestation' | 'user_verification'> {
  attestation: Config['attestation'];
  userVerification: Config['userVerification'];
  /** The policy itself says REQUIRED (not the server default): a login request cannot ask for less. */
  requiresUserVerification: boolean;
}

/** A policy as it applies, from its stored fields (none: the built-in policy) and the server's defaults. */
export function effective(fields: LoginPolicyFields | null | undefined, config: Config): EffectivePolicy {
  const f = fields ?? BUILT_IN;
  const { attestation, user_verification, ...rest } = f;
  const asked = attestation || config.attestation;
  // Trusted attestation needs an attestation to check: "none" would make every registration fail.
  return {
    ...rest,
    attestation: rest.require_trusted_attestation && asked === 'none' ? 'direct' : asked,
    userVerification: user_verification || config.userVerification,
    requiresUserVerification: user_verification === 'required',
  };
}

function fieldsOf(row: LoginPolicyRow | undefined): LoginPolicyFields {
  if (!row) return BUILT_IN;
  const { org_id: _o, sequence: _s, created_at: _c, updated_at: _u, ...fields } = row;
  return fields;
}

const AAGUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Checks and normalizes a policy from the API: AAGUIDs lower-case with dashes, 0 passkeys meaning the default. */
function normalizePolicy(input: LoginPolicyFields): LoginPolicyFields {
  const aaguids = (list: string[], field: string) =>
    list.map((a, i) => {
      const v = a.trim().toLowerCase();
      if (!AAGUID.test(v)) throw invalid(`policy.${field}[${i}]: must be an AAGUID (8-4-4-4-12 hexadecimal digits)`);
      return v;
    });
  return {
    ...input,
    max_passkeys_per_user: input.max_passkeys_per_user || DEFAULT_MAX_PASSKEYS,
    allowed_aaguids: [...new Set(aaguids(input.allowed_aaguids, 'allowed_aaguids'))],
    denied_aaguids: [...new Set(aaguids(input.denied_aaguids, 'denied_aaguids'))],
  };
}

/** A stored policy, what it is made of and whether the organization inherits it. */
export interface PolicyView {
  fields: LoginPolicyFields;
  /** The organization has no policy of its own. */
  isDefault: boolean;
  details: ChangeDetails | undefined;
}

function viewOf(row: LoginPolicyRow | undefined, orgId: string): PolicyView {
  const details = row ? { sequence: Number(row.sequence), changeDate: new Date(row.updated_at), creationDate: new Date(row.created_at), resourceOwner: row.org_id } : undefined;
  return { fields: fieldsOf(row), isDefault: row?.org_id !== orgId, details };
}

/** An organization's policy (its own or the default it inherits); '' reads the instance default. */
export async function readLoginPolicy(db: Kysely<Database>, orgId: string): Promise<PolicyView> {
  if (orgId !== INSTANCE && !(await orgExists(db, orgId))) throw notFound(`organization ${orgId}`);
  return viewOf(await findLoginPolicy(db, orgId), orgId);
}

/** Gives an organization (or with '' the instance) this policy: `org.policy.login.set`. */
export async function writeLoginPolicy(db: Kysely<Database>, orgId: string, input: LoginPolicyFields, creator: string): Promise<ChangeDetails> {
  const fields = normalizePolicy(input);
  return inTransaction(db, async (trx) => {
    if (orgId !== INSTANCE && (await lockAggregate(trx, 'org', orgId)) === undefined) throw notFound(`organization ${orgId}`);
    const details = await appendEvents(trx, { type: 'org', id: orgId, owner: orgId }, [event('org.policy.login.set', { ...fields })], creator);
    await upsertLoginPolicy(trx, orgId, fields, details);
    return details;
  });
}

/** Drops an organization's own policy (`org.policy.login.reset`); it inherits the instance default again. */
export async function resetLoginPolicy(db: Kysely<Database>, orgId: string, creator: string): Promise<ChangeDetails> {
  return inTransaction(db, async (trx) => {
    if ((await lockAggregate(trx, 'org', orgId)) === undefined) throw notFound(`organization ${orgId}`);
    if (!(await deleteLoginPolicy(trx, orgId))) throw notFound(`a login policy of organization ${orgId}`);
    return appendEvents(trx, { type: 'org', id: orgId, owner: orgId }, [event('org.policy.login.reset', {})], creator);
  });
}

/** The policy that applies to an organization's users. */
export async function policyOfOrg(db: Kysely<Database>, config: Config, orgId: string): Promise<EffectivePolicy> {
  return effective(fieldsOf(await findLoginPolicy(db, orgId)), config);
}

/**
 * The policy that applies to a login name or user id: the user's organization's, or for an unknown
 * name the policy of `fallbackOrgId` (where an unknown name would be), so the answer looks the same.
 */
export async function policyOfLogin(
  db: Kysely<Database>,
  config: Config,
  lookup: { loginName: string } | { userId: string },
  fallbackOrgId: () => Promise<string>,
): Promise<EffectivePolicy> {
  const found = await findLoginPolicyOfLogin(db, lookup);
  if (found) return effective(found.policy, config);
  return policyOfOrg(db, config, await fallbackOrgId());
}

/** Message of every refusal an SSO organization's passkey ceremonies get. */
const SSO_REQUIRED = "this user's organization signs in through its SSO provider (login policy sso_required): passkeys are not used";

/** The refusal every passkey ceremony of an organization that signs in through SSO gets. */
export function ssoRefusal(): Error {
  return denied(SSO_REQUIRED);
}

/** Refuses a passkey ceremony in an organization that signs in through SSO. */
export function refuseWhenSso(policy: Pick<EffectivePolicy, 'sso_required'>): void {
  if (policy.sso_required) throw ssoRefusal();
}

/** Refuses one passkey more than the policy allows. */
export function refuseBeyondLimit(policy: EffectivePolicy, ready: number): void {
  if (ready >= policy.max_passkeys_per_user) throw beyondLimit(policy, ready);
}

/** The refusal of one passkey more than the policy allows, for a user with `ready` of them. */
export function beyondLimit(policy: EffectivePolicy, ready: number): Error {
  return alreadyExists(
    `this user already has ${ready} passkey${ready === 1 ? '' : 's'}, the most the login policy allows (max_passkeys_per_user ${policy.max_passkeys_per_user}); remove one to register another`,
  );
}

/** Refuses an authenticator the policy's AAGUID lists exclude. */
export function refuseAuthenticator(policy: EffectivePolicy, aaguid: string): void {
  const a = aaguid.toLowerCase();
  if (policy.denied_aaguids.includes(a) || (policy.allowed_aaguids.length > 0 && !policy.allowed_aaguids.includes(a))) {
    throw denied(`this authenticator (AAGUID ${a}) is not allowed by the organization's login policy`);
  }
}
