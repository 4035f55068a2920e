import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T = unknown> = ColumnType<T, string, string>;

/** The append-only log: the audit trail and the source of every `details.sequence`. */
interface EventsTable {
  position: Generated<string>;
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  event_type: string;
  payload: Json<Record<string, unknown>>;
  resource_owner: string;
  creator: string;
  created_at: Timestamp;
}

/** One row per aggregate: its current sequence, owner and creation time. */
interface AggregatesTable {
  aggregate_type: string;
  aggregate_id: string;
  sequence: number;
  resource_owner: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface OrgsTable {
  id: string;
  name: string;
  state: string;
  is_default: boolean;
  created_at: Timestamp;
  updated_at: Timestamp;
  sequence: number;
}

/** A login policy: an organization's own, or the instance default (org_id ''). */
export interface LoginPoliciesTable {
  org_id: string;
  sso_required: boolean;
  max_passkeys_per_user: number;
  allowed_aaguids: string[];
  denied_aaguids: string[];
  /** '' = the server's configured default. */
  attestation: '' | 'none' | 'indirect' | 'direct' | 'enterprise';
  require_trusted_attestation: boolean;
  /** '' = the server's configured default. */
  user_verification: '' | 'required' | 'preferred';
  allow_self_registration: boolean;
  sequence: number;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** A self-service sign-up between StartSignUp and FinishSignUp. */
export interface SignUpsTable {
  id: string;
  org_id: string;
  username: string;
  email: string;
  webauthn_user_handle: Uint8Array;
  challenge: string;
  rp_id: string;
  user_verification: 'required' | 'preferred' | 'discouraged';
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface UsersTable {
  id: string;
  org_id: string;
  username: string;
  username_lower: string;
  email: string;
  email_verified: boolean;
  given_name: string;
  family_name: string;
  nick_name: string;
  display_name: string;
  preferred_language: string;
  state: string;
  webauthn_user_handle: Uint8Array;
  created_at: Timestamp;
  updated_at: Timestamp;
  sequence: number;
  /** 'human' or 'machine' (a service account: no passkeys, no login session). */
  type: Generated<'human' | 'machine'>;
  /** How many of the user's passkeys are READY (kept by the statements that change that; migration 010). */
  ready_passkeys: Generated<number>;
  machine_name: Generated<string>;
  machine_description: Generated<string>;
  /** scrypt hash of a machine user's client secret, and the id naming that secret (tokens carry it). */
  secret_hash: Generated<string | null>;
  secret_id: Generated<string | null>;
}

export interface SigningKeysTable {
  kid: string;
  /** Null once the key is retired. */
  private_jwk: ColumnType<Record<string, unknown> | null, string, string | null>;
  public_jwk: Json<Record<string, unknown>>;
  created_at: Timestamp;
  /** When the key stops verifying: set when a rotation supersedes it or it is retired; null while it signs. */
  retires_at: Generated<Date | null>;
  /** When its retirement was recorded (the `signingkey.retired` event). */
  retired_at: Generated<Date | null>;
}

interface SecretsTable {
  name: string;
  value: Buffer;
  created_at: Timestamp;
}

export interface PasskeysTable {
  id: string;
  user_id: string;
  org_id: string;
  state: 'not_ready' | 'ready';
  name: Generated<string>;
  credential_id: Uint8Array | null;
  public_key: Uint8Array | null;
  algorithm: number | null;
  sign_count: Generated<number>;
  aaguid: Generated<string>;
  authenticator_name: Generated<string>;
  backup_eligible: Generated<boolean>;
  backed_up: Generated<boolean>;
  device_type: Generated<string>;
  transports: Generated<string[]>;
  rp_id: string;
  attestation_format: Generated<string>;
  authenticator_attachment: Generated<string>;
  registration_code_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  last_used_at: Date | null;
}

export interface ChallengesTable {
  id: string;
  /** Registration ceremonies only; a login's challenge is kept in its session's row (migration 011). */
  kind: 'registration';
  challenge: string;
  user_id: string | null;
  passkey_id: string | null;
  session_id: string | null;
  rp_id: string;
  user_verification: 'required' | 'preferred' | 'discouraged';
  registration_code_id: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface RegistrationCodesTable {
  id: string;
  user_id: string;
  code_hash: Uint8Array;
  created_at: Timestamp;
  expires_at: Timestamp;
  used_at: Date | null;
}

export interface SessionsTable {
  id: string;
  token_hash: Uint8Array;
  user_id: string | null;
  org_id: string | null;
  user_checked_at: Date | null;
  webauthn_checked_at: Date | null;
  webauthn_user_verified: Generated<boolean>;
  passkey_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  expires_at: Timestamp;
  sequence: number;
  /** HMAC of the login name (or user id) of checks.user; null for usernameless sessions. */
  login_digest: Uint8Array | null;
  /** The device it was opened from (camelCase keys: fingerprintId, ip, description, header). */
  user_agent: Generated<SessionUserAgent>;
  /** Key → base64 of the value's bytes. */
  metadata: Generated<Record<string, string>>;
  /** Who opened it: a token's subject, or "anonymous". */
  creator: Generated<string>;
  /** The open WebAuthn challenge (null once used or when none was asked for). */
  challenge_id: string | null;
  challenge: string | null;
  challenge_rp_id: string | null;
  challenge_user_verification: ChallengesTable['user_verification'] | null;
  challenge_expires_at: Date | null;
}

/** A session's user agent as stored (jsonb). */
export interface SessionUserAgent {
  fingerprintId?: string;
  ip?: string;
  description?: string;
  header?: Record<string, string[]>;
}

export interface MachineKeysTable {
  id: string;
  user_id: string;
  org_id: string;
  algorithm: 'RS256' | 'ES256';
  /** SPKI PEM; the private key is never stored. */
  public_key: string;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface PersonalAccessTokensTable {
  id: string;
  user_id: string;
  org_id: string;
  /** SHA-256 of the token's secret part. */
  token_hash: Uint8Array;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface AdministratorsTable {
  user_id: string;
  /** The organization the roles apply to; '' for the instance. */
  org_id: string;
  roles: string[];
  created_at: Timestamp;
  updated_at: Timestamp;
}

interface UsedAssertionsTable {
  user_id: string;
  jti: string;
  expires_at: Timestamp;
}

/** The tables as Kysely sees them. */
export interface Database {
  events: EventsTable;
  aggregates: AggregatesTable;
  orgs: OrgsTable;
  users: UsersTable;
  signing_keys: SigningKeysTable;
  secrets: SecretsTable;
  passkeys: PasskeysTable;
  challenges: ChallengesTable;
  registration_codes: RegistrationCodesTable;
  sessions: SessionsTable;
  machine_keys: MachineKeysTable;
  personal_access_tokens: PersonalAccessTokensTable;
  administrators: AdministratorsTable;
  used_assertions: UsedAssertionsTable;
  login_policies: LoginPoliciesTable;
  signups: SignUpsTable;
}
