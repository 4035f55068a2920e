import type { Kysely } from 'kysely';
import { managesSessionsOf, type Principal } from '../auth/callers.js';
import type { Config } from '../config/config.js';
import { denied, invalid, precondition, unauthenticated } from '../errors.js';
import type { SessionContextChange } from '../store/login-complete.js';
import type { SessionContext } from '../store/login-reads.js';
import { changeSessionContext } from '../store/sessions.js';
import type { Database, SessionUserAgent } from '../store/schema.js';
import { event, type EventOf } from './events.js';
import { sessionAggregate, sessionTokenMatches } from './sessions.js';
import type { ChangeDetails } from './types.js';

/** Metadata bounds: keys per session, characters per key, bytes per value. */
export const METADATA_MAX_KEYS = 20;
const METADATA_MAX_VALUE_BYTES = 4096;

/** The refusal of a metadata change that would leave a session with more than METADATA_MAX_KEYS keys. */
export function metadataFull(): Error {
  return invalid(`metadata: a session holds at most ${METADATA_MAX_KEYS} keys`);
}

/** Headers never stored or recorded: they carry credentials. */
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'set-cookie', 'proxy-authorization', 'x-api-key']);

/** A user agent as a request brings it (the proto's fields, header values as lists). */
export interface UserAgentInput {
  fingerprintId?: string | undefined;
  ip?: string | undefined;
  description?: string | undefined;
  header: Record<string, string[]>;
}

/**
 * The user agent to store: the caller's, or (when it sent none) the request's own User-Agent header
 * and client address. Header names are lower-cased and headers holding secrets are dropped.
 */
export function userAgentOf(sent: UserAgentInput | undefined, request: { userAgent: string | null; address: string }): SessionUserAgent {
  if (!sent) return { ...(request.userAgent ? { description: request.userAgent } : {}), ip: request.address };
  const header: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(sent.header)) {
    const n = name.toLowerCase();
    if (!SECRET_HEADERS.has(n)) header[n] = values;
  }
  return {
    ...(sent.fingerprintId !== undefined ? { fingerprintId: sent.fingerprintId } : {}),
    ...(sent.ip !== undefined ? { ip: sent.ip } : {}),
    ...(sent.description !== undefined ? { description: sent.description } : {}),
    ...(Object.keys(header).length ? { header } : {}),
  };
}

/** Metadata keys to set (base64 of the values) and to delete (empty values), within the bounds. */
export function metadataChange(sent: Record<string, Uint8Array>): { set: Record<string, string>; delete: string[] } {
  const set: Record<string, string> = {};
  const del: string[] = [];
  for (const [key, value] of Object.entries(sent)) {
    if (key.length === 0) throw invalid('metadata: a key must not be empty');
    if (value.length > METADATA_MAX_VALUE_BYTES) throw invalid(`metadata[${key}]: a value must be at most ${METADATA_MAX_VALUE_BYTES} bytes`);
    if (value.length === 0) del.push(key);
    else set[key] = Buffer.from(value).toString('base64');
  }
  return { set, delete: del };
}

/** A requested lifetime in seconds, refused when not positive or above the configured maximum. */
export function lifetimeOf(seconds: number | undefined, config: Pick<Config, 'sessionTtlSeconds'>): number | undefined {
  if (seconds === undefined) return undefined;
  if (!(seconds > 0)) throw invalid('lifetime: must be positive');
  if (seconds > config.sessionTtlSeconds) throw invalid(`lifetime: must be at most ${config.sessionTtlSeconds}s (PASSKEYD_SESSION_TTL)`);
  return seconds;
}

/** True when the caller holds a role that drives sessions (session_manager, org_admin, instance_admin). */
export function isSessionManager(caller: Principal): boolean {
  return caller.roles.has('session_manager') || caller.roles.has('org_admin') || caller.roles.has('instance_admin');
}

/**
 * The session token, or a session manager of the session's organization (ZITADEL's login back end
 * drives sessions that way): UNAUTHENTICATED without either, PERMISSION_DENIED for a manager of
 * another organization.
 */
export function checkSessionCaller(
  session: { token_hash: Uint8Array; org_id: string | null },
  sessionToken: string | undefined,
  caller: Principal | undefined,
  missing: string,
): void {
  if (sessionToken !== undefined && sessionTokenMatches(session.token_hash, sessionToken)) return;
  if (!caller || !isSessionManager(caller)) throw unauthenticated(missing);
  if (!managesSessionsOf(caller, session.org_id)) throw denied('this session belongs to another organization');
}

/** SetSession's lifetime and metadata as a change of the row and its events (none when nothing is asked). */
export function contextChangeOf(
  session: Pick<SessionContext, 'metadata'>,
  input: { lifetimeSeconds?: number | undefined; metadata?: Record<string, Uint8Array> | undefined },
  config: Pick<Config, 'sessionTtlSeconds'>,
  now: number,
): { change: SessionContextChange | undefined; events: EventOf<'session'>[] } {
  const events: EventOf<'session'>[] = [];
  const change: SessionContextChange = {};
  const lifetime = lifetimeOf(input.lifetimeSeconds, config);
  if (lifetime !== undefined) {
    change.expiresAt = new Date(now + lifetime * 1000);
    events.push(event('session.lifetime.set', { lifetime_seconds: lifetime, expires_at: change.expiresAt.toISOString() }));
  }
  if (input.metadata && Object.keys(input.metadata).length) {
    const m = metadataChange(input.metadata);
    const keys = new Set(Object.keys(session.metadata ?? {}));
    for (const k of Object.keys(m.set)) keys.add(k);
    for (const k of m.delete) keys.delete(k);
    // Checked here against the session as read (the clear answer in the common case), and again by the
    // statement against the row as it is then (two changes at once).
    if (keys.size > METADATA_MAX_KEYS) throw metadataFull();
    change.metadata = { ...m, maxKeys: METADATA_MAX_KEYS };
    events.push(event('session.metadata.set', { set: Object.keys(m.set), deleted: m.delete }));
  }
  return { change: events.length ? change : undefined, events };
}

/** SetSession with only a lifetime or metadata: one statement, refused when the session ended meanwhile. */
export async function setSessionContext(
  db: Kysely<Database>,
  session: SessionContext,
  change: SessionContextChange,
  events: EventOf<'session'>[],
  creator: string,
): Promise<ChangeDetails> {
  return changeSessionContext(db, sessionAggregate(session.id, session.owner), change, events, creator, {
    ended: () => precondition('the session has ended; start a new login'),
    metadataFull,
  });
}
