import type { AggregateType } from '../store/events.js';
import type { SessionUserAgent } from '../store/schema.js';

/**
 * The event catalogue: every event passkeyd records, with its payload. The events table is the audit
 * trail, so a payload holds what an auditor needs and never a secret (no tokens, codes or keys).
 * Events are built only through {@link event}, so an unknown type or a payload of the wrong shape does
 * not compile. The README's audit-trail list is checked against {@link EVENT_TYPES} by a test.
 */
export interface EventPayloads {
  'org.added': { name: string; is_default?: boolean };
  /** Aggregate org '' is the instance: its policy is the default of every organization without one. */
  'org.policy.login.set': LoginPolicyPayload;
  'org.policy.login.reset': Record<string, never>;

  'user.human.added': HumanFields;
  /** Only the fields that changed. */
  'user.human.changed': Partial<Omit<HumanFields, 'username'>> & { username?: string };
  'user.removed': { username: string };
  'user.machine.added': { username: string; name: string; description: string };
  'user.deactivated': Record<string, never>;
  'user.reactivated': Record<string, never>;
  'user.key.added': { key_id: string; algorithm: string; expires_at: string };
  'user.key.removed': { key_id: string };
  'user.pat.added': { token_id: string; expires_at: string };
  'user.pat.removed': { token_id: string };
  /** Never the secret: only the id that names it (tokens exchanged with it carry that id). */
  'user.secret.added': { secret_id: string; replaced: boolean };
  'user.secret.removed': { secret_id: string };
  /** Roles granted on the instance (`org_id` '') or one organization. */
  'user.administrator.added': { org_id: string; roles: string[] };
  'user.administrator.changed': { org_id: string; roles: string[] };
  'user.administrator.removed': { org_id: string };
  /** An access token issued at the token endpoint (never the token): its id, grant and credential. */
  'user.token.issued': { token_id: string; grant_type: string; credential: string; expires_at: string };

  'user.passkey.added': { passkey_id: string; rp_id: string; authenticator_attachment: string; registration_code_id: string | null };
  'user.passkey.verified': {
    passkey_id: string;
    name: string;
    credential_id: string;
    aaguid: string;
    authenticator_name: string;
    algorithm: number;
    attestation_format: string;
    backup_eligible: boolean;
    backed_up: boolean;
    transports: string[];
    rp_id: string;
    user_verified: boolean;
    registration_code_id: string | null;
  };
  'user.passkey.renamed': { passkey_id: string; name: string };
  /** `removed_by`: the caller's user id; `self_service`: the user removed their own passkey. */
  'user.passkey.removed': { passkey_id: string; credential_id: string; forced: boolean; removed_by?: string; self_service?: boolean };
  'user.passkey.signcount.rejected': { passkey_id: string; session_id: string; stored: number; received: number; policy: 'reject' | 'log' };
  'user.passkey.code.added': { code_id: string; expires_at: string };
  'user.passkey.code.sent': { code_id: string; expires_at: string };
  'user.passkey.code.failed': { code_id: string; reason: 'unknown' | 'mismatch' | 'expired' | 'used' };

  /** `user_id` is filled in by the statement that finds the user (null when the name is unknown). */
  'session.added': { usernameless: boolean; expires_at: string; rp_id?: string; user_verification?: string; user_agent?: SessionUserAgent; metadata_keys?: string[] };
  /** Keys only: metadata values may be anything the login app keeps, so they stay out of the audit trail. */
  'session.metadata.set': { set: string[]; deleted: string[] };
  'session.lifetime.set': { lifetime_seconds: number; expires_at: string };
  /** Ended by "sign out everywhere" (DeleteSessions), which kept `kept_session_id`. */
  'session.terminated.others': { user_id: string; kept_session_id: string | null };
  'session.webauthn.challenged': { rp_id: string; user_verification: string };
  /**
   * The session's passkey factor. From a login, also the passkey's use: the counter the authenticator
   * reported and its backup state (earlier versions recorded those as `user.passkey.used` on the user,
   * which older event tables still hold). A sign-up's session has neither: its `user.passkey.verified`
   * records the passkey.
   */
  'session.webauthn.checked': { user_id: string; passkey_id: string; user_verified: boolean; sign_count?: number; backed_up?: boolean };
  /** `reason` is for the audit trail only; the caller saw one message for every refusal. */
  'session.webauthn.failed': { reason: string; code: string; passkey_id: string | null };
  'session.terminated': Record<string, never>;

  /** A rotation superseded this signing key: `new_kid` signs from now on, this one verifies until `retires_at`. */
  'signingkey.rotated': { new_kid: string; retires_at: string };
  /** The key verifies nothing any more and leaves JWKS: retired by hand, or its deadline passed. */
  'signingkey.retired': { reason: 'manual' | 'expired'; retires_at: string };
}

/** A login policy as events record it ('' for attestation / user_verification: the server's default). */
interface LoginPolicyPayload {
  sso_required: boolean;
  max_passkeys_per_user: number;
  allowed_aaguids: string[];
  denied_aaguids: string[];
  attestation: string;
  require_trusted_attestation: boolean;
  user_verification: string;
  allow_self_registration: boolean;
}

/** A human user's profile fields as events record them. */
interface HumanFields {
  username: string;
  given_name: string;
  family_name: string;
  nick_name: string;
  display_name: string;
  preferred_language: string;
  email: string;
  email_verified: boolean;
}

export type EventType = keyof EventPayloads;

/** One event of the catalogue: its type and the payload that type carries. */
export type PasskeydEvent = { [T in EventType]: { type: T; payload: EventPayloads[T] } }[EventType];

/** Events of one aggregate type: the part of the event type before the first dot names it. */
export type EventOf<A extends AggregateType> = Extract<PasskeydEvent, { type: `${A}.${string}` }>;

/** Builds an event; the only way events are made. */
export function event<T extends EventType>(type: T, payload: EventPayloads[T]): Extract<PasskeydEvent, { type: T }> {
  return { type, payload } as Extract<PasskeydEvent, { type: T }>;
}

// Every type once: a type missing here (or one not in the catalogue) does not compile.
const ALL: Record<EventType, true> = {
  'org.added': true,
  'org.policy.login.set': true,
  'org.policy.login.reset': true,
  'user.human.added': true,
  'user.human.changed': true,
  'user.removed': true,
  'user.machine.added': true,
  'user.deactivated': true,
  'user.reactivated': true,
  'user.key.added': true,
  'user.key.removed': true,
  'user.pat.added': true,
  'user.pat.removed': true,
  'user.secret.added': true,
  'user.secret.removed': true,
  'user.administrator.added': true,
  'user.administrator.changed': true,
  'user.administrator.removed': true,
  'user.token.issued': true,
  'user.passkey.added': true,
  'user.passkey.verified': true,
  'user.passkey.renamed': true,
  'user.passkey.removed': true,
  'user.passkey.signcount.rejected': true,
  'user.passkey.code.added': true,
  'user.passkey.code.sent': true,
  'user.passkey.code.failed': true,
  'session.added': true,
  'session.webauthn.challenged': true,
  'session.webauthn.checked': true,
  'session.webauthn.failed': true,
  'session.terminated': true,
  'session.metadata.set': true,
  'session.lifetime.set': true,
  'session.terminated.others': true,
  'signingkey.rotated': true,
  'signingkey.retired': true,
};

/** Every event type (the README's audit-trail list is compared with it by a test). */
export const EVENT_TYPES = Object.keys(ALL) as readonly EventType[];
