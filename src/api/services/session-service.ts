import type { JsonObject, MessageInitShape } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate, type Duration } from '@bufbuild/protobuf/wkt';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { TimestampQueryMethod } from '../../../gen/passkeyd/object/v2/object_pb.js';
import { UserVerificationRequirement, type RequestChallenges_WebAuthN, type SearchQuery, type SessionSchema, type UserAgent } from '../../../gen/passkeyd/session/v2/session_pb.js';
import type { SessionService } from '../../../gen/passkeyd/session/v2/session_service_pb.js';
import { invalid } from '../../errors.js';
import { createLogin } from '../../domain/login.js';
import { userAgentOf, type UserAgentInput } from '../../domain/session-context.js';
import { authorizeSessionAccess, getSessionView, listSessions, terminateOtherSessions, terminateSession, type SessionFilter, type SessionView } from '../../domain/sessions.js';
import { pageFrom } from '../../domain/types.js';
import type { ChallengesTable } from '../../store/schema.js';
import { clientAddressKey, principalKey } from '../context.js';
import { detailsOf, listDetailsOf } from '../mappers.js';
import { managesSessionsOf } from '../../auth/callers.js';
import { callerOf, type ServiceDeps } from './deps.js';

const USER_VERIFICATION: Record<UserVerificationRequirement, ChallengesTable['user_verification'] | undefined> = {
  [UserVerificationRequirement.UNSPECIFIED]: undefined,
  [UserVerificationRequirement.REQUIRED]: 'required',
  [UserVerificationRequirement.PREFERRED]: 'preferred',
  [UserVerificationRequirement.DISCOURAGED]: 'discouraged',
};

function webauthnOf(w: RequestChallenges_WebAuthN) {
  return { domain: w.domain, userVerification: USER_VERIFICATION[w.userVerificationRequirement] };
}

/** Who an event names as its creator: the token's subject, or "anonymous" for token-less calls. */
function creatorOf(ctx: HandlerContext): string {
  return ctx.values.get(principalKey)?.subject ?? 'anonymous';
}

