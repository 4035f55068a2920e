import { getOption, hasOption, type DescMethod } from '@bufbuild/protobuf';
import type { Interceptor } from '@connectrpc/connect';
import { Access, auth as authExt, type AuthRule } from '../../../gen/passkeyd/options/v1/options_pb.js';
import type { Callers, Principal } from '../../auth/callers.js';
import { denied, unauthenticated } from '../../errors.js';
import { principalKey } from '../context.js';
import { validateMessage } from '../validation.js';

/** Looks up which organization owns a user (undefined: no such user). */
export type UserOrgResolver = (userId: string) => Promise<string | undefined>;

const rules = new Map<DescMethod, AuthRule | undefined>();

/** The permission declared beside the proto method; an RPC without one is instance-admin only. */
export function ruleOf(method: DescMethod): AuthRule | undefined {
  if (!rules.has(method)) rules.set(method, hasOption(method, authExt) ? getOption(method, authExt) : undefined);
  return rules.get(method);
}

/** Reads a dotted field path ("organization.org_id") from a message, by proto or JSON name. */
function readPath(message: unknown, path: string): unknown {
  let v: any = message;
  for (const part of path.split('.')) {
    if (v == null) return undefined;
    const camel = part.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    let next = v[camel];
    if (next === undefined) {
      // A member of a oneof sits in the oneof's { case, value } object.
      for (const member of Object.values(v)) {
        if (member && typeof member === 'object' && (member as { case?: unknown }).case === camel) next = (member as { value: unknown }).value;
      }
    }
    v = next;
  }
  return v;
}

const BEARER = /^Bearer\s+(\S+)$/i;

/** True when the request carries a well-formed Bearer token (not yet verified). */
export function hasBearer(header: Headers): boolean {
  return BEARER.test(header.get('authorization') ?? '');
}

function bearer(header: Headers): string | undefined {
  const h = header.get('authorization');
  if (!h) return undefined;
  const m = BEARER.exec(h);
  if (!m) throw unauthenticated('authorization header must be "Bearer <token>"');
  return m[1];
}

/**
 * Authentication, validation and authorization for every RPC and every protocol, in that order:
 * a missing or bad token fails before the request is looked at; bounds are checked before any
 * database lookup; then the declared permission is enforced.
 */
export function authInterceptor(callers: Callers, userOrg: UserOrgResolver): Interceptor {
  return (next) => async (req) => {
    const rule = ruleOf(req.method);
    const allow = new Set(rule?.allow ?? []);
    const token = bearer(req.header);
    let principal: Principal | undefined;
    if (token) {
      principal = await callers.resolve(token);
      req.contextValues.set(principalKey, principal);
    }
    if (!req.stream) validateMessage(req.method.input, req.message);
    if (allow.has(Access.PUBLIC)) return next(req);
    if (!principal && !req.stream) {
      // Token-less access that the handler completes: it checks the code (or that the pending ceremony
      // was begun with one) or the session token against the target, and refuses otherwise.
      if (allow.has(Access.REGISTRATION_CODE) && (!rule?.codeField || readPath(req.message, rule.codeField) !== undefined)) return next(req);
      if (allow.has(Access.SESSION_TOKEN) && rule?.sessionTokenField && readPath(req.message, rule.sessionTokenField) !== undefined) return next(req);
    }
    if (!principal) throw unauthenticated('this call needs a Bearer access token');
    if (principal.roles.has('instance_admin')) return next(req);
    if (allow.has(Access.AUTHENTICATED) || allow.has(Access.SESSION_MANAGER)) return next(req);
    const message = req.stream ? undefined : req.message;
    const userId = rule?.userIdField ? readPath(message, rule.userIdField) : undefined;
    if (allow.has(Access.SELF) && typeof userId === 'string' && userId === principal.subject) return next(req);
    if (allow.has(Access.ORG_ADMIN) && principal.roles.has('org_admin')) {
      if (rule?.orgIdField) {
        const orgId = readPath(message, rule.orgIdField);
        if (typeof orgId === 'string' && orgId !== '' && orgId !== principal.orgId) throw denied('org admins act only within their own organization');
      }
      if (typeof userId === 'string' && userId !== '') {
        const owner = await userOrg(userId);
        // An unknown user is left to the handler (NOT_FOUND).
        if (owner !== undefined && owner !== principal.orgId) throw denied('org admins act only within their own organization');
      }
      return next(req);
    }
    throw denied(`${req.method.name} is not allowed for this caller`);
  };
}
