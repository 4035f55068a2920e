import type { Insertable, Kysely, Selectable, Transaction } from 'kysely';
import { stampOf, type AppendResult } from './events.js';
import type { StoredCredential } from './registrations.js';
import type { Database, SignUpsTable } from './schema.js';

/** A pending self-service sign-up. */
export type SignUpRow = Selectable<SignUpsTable>;

/** Stores a begun sign-up, and drops the expired ones (they can never finish). */
export async function insertSignUp(db: Kysely<Database>, row: Insertable<SignUpsTable>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('signups').where('expires_at', '<=', new Date()).execute();
    await trx.insertInto('signups').values(row).execute();
  });
}

/** A pending sign-up that has not expired. */
export async function findLiveSignUp(db: Kysely<Database>, id: string, now: Date): Promise<SignUpRow | undefined> {
  return db.selectFrom('signups').selectAll().where('id', '=', id).where('expires_at', '>', now).executeTakeFirst();
}

/** Consumes a sign-up (DELETE ... RETURNING: one FinishSignUp succeeds per sign-up, on any instance). */
export async function consumeSignUp(trx: Transaction<Database>, id: string, now: Date): Promise<boolean> {
  const row = await trx.deleteFrom('signups').where('id', '=', id).where('expires_at', '>', now).returning('id').executeTakeFirst();
  return row !== undefined;
}

/** The new user's passkey, READY from the start (its ceremony is verified before the user exists). */
export async function insertSignedUpPasskey(
  trx: Transaction<Database>,
  p: { id: string; userId: string; orgId: string; rpId: string },
  c: StoredCredential,
  details: AppendResult,
): Promise<void> {
  const { sequence: _s, ...dates } = stampOf(details);
  await trx
    .insertInto('passkeys')
    .values({
      id: p.id,
      user_id: p.userId,
      org_id: p.orgId,
      state: 'ready',
      name: c.name,
      credential_id: c.credentialId,
      public_key: c.publicKey,
      algorithm: c.algorithm,
      sign_count: c.signCount,
      aaguid: c.aaguid,
      authenticator_name: c.authenticatorName,
      backup_eligible: c.backupEligible,
      backed_up: c.backedUp,
      device_type: c.deviceType,
      transports: c.transports,
      rp_id: p.rpId,
      attestation_format: c.attestationFormat,
      authenticator_attachment: c.authenticatorAttachment,
      registration_code_id: null,
      ...dates,
    })
    .execute();
}

/** The session a finished sign-up opens: its user checked and its passkey verified at `at`. */
export async function insertSignedInSession(
  trx: Transaction<Database>,
  s: { id: string; tokenHash: Uint8Array; userId: string; orgId: string; passkeyId: string; userVerified: boolean; at: Date; expiresAt: Date },
  details: AppendResult,
): Promise<void> {
  await trx
    .insertInto('sessions')
    .values({
      id: s.id,
      token_hash: s.tokenHash,
      user_id: s.userId,
      org_id: s.orgId,
      user_checked_at: s.at,
      webauthn_checked_at: s.at,
      webauthn_user_verified: s.userVerified,
      passkey_id: s.passkeyId,
      login_digest: null,
      expires_at: s.expiresAt,
      ...stampOf(details),
    })
    .execute();
}
