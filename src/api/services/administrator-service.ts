import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { InternalPermissionService, ResourceType } from '../../../gen/passkeyd/internal_permission/v2/internal_permission_service_pb.js';
import { isInstanceAdmin } from '../../auth/callers.js';
import { deleteGrant, grantOrg, listGrants, setGrant, type GrantFilter } from '../../domain/administrators.js';
import { pageFrom } from '../../domain/types.js';
import { denied, invalid } from '../../errors.js';
import { detailsOf, listDetailsOf } from '../mappers.js';
import { callerOf, type ServiceDeps } from './deps.js';

/** The organization a resource names, or undefined for the instance. */
function orgOfResource(r: ResourceType | undefined): string | undefined {
  if (r?.resource.case === 'organizationId') return r.resource.value;
  if (r?.resource.case === 'instance' && r.resource.value) return undefined;
  throw invalid('resource: instance (true) or organization_id is required');
}

/**
 * InternalPermissionService: roles granted to users and machine users. Org admins manage their own
 * organization's grants (the interceptor checks the organization named); grants on the instance are
 * for instance admins only.
 */
export function createAdministratorService({ db }: ServiceDeps): ServiceImpl<typeof InternalPermissionService> {
  return {
    async createAdministrator(req, ctx) {
      const caller = callerOf(ctx);
      const orgId = orgOfResource(req.resource);
      if (orgId === undefined && !isInstanceAdmin(caller)) throw denied('only instance admins grant roles on the instance');
      const details = await setGrant(db, { userId: req.userId, orgId, roles: req.roles }, 'create', caller.subject);
      return { creationDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },

    async updateAdministrator(req, ctx) {
      const caller = callerOf(ctx);
      const orgId = orgOfResource(req.resource);
      if (orgId === undefined && !isInstanceAdmin(caller)) throw denied('only instance admins grant roles on the instance');
      const details = await setGrant(db, { userId: req.userId, orgId, roles: req.roles }, 'update', caller.subject);
      return { changeDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },

    async deleteAdministrator(req, ctx) {
      const caller = callerOf(ctx);
      const orgId = orgOfResource(req.resource);
      if (orgId === undefined && !isInstanceAdmin(caller)) throw denied('only instance admins revoke roles on the instance');
      const details = await deleteGrant(db, req.userId, orgId, caller.subject);
      return { deletionDate: timestampFromDate(details.changeDate), details: detailsOf(details) };
    },

    async listAdministrators(req, ctx) {
      const caller = callerOf(ctx);
      const filters: GrantFilter[] = req.filters.map((f) =>
        f.filter.case === 'userId' ? { userId: f.filter.value.id } : f.filter.case === 'resource' ? { orgId: orgOfResource(f.filter.value.resource) ?? '' } : {},
      );
      // Org admins see their organization's grants only.
      if (!isInstanceAdmin(caller)) filters.push({ orgIn: [caller.orgId] });
      const r = await listGrants(db, filters, pageFrom(req.query));
      return {
        details: listDetailsOf(r),
        administrators: r.items.map((a) => {
          const org = grantOrg(a.org_id);
          return {
            userId: a.user_id,
            resource: { resource: org === undefined ? { case: 'instance' as const, value: true } : { case: 'organizationId' as const, value: org } },
            roles: a.roles,
            creationDate: timestampFromDate(a.created_at),
            changeDate: timestampFromDate(a.updated_at),
            userOrganizationId: a.user_org_id,
          };
        }),
      };
    },
  };
}
