import type { Interceptor } from '@connectrpc/connect';
import { Access } from '../../../gen/passkeyd/options/v1/options_pb.js';
import { SignUpService } from '../../../gen/passkeyd/user/v2/signup_service_pb.js';
import { UserService } from '../../../gen/passkeyd/user/v2/user_service_pb.js';
import type { RateLimits } from '../../store/rate-limits.js';
import { clientAddressKey } from '../context.js';
import { hasBearer, ruleOf } from './auth.js';

const TOKENLESS = new Set<Access>([Access.PUBLIC, Access.REGISTRATION_CODE, Access.SESSION_TOKEN]);
// StartSignUp answers whether a username is taken: the same budget as availability.
const AVAILABILITY = new Set([UserService.method.checkPasskeyAvailability, SignUpService.method.startSignUp]);

/**
 * Limits every call that may be made without a token, when it is made without one: the public RPCs
 * (CreateSession, SetSession) and token-less registration-code and session-token calls, keyed by
 * client address. Calls with a token are not counted here; the auth interceptor after this one
 * refuses a token that does not verify. CheckPasskeyAvailability is the exception: it answers
 * whether a name has a passkey, so it is counted (against its own, lower budget) with or without a
 * token; any account holder could otherwise probe names at full speed. StartSignUp, which tells a
 * taken username, counts against the same budget.
 */
export function rateLimitInterceptor(limits: RateLimits): Interceptor {
  return (next) => async (req) => {
    const address = req.contextValues.get(clientAddressKey);
    if (AVAILABILITY.has(req.method as never)) {
      await limits.consume('availability', address);
      return next(req);
    }
    // Only a well-formed Bearer token exempts the call (the auth interceptor then verifies it); an
    // empty or malformed header is a token-less call and counts.
    if (hasBearer(req.header)) return next(req);
    const allow = ruleOf(req.method)?.allow ?? [];
    if (!allow.some((a) => TOKENLESS.has(a))) return next(req);
    await limits.consume('general', address);
    return next(req);
  };
}