/** A session as the API shows it; the user factor appears only once a login proved who it is. */
function sessionOf(s: SessionView): MessageInitShape<typeof SessionSchema> {
  return {
    id: s.id,
    creationDate: timestampFromDate(s.created_at),
    changeDate: timestampFromDate(s.updated_at),
    sequence: BigInt(s.sequence),
    expirationDate: timestampFromDate(s.expires_at),
    metadata: Object.fromEntries(Object.entries(s.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    userAgent: {
      fingerprintId: s.user_agent.fingerprintId,
      ip: s.user_agent.ip,
      description: s.user_agent.description,
      header: Object.fromEntries(Object.entries(s.user_agent.header ?? {}).map(([k, values]) => [k, { values }])),
    },
    factors: {
      user:
        s.user_checked_at && s.user_id
          ? { verifiedAt: timestampFromDate(s.user_checked_at), id: s.user_id, loginName: s.username ?? '', displayName: s.display_name ?? '', organizationId: s.org_id ?? '' }
          : undefined,
      webAuthN: s.webauthn_checked_at ? { verifiedAt: timestampFromDate(s.webauthn_checked_at), userVerified: s.webauthn_user_verified } : undefined,
    },
  };
}

const TIMESTAMP_OPS: Record<TimestampQueryMethod, '=' | '>' | '>=' | '<' | '<='> = {
  [TimestampQueryMethod.EQUALS]: '=',
  [TimestampQueryMethod.GREATER]: '>',
  [TimestampQueryMethod.GREATER_OR_EQUALS]: '>=',
  [TimestampQueryMethod.LESS]: '<',
  [TimestampQueryMethod.LESS_OR_EQUALS]: '<=',
};

function filterOf(q: SearchQuery, caller: string): SessionFilter {
  switch (q.query.case) {
    case 'idsQuery':
      return { ids: q.query.value.ids };
    case 'userIdQuery':
      return { userId: q.query.value.id };
    case 'creationDateQuery':
      return { created: { op: TIMESTAMP_OPS[q.query.value.method], at: timestampDate(q.query.value.creationDate!) } };
    case 'creatorQuery':
      // As in ZITADEL: without an id, the sessions the caller opened.
      return { creator: q.query.value.id ?? caller };
    case 'userAgentQuery':
      return q.query.value.fingerprintId === undefined ? { ids: [] } : { fingerprintId: q.query.value.fingerprintId };
    default:
      return {};
  }
}

/** The API's user agent (header values as lists) in the shape the domain takes. */
function userAgentInput(ua: UserAgent | undefined): UserAgentInput | undefined {
  if (!ua) return undefined;
  const header: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(ua.header)) header[k] = v.values;
  return { fingerprintId: ua.fingerprintId, ip: ua.ip, description: ua.description, header };
}

function secondsOf(d: Duration | undefined): number | undefined {
  return d ? Number(d.seconds) + d.nanos / 1e9 : undefined;
}

/**
 * SessionService: passkey login (CreateSession → SetSession → access token) and session reads.
 * CreateSession and SetSession are public (rate limited); the others check the session token or the
 * caller's relation to the session here, after the interceptor verified any Bearer token.
 */
export function createSessionService({ db, config, tokens }: ServiceDeps): ServiceImpl<typeof SessionService> {
  const login = createLogin({ db, config, tokens });
  return {
    async createSession(req, ctx) {
      if (req.checks?.webAuthN) throw invalid('checks.web_auth_n: belongs in SetSession, after the challenge was issued');
      const search = req.checks?.user?.search;
      const user = search?.case === 'loginName' ? { loginName: search.value } : search?.case === 'userId' ? { userId: search.value } : undefined;
      if (req.checks?.user && !user) throw invalid('checks.user: user_id or login_name is required');
      const userAgent = userAgentOf(userAgentInput(req.userAgent), { userAgent: ctx.requestHeader.get('user-agent'), address: ctx.values.get(clientAddressKey) });
      const started = await login.start(
        {
          user,
          webauthn: req.challenges?.webAuthN && webauthnOf(req.challenges.webAuthN),
          lifetimeSeconds: secondsOf(req.lifetime),
          userAgent,
          metadata: req.metadata,
          caller: ctx.values.get(principalKey),
        },
        creatorOf(ctx),
      );
      return {
        details: detailsOf(started.details),
        sessionId: started.sessionId,
        sessionToken: started.sessionToken,
        challenges: started.requestOptions ? { webAuthN: { publicKeyCredentialRequestOptions: started.requestOptions as JsonObject } } : undefined,
      };
    },

    async setSession(req, ctx) {
      if (req.checks?.user) throw invalid('checks.user: is set when the session is created');
      const token = req.sessionToken === '' ? undefined : req.sessionToken;
      const check = req.checks?.webAuthN;
      const wanted = req.challenges?.webAuthN;
      if (check && wanted) throw invalid('send either checks.web_auth_n or challenges.web_auth_n');
      const caller = ctx.values.get(principalKey);
      const context = { lifetimeSeconds: secondsOf(req.lifetime), metadata: req.metadata };
      if (check) {
        const done = await login.finish({ sessionId: req.sessionId, sessionToken: token, assertion: check.credentialAssertionData, caller, ...context }, creatorOf(ctx));
        return {
          details: detailsOf(done.details),
          sessionToken: done.sessionToken,
          accessToken: done.accessToken,
          accessTokenExpirationDate: timestampFromDate(done.accessTokenExpiresAt),
        };
      }
      const hasContext = context.lifetimeSeconds !== undefined || Object.keys(req.metadata).length > 0;
      if (wanted) {
        if (hasContext) await login.setContext({ sessionId: req.sessionId, sessionToken: token, caller, ...context }, creatorOf(ctx));
        const c = await login.challenge({ sessionId: req.sessionId, sessionToken: token, webauthn: webauthnOf(wanted), caller }, creatorOf(ctx));
        return { details: detailsOf(c.details), sessionToken: token!, challenges: { webAuthN: { publicKeyCredentialRequestOptions: c.requestOptions as JsonObject } } };
      }
      const details = await login.setContext({ sessionId: req.sessionId, sessionToken: token, caller, ...context }, creatorOf(ctx));
      return { details: detailsOf(details), sessionToken: token ?? '' };
    },

    async getSession(req, ctx) {
      const session = await getSessionView(db, req.sessionId);
      authorizeSessionAccess(session, ctx.values.get(principalKey), req.sessionToken);
      return { session: sessionOf(session) };
    },

    async deleteSession(req, ctx) {
      const session = await getSessionView(db, req.sessionId);
      authorizeSessionAccess(session, ctx.values.get(principalKey), req.sessionToken);
      const details = await terminateSession(db, session.id, creatorOf(ctx));
      return { details: detailsOf(details) };
    },

    async deleteSessions(req, ctx) {
      const caller = callerOf(ctx);
      // By default the caller's own session stays (an admin's session is not the user's, so all of theirs end).
      const ended = await terminateOtherSessions(db, req.userId, req.keepSessionId ?? caller.sessionId, caller.subject);
      return { sessionIds: ended.ids, changeDate: timestampFromDate(ended.at) };
    },

    async listSessions(req, ctx) {
      const caller = callerOf(ctx);
      const filters = req.queries.map((q) => filterOf(q, caller.subject));
      // Instance admins (and instance-wide session managers) see every session, org admins and session
      // managers their organization's, anyone else their own.
      if (!managesSessionsOf(caller, null)) filters.push(managesSessionsOf(caller, caller.orgId) ? { orgId: caller.orgId } : { userId: caller.subject });
      const r = await listSessions(db, filters, pageFrom(req.query));
      return { details: listDetailsOf(r), sessions: r.items.map(sessionOf) };
    },
  };
}
