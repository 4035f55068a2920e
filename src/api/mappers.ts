import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { DetailsSchema, ListDetailsSchema } from '../../gen/passkeyd/object/v2/object_pb.js';
import { UserState, type UserSchema } from '../../gen/passkeyd/user/v2/user_pb.js';
import type { ChangeDetails, ListResult } from '../domain/types.js';
import type { User } from '../domain/users.js';

/** `Details` from an append (or a current-state row). */
export function detailsOf(d: ChangeDetails): MessageInitShape<typeof DetailsSchema> {
  return {
    sequence: BigInt(d.sequence),
    changeDate: timestampFromDate(d.changeDate),
    resourceOwner: d.resourceOwner,
    creationDate: timestampFromDate(d.creationDate),
  };
}

/** `Details` from a current-state row that carries sequence, dates and owner. */
export function rowDetails(row: { sequence: number; updated_at: Date; created_at: Date }, owner: string): MessageInitShape<typeof DetailsSchema> {
  return detailsOf({ sequence: Number(row.sequence), changeDate: row.updated_at, creationDate: row.created_at, resourceOwner: owner });
}

export function listDetailsOf(r: ListResult<unknown>): MessageInitShape<typeof ListDetailsSchema> {
  return { totalResult: BigInt(r.total), processedSequence: BigInt(r.processedPosition), timestamp: timestampFromDate(r.timestamp) };
}

export function userOf(u: User): MessageInitShape<typeof UserSchema> {
  return {
    userId: u.id,
    state: u.state === 'active' ? UserState.ACTIVE : UserState.INACTIVE,
    username: u.username,
    loginNames: [u.username],
    preferredLoginName: u.username,
    type:
      u.type === 'machine'
        ? { case: 'machine', value: { name: u.machine_name, description: u.machine_description, hasSecret: u.secret_id !== null } }
        : {
            case: 'human',
            value: {
              profile: {
                givenName: u.given_name,
                familyName: u.family_name,
                nickName: u.nick_name,
                displayName: u.display_name,
                preferredLanguage: u.preferred_language,
              },
              email: { email: u.email, isVerified: u.email_verified },
            },
          },
    details: rowDetails(u, u.org_id),
  };
}
