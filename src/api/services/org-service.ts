import type { ServiceImpl } from '@connectrpc/connect';
import type { OrganizationService } from '../../../gen/passkeyd/org/v2/org_service_pb.js';
import { OrganizationState } from '../../../gen/passkeyd/org/v2/org_pb.js';
import { addOrganization, listOrganizations } from '../../domain/orgs.js';
import { pageFrom } from '../../domain/types.js';
import { detailsOf, listDetailsOf, rowDetails } from '../mappers.js';
import { callerOf, type ServiceDeps } from './deps.js';

/** OrganizationService handlers (instance admin only, as declared in the proto). */
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
  };
}
