import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T = unknown> = ColumnType<T, string, string>;

/** The append-only log: the audit trail and the source of every `details.sequence`. */
export interface EventsTable {
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
export interface AggregatesTable {
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
}

export interface SigningKeysTable {
  kid: string;
  private_jwk: Json<Record<string, unknown>>;
  public_jwk: Json<Record<string, unknown>>;
  created_at: Timestamp;
}

export interface SecretsTable {
  name: string;
  value: Buffer;
  created_at: Timestamp;
}

/** The tables as Kysely sees them. */
export interface Database {
  events: EventsTable;
  aggregates: AggregatesTable;
  orgs: OrgsTable;
  users: UsersTable;
  signing_keys: SigningKeysTable;
  secrets: SecretsTable;
}
