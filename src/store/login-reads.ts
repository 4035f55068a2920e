import { sql, type Kysely } from 'kysely';
import type { ChallengesTable, Database } from './schema.js';
import { DEFAULT_ORG_ID, ssoRequiredOf } from './orgs.js';
import { compiledStatement } from './statement.js';

/** The login's reads: the session with its open challenge, the passkey an assertion names, the allow list. */

type UserVerification = ChallengesTable['user_verification'];

/** A login's session with its open challenge, read in one query. */
export interface SessionContext {
  id: string;
  token_hash: Uint8Array;
  user_id: string | null;
  org_id: string | null;
  login_digest: Uint8Array | null;
  webauthn_checked_at: Date | null;
  expires_at: Date;
  /** Key → base64 of the value. */
  metadata: Record<string, string>;
  owner: string;
  challenge_id: string | null;
  challenge: string | null;
  rp_id: string | null;
  user_verification: UserVerification | null;
  challenge_expires_at: Date | null;
}

/** A READY passkey of an active user, with what a login needs of that user. */
export interface LoginPasskey {
  id: string;
  user_id: string;
  org_id: string;
  public_key: Uint8Array | null;
  sign_count: number;
  rp_id: string;
  webauthn_user_handle: Uint8Array;
  /** The login policy of the passkey's organization (or the instance default) requires SSO. */
  sso_required: boolean;
}

function sessionQuery(db: Kysely<Database>, sessionId: string) {
  return db
    .selectFrom('sessions as s')
    .select([
      's.id',
      's.token_hash',
      's.user_id',
      's.org_id',
      's.login_digest',
      's.webauthn_checked_at',
      's.expires_at',
      's.metadata',
      DEFAULT_ORG_ID.as('owner'),
      's.challenge_id',
      's.challenge',
      's.challenge_rp_id as rp_id',
      's.challenge_user_verification as user_verification',
      's.challenge_expires_at',
    ])
    .where('s.id', '=', sessionId);
}

function passkeyQuery(db: Kysely<Database>, credentialId: Buffer) {
  return db
    .selectFrom('passkeys as p')
    .innerJoin('users as u', 'u.id', 'p.user_id')
    .select(['p.id', 'p.user_id', 'p.org_id', 'p.public_key', 'p.sign_count', 'p.rp_id', 'u.webauthn_user_handle'])
    .select(ssoRequiredOf(sql.ref('p.org_id')).as('sso_required'))
    .where('p.credential_id', '=', credentialId)
    .where('p.state', '=', 'ready')
    .where('u.state', '=', 'active');
}

const sessionContextStatement = compiledStatement<{ sessionId: string }, SessionContext>((v, db) => sessionQuery(db, v.sessionId));

/** The session with its open challenge, or undefined. */
export async function findSessionContext(db: Kysely<Database>, sessionId: string): Promise<SessionContext | undefined> {
  return (await sessionContextStatement(db, { sessionId }))[0];
}

/**
 * SetSession's two reads in one round trip (each query costs more client CPU than its SQL): the
 * session with its open challenge, and the passkey the assertion names. Both are joined laterally to a
 * one-row table, so either may be missing; the passkey's columns come back prefixed `p_`.
 */
export async function findSessionAndPasskey(db: Kysely<Database>, sessionId: string, credentialId: Buffer): Promise<[SessionContext | undefined, LoginPasskey | undefined]> {
  const { p_id, p_user_id, p_org_id, p_public_key, p_sign_count, p_rp_id, p_webauthn_user_handle, p_sso_required, ...session } = (
    await sessionAndPasskeyStatement(db, { sessionId, credentialId })
  )[0]!;
  const passkey =
    p_id === null
      ? undefined
      : {
          id: p_id,
          user_id: p_user_id,
          org_id: p_org_id,
          public_key: p_public_key,
          sign_count: p_sign_count,
          rp_id: p_rp_id,
          webauthn_user_handle: p_webauthn_user_handle,
          sso_required: p_sso_required,
        };
  return [session.id == null ? undefined : (session as SessionContext), passkey];
}

type SessionAndPasskeyRow = Partial<SessionContext> & {
  p_id: string | null;
  p_user_id: string;
  p_org_id: string;
  p_public_key: Uint8Array | null;
  p_sign_count: number;
  p_rp_id: string;
  p_webauthn_user_handle: Uint8Array;
  p_sso_required: boolean;
};

const sessionAndPasskeyStatement = compiledStatement<{ sessionId: string; credentialId: Buffer }, SessionAndPasskeyRow>(
  (v, db) => sql<SessionAndPasskeyRow>`
    select s.*, p.id as p_id, p.user_id as p_user_id, p.org_id as p_org_id, p.public_key as p_public_key, p.sign_count as p_sign_count,
      p.rp_id as p_rp_id, p.webauthn_user_handle as p_webauthn_user_handle, p.sso_required as p_sso_required
    from (select 1) one
    left join lateral (${sessionQuery(db, v.sessionId)}) s on true
    left join lateral (${passkeyQuery(db, v.credentialId)}) p on true`,
);

/** The organization of the active user a login name or id names, or undefined. */
export async function findOrgOfLogin(db: Kysely<Database>, lookup: { loginName: string } | { userId: string }): Promise<string | undefined> {
  let q = db.selectFrom('users').select('org_id').where('state', '=', 'active');
  q = 'loginName' in lookup ? q.where('username_lower', '=', lookup.loginName.toLowerCase()) : q.where('id', '=', lookup.userId);
  return (await q.executeTakeFirst())?.org_id;
}

/** A user's READY credentials for an RP ID (the allow list), oldest first; no rows for an unknown user. */
export async function findAllowList(
  db: Kysely<Database>,
  rpId: string,
  lookup: { loginName: string } | { userId: string },
): Promise<{ userId: string | undefined; orgId: string | undefined; credentials: { id: Uint8Array; transports: string[] }[] }> {
  let q = db
    .selectFrom('users as u')
    .leftJoin('passkeys as p', (j) => j.onRef('p.user_id', '=', 'u.id').on('p.state', '=', 'ready').on('p.rp_id', '=', rpId))
    .select(['u.id', 'u.org_id', 'p.credential_id', 'p.transports'])
    .where('u.state', '=', 'active')
    .where('u.type', '=', 'human');
  q = 'loginName' in lookup ? q.where('u.username_lower', '=', lookup.loginName.toLowerCase()) : q.where('u.id', '=', lookup.userId);
  const rows = await q.orderBy('p.created_at').execute();
  const user = rows[0];
  return {
    userId: user?.id,
    orgId: user?.org_id,
    credentials: rows.filter((r) => r.credential_id).map((r) => ({ id: r.credential_id!, transports: r.transports ?? [] })),
  };
}
