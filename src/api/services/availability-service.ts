import type { ServiceImpl } from '@connectrpc/connect';
import type { UserService } from '../../../gen/passkeyd/user/v2/user_service_pb.js';
import { passkeyAvailability } from '../../domain/availability.js';
import type { ServiceDeps } from './deps.js';

/**
 * UserService.CheckPasskeyAvailability: whether a login name can sign in with a passkey. Public and
 * rate limited (its own, lower limit); the same response shape and minimum latency for every name.
 */
export function createAvailabilityService({ db, config }: ServiceDeps): Pick<ServiceImpl<typeof UserService>, 'checkPasskeyAvailability'> {
  return {
    async checkPasskeyAvailability(req) {
      return passkeyAvailability(db, config, req.loginName);
    },
  };
}
