import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { CredentialFilter as CredentialFilterMessage, KeySchema, PersonalAccessTokenSchema } from '../../../gen/passkeyd/user/v2/machine_pb.js';
import type { UserService } from '../../../gen/passkeyd/user/v2/user_service_pb.js';
import { isInstanceAdmin, type Principal } from '../../auth/callers.js';
import * as machines from '../../domain/machine-users.js';
import { pageFrom } from '../../domain/types.js';
import { addHumanUser } from '../../domain/users.js';
import { invalid } from '../../errors.js';
import type { CredentialFilter, MachineKeyRow, PersonalAccessTokenRow } from '../../store/credentials.js';
import { detailsOf, listDetailsOf } from '../mappers.js';
import { callerOf, type ServiceDeps } from './deps.js';

function keyOf(k: MachineKeyRow): MessageInitShape<typeof KeySchema> {
  return {
    id: k.id,
    userId: k.user_id,
    organizationId: k.org_id,
    creationDate: timestampFromDate(k.created_at),
    expirationDate: timestampFromDate(k.expires_at),
    algorithm: k.algorithm,
  };
}

function patOf(t: PersonalAccessTokenRow): MessageInitShape<typeof PersonalAccessTokenSchema> {
  return { id: t.id, userId: t.user_id, organizationId: t.org_id, creationDate: timestampFromDate(t.created_at), expirationDate: timestampFromDate(t.expires_at) };
}

/** The list filters, plus the caller's organization for anyone but an instance admin. */
function credentialFilters(filters: CredentialFilterMessage[], caller: Principal): CredentialFilter[] {
  const out: CredentialFilter[] = filters.map((f) =>
    f.filter.case === 'userIdFilter' ? { userId: f.filter.value.id } : f.filter.case === 'organizationIdFilter' ? { orgId: f.filter.value.id } : {},
  );
  if (!isInstanceAdmin(caller)) out.push({ orgId: caller.orgId });
  return out;
}

function expiry(t: Timestamp | undefined): Date {
  if (!t) throw invalid('expiration_date: is required');
  return timestampDate(t);
}

/**
 * UserService handlers for machine users (ZITADEL's CreateUser, keys, PATs and secrets) and for
 * deactivating users; permissions are declared beside each RPC and enforced before these run.
 */
export function createMachineService({
  db,
}: ServiceDeps): Pick<
  ServiceImpl<typeof UserService>,
  | 'createUser'
  | 'deactivateUser'
  | 'reactivateUser'
  | 'addKey'
  | 'removeKey'
  | 'listKeys'
  | 'addPersonalAccessToken'
  | 'removePersonalAccessToken'
  | 'listPersonalAccessTokens'
  | 'addSecret'
  | 'removeSecret'
> {
  return {
    async createUser(req, ctx) {
      const caller = callerOf(ctx);
      const t = req.userType;
      let created: { id: string; details: Parameters<typeof detailsOf>[0] };
      if (t.case === 'machine') {
        created = await machines.addMachineUser(
          db,
          { orgId: req.organizationId, userId: req.userId, username: req.username, name: t.value.name, description: t.value.description },
          caller.subject,
        );
      } else if (t.case === 'human') {
        const p = t.value.profile!;
        created = await addHumanUser(
          db,
          {
            userId: req.userId,
            username: req.username,
            orgId: req.organizationId,
            profile: { givenName: p.givenName, familyName: p.familyName, nickName: p.nickName, displayName: p.displayName, preferredLanguage: p.preferredLanguage },
            email: t.value.email!.email,
            emailVerified: t.value.email!.isVerified,
          },
          caller.subject,
        );
      } else {
        throw invalid('user_type: human or machine is required');
      }
      return { id: created.id, creationDate: timestampFromDate(created.details.creationDate), details: detailsOf(created.details) };
    },

    async deactivateUser(req, ctx) {
      return { details: detailsOf(await machines.setUserActive(db, req.userId, false, callerOf(ctx).subject)) };
    },

    async reactivateUser(req, ctx) {
      return { details: detailsOf(await machines.setUserActive(db, req.userId, true, callerOf(ctx).subject)) };
    },

    async addKey(req, ctx) {
      const added = await machines.addKey(db, req.userId, { expiresAt: expiry(req.expirationDate), publicKeyPem: req.publicKey }, callerOf(ctx).subject);
      return {
        creationDate: timestampFromDate(added.details.changeDate),
        keyId: added.keyId,
        keyContent: added.keyContent ?? new Uint8Array(0),
        details: detailsOf(added.details),
      };
    },

    async removeKey(req, ctx) {
      const details = await machines.removeKey(db, req.userId, req.keyId, callerOf(ctx).subject);
      return { deletionDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },

    async listKeys(req, ctx) {
      const r = await machines.listKeys(db, credentialFilters(req.filters, callerOf(ctx)), pageFrom(req.query));
      return { details: listDetailsOf(r), result: r.items.map(keyOf) };
    },

    async addPersonalAccessToken(req, ctx) {
      const added = await machines.addPersonalAccessToken(db, req.userId, { expiresAt: expiry(req.expirationDate) }, callerOf(ctx).subject);
      return { creationDate: timestampFromDate(added.details.changeDate), tokenId: added.tokenId, token: added.token, details: detailsOf(added.details) };
    },

    async removePersonalAccessToken(req, ctx) {
      const details = await machines.removePersonalAccessToken(db, req.userId, req.tokenId, callerOf(ctx).subject);
      return { deletionDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },

    async listPersonalAccessTokens(req, ctx) {
      const r = await machines.listPersonalAccessTokens(db, credentialFilters(req.filters, callerOf(ctx)), pageFrom(req.query));
      return { details: listDetailsOf(r), result: r.items.map(patOf) };
    },

    async addSecret(req, ctx) {
      const added = await machines.addSecret(db, req.userId, callerOf(ctx).subject);
      return { creationDate: timestampFromDate(added.details.changeDate), clientSecret: added.secret, details: detailsOf(added.details) };
    },

    async removeSecret(req, ctx) {
      const details = await machines.removeSecret(db, req.userId, callerOf(ctx).subject);
      return { deletionDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },
  };
}
