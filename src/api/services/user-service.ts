import type { ServiceImpl } from '@connectrpc/connect';
import { TextQueryMethod } from '../../../gen/passkeyd/object/v2/object_pb.js';
import { Type, UserFieldName, type SearchQuery } from '../../../gen/passkeyd/user/v2/user_pb.js';
import type { UserService } from '../../../gen/passkeyd/user/v2/user_service_pb.js';
import { pageFrom } from '../../domain/types.js';
import { addHumanUser, deleteUser, getUser, listUsers, updateHumanUser, type TextMethod, type UserFilter, type UserSort } from '../../domain/users.js';
import { detailsOf, listDetailsOf, rowDetails, userOf } from '../mappers.js';
import { isInstanceAdmin } from '../../auth/callers.js';
import { callerOf, type ServiceDeps } from './deps.js';

const TEXT_METHODS: Record<TextQueryMethod, TextMethod> = {
  [TextQueryMethod.EQUALS]: 'equals',
  [TextQueryMethod.EQUALS_IGNORE_CASE]: 'equals_ic',
  [TextQueryMethod.STARTS_WITH]: 'starts',
  [TextQueryMethod.STARTS_WITH_IGNORE_CASE]: 'starts_ic',
  [TextQueryMethod.CONTAINS]: 'contains',
  [TextQueryMethod.CONTAINS_IGNORE_CASE]: 'contains_ic',
};

function filterOf(q: SearchQuery): UserFilter {
  switch (q.query.case) {
    case 'userNameQuery':
      return { username: { value: q.query.value.userName, method: TEXT_METHODS[q.query.value.method] } };
    case 'emailQuery':
      return { email: { value: q.query.value.emailAddress, method: TEXT_METHODS[q.query.value.method] } };
    case 'organizationIdQuery':
      return { orgId: q.query.value.organizationId };
    case 'inUserIdsQuery':
      return { userIds: q.query.value.userIds };
    case 'typeQuery':
      return q.query.value.type === Type.MACHINE ? { type: 'machine' } : q.query.value.type === Type.HUMAN ? { type: 'human' } : {};
    default:
      return {};
  }
}

const SORTS: Record<UserFieldName, UserSort> = {
  [UserFieldName.UNSPECIFIED]: 'creation_date',
  [UserFieldName.CREATION_DATE]: 'creation_date',
  [UserFieldName.USER_NAME]: 'username',
  [UserFieldName.EMAIL]: 'email',
};

/** UserService handlers for users; permissions are enforced before these run. */
export function createUserService({ db }: ServiceDeps): Pick<ServiceImpl<typeof UserService>, 'addHumanUser' | 'getUserByID' | 'updateHumanUser' | 'listUsers' | 'deleteUser'> {
  return {
    async addHumanUser(req, ctx) {
      const caller = callerOf(ctx);
      const orgId = req.organization?.org.case === 'orgId' ? req.organization.org.value : caller.orgId;
      const { id, details } = await addHumanUser(
        db,
        {
          userId: req.userId,
          username: req.username,
          orgId,
          profile: {
            givenName: req.profile!.givenName,
            familyName: req.profile!.familyName,
            nickName: req.profile!.nickName,
            displayName: req.profile!.displayName,
            preferredLanguage: req.profile!.preferredLanguage,
          },
          email: req.email!.email,
          emailVerified: req.email!.isVerified,
        },
        caller.subject,
      );
      return { userId: id, details: detailsOf(details) };
    },

    async getUserByID(req) {
      const user = await getUser(db, req.userId);
      return { user: userOf(user), details: rowDetails(user, user.org_id) };
    },

    async updateHumanUser(req, ctx) {
      const details = await updateHumanUser(
        db,
        req.userId,
        {
          username: req.username,
          profile: req.profile && {
            givenName: req.profile.givenName,
            familyName: req.profile.familyName,
            nickName: req.profile.nickName,
            displayName: req.profile.displayName,
            preferredLanguage: req.profile.preferredLanguage,
          },
          email: req.email && { email: req.email.email, verified: req.email.isVerified },
        },
        callerOf(ctx).subject,
      );
      return { details: detailsOf(details) };
    },

    async listUsers(req, ctx) {
      const caller = callerOf(ctx);
      const filters = req.queries.map(filterOf);
      // Org admins see their own organization only (a filter for another one finds nothing).
      if (!isInstanceAdmin(caller)) filters.push({ orgId: caller.orgId });
      const r = await listUsers(db, filters, pageFrom(req.query), SORTS[req.sortingColumn]);
      return { details: listDetailsOf(r), sortingColumn: req.sortingColumn, result: r.items.map(userOf) };
    },

    async deleteUser(req, ctx) {
      const details = await deleteUser(db, req.userId, callerOf(ctx).subject);
      return { details: detailsOf(details) };
    },
  };
}
