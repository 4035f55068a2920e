import { sql, type Kysely, type RawBuilder } from 'kysely';
import { loginPolicyOf, type LoginPolicyFields } from './orgs.js';
import type { PasskeyRow } from './passkeys.js';
import type { ChallengesTable, Database } from './schema.js';
import { compiledStatement } from './statement.js';

// The registration ceremony's reads: the user a registration begins for, and a pending registration.
// The one-statement writes (src/store/registrations.ts) answer with the same registering user.

/** A user with what a new registration needs: the user handle and the READY credentials to exclude. */
export interface RegisteringUser {
  id: string;
  org_id: string;
  username: string;
  display_name: string;
  webauthn_user_handle: Uint8Array;
  type: 'human' | 'machine';
  /** The user's READY credentials, oldest first: ids in unpadded base64url, as the options carry them. */
  credentials: { id: string; transports: string[] }[];
  /** The login policy that applies to the user's organization (null: the built-in one). */
  policy: LoginPolicyFields | null;
}

/**
 * The user's READY credentials as one JSON value, oldest first: `[id, transports]` pairs with the id in
 * unpadded base64url. One value instead of a row per credential: the answer's other columns (the user,
 * the login policy) then come once, not once per passkey.
 */
export function readyCredentials(userId: RawBuilder<unknown>) {
  return sql<[string, string[] | null][]>`(select coalesce(jsonb_agg(jsonb_build_array(translate(encode(p.credential_id, 'base64'), E'+/=\\n', '-_'), p.transports)
      order by p.created_at, p.id), '[]'::jsonb)
    from passkeys p where p.user_id = ${userId} and p.state = 'ready')`;
}

const registeringUserStatement = compiledStatement((v: { userId: string }, db) =>
  db
    .selectFrom('users as u')
    .select(['u.id', 'u.org_id', 'u.username', 'u.display_name', 'u.webauthn_user_handle', 'u.type'])
    .select(loginPolicyOf(sql`u.org_id`).as('policy'))
    .select(readyCredentials(sql`u.id`).as('credentials'))
    .where('u.id', '=', v.userId),
);

/** A registering user as a read answers it: the credentials as one JSON value. */
export type RegisteringUserRow = Omit<RegisteringUser, 'credentials'> & { credentials: [string, string[] | null][] };

export function registeringUserOf(row: RegisteringUserRow): RegisteringUser {
  return {
    id: row.id,
    org_id: row.org_id,
    username: row.username,
    display_name: row.display_name,
    webauthn_user_handle: row.webauthn_user_handle,
    type: row.type,
    credentials: row.credentials.map(([id, transports]) => ({ id, transports: transports ?? [] })),
    policy: row.policy,
  };
}

/** The user, its READY credentials and its organization's login policy, in one read; undefined for an unknown user. */
export async function findRegisteringUser(db: Kysely<Database>, userId: string): Promise<RegisteringUser | undefined> {
  const row = (await registeringUserStatement(db, { userId }))[0];
  return row ? registeringUserOf(row) : undefined;
}

/** A pending (or finished) registration: the passkey row with its registration challenge, if any. */
export type RegistrationRow = PasskeyRow & {
  challenge_id: string | null;
  challenge: string | null;
  challenge_rp_id: string | null;
  user_verification: ChallengesTable['user_verification'] | null;
  challenge_expires_at: Date | null;
  challenge_code_id: string | null;
  /** The login policy of the passkey's organization as it is now (null: the built-in one). */
  policy: LoginPolicyFields | null;
  /** The user's READY passkeys now (users.ready_passkeys). */
  ready_count: number;
};

/** The passkey with its registration challenge, its organization's login policy and the user's READY count, in one read. */
export async function findRegistration(db: Kysely<Database>, passkeyId: string): Promise<RegistrationRow | undefined> {
  return (await registrationStatement(db, { passkeyId }))[0] as RegistrationRow | undefined;
}

const registrationStatement = compiledStatement((v: { passkeyId: string }, db) =>
  db
    .selectFrom('passkeys as p')
    .leftJoin('challenges as c', (j) => j.onRef('c.passkey_id', '=', 'p.id').on('c.kind', '=', 'registration'))
    .selectAll('p')
    .select([
      'c.id as challenge_id',
      'c.challenge',
      'c.rp_id as challenge_rp_id',
      'c.user_verification',
      'c.expires_at as challenge_expires_at',
      'c.registration_code_id as challenge_code_id',
    ])
    .select(loginPolicyOf(sql`p.org_id`).as('policy'))
    .select(sql<number>`(select u.ready_passkeys from users u where u.id = p.user_id)`.as('ready_count'))
    .where('p.id', '=', v.passkeyId),
);
