import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import { newId } from '../ids.js';
import { appendEvents } from '../store/events.js';
import type { Database, RegistrationCodesTable } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { invalid } from './errors.js';
import type { ChangeDetails } from './types.js';
import { getUser, type User } from './users.js';

/** A registration code as stored: only its SHA-256 hash, never the code. */
export type RegistrationCode = Selectable<RegistrationCodesTable>;

/** Why a presented code was refused (recorded in `user.passkey.code.failed`). */
export type CodeFailure = 'unknown' | 'mismatch' | 'expired' | 'used';

/** One message for every refusal, so a caller learns nothing about which codes exist. */
/** The one message for every refused code (no hint whether it exists, expired or was used). */
export const CODE_REFUSED = 'the registration code is invalid or has expired';

/** SHA-256 of a code: the code has 256 bits of entropy, so a fast hash is enough (nothing to brute-force). */
export function hashCode(code: string): Buffer {
  return createHash('sha256').update(code, 'utf8').digest();
}

/** True when the code can still begin or complete a registration. */
export function isCodeUsable(row: Pick<RegistrationCode, 'used_at' | 'expires_at'>, now = new Date()): boolean {
  return row.used_at === null && new Date(row.expires_at).getTime() > now.getTime();
}

/** A new code: 32 random bytes, base64url; with its id and hash. */
export function newRegistrationCode(): { id: string; code: string; hash: Buffer } {
  const code = randomBytes(32).toString('base64url');
  return { id: newId(), code, hash: hashCode(code) };
}

/** Where a new code goes: back to the caller, or out through the link delivery hook. */
export interface CodeDelivery {
  /** Hands the code to the delivery hook; throws (UNAVAILABLE) when it could not be delivered. */
  deliver(input: { user: User; codeId: string; code: string; expiresAt: Date }): Promise<void>;
}

export interface CreatedCode {
  id: string;
  code: string;
  expiresAt: Date;
  details: ChangeDetails;
}

/**
 * Creates a registration code for a user. With a delivery, the link is delivered first and the code is
 * stored only once delivery succeeded: a failed delivery leaves nothing usable behind, and a code that
 * was stored has been handed over (events `user.passkey.code.added` and `user.passkey.code.sent`).
 */
export async function createRegistrationCode(
  db: Kysely<Database>,
  input: { userId: string; ttlSeconds: number; delivery?: CodeDelivery | undefined },
  creator: string,
): Promise<CreatedCode> {
  const user = await getUser(db, input.userId);
  const { id, code, hash } = newRegistrationCode();
  const createdAt = new Date();
  const expiresAt = new Date(createdAt.getTime() + input.ttlSeconds * 1000);
  if (input.delivery) await input.delivery.deliver({ user, codeId: id, code, expiresAt });
  const details = await inTransaction(db, async (trx) => {
    // Re-read inside the transaction: the user may have been deleted while the link was on its way.
    const current = await getUser(trx, input.userId);
    const events = [{ type: 'user.passkey.code.added', payload: { code_id: id, expires_at: expiresAt.toISOString() } }];
    if (input.delivery) events.push({ type: 'user.passkey.code.sent', payload: { code_id: id, expires_at: expiresAt.toISOString() } });
    const details = await appendEvents(trx, { type: 'user', id: current.id, owner: current.org_id }, events, creator);
    await trx.insertInto('registration_codes').values({ id, user_id: current.id, code_hash: hash, created_at: createdAt, expires_at: expiresAt, used_at: null }).execute();
    await touchUser(trx, current.id, details);
    return details;
  });
  return { id, code, expiresAt, details };
}

/** Keeps the user's row in step with its aggregate, so GetUserByID reports the same sequence. */
export async function touchUser(trx: Transaction<Database>, userId: string, details: ChangeDetails): Promise<void> {
  await trx.updateTable('users').set({ sequence: details.sequence, updated_at: details.changeDate }).where('id', '=', userId).execute();
}

/** {@link touchUser} as the body of a CTE, from the user aggregate's row an `appendCtes` CTE returned. */
export function touchUserFrom(appended: string, userId: string): RawBuilder<unknown> {
  return sql`update users u set sequence = x.sequence, updated_at = x.updated_at from ${sql.id(appended)} x where u.id = ${userId}::text`;
}

/**
 * Checks a code presented for a user: it must exist for THAT user, match by hash (constant time), be
 * unused and unexpired. A refusal is recorded as `user.passkey.code.failed` in its own transaction (so
 * it stays recorded although the request fails) and surfaces as INVALID_ARGUMENT.
 */
export async function checkRegistrationCode(db: Kysely<Database>, userId: string, presented: { id: string; code: string }): Promise<RegistrationCode> {
  const row = await db.selectFrom('registration_codes').selectAll().where('id', '=', presented.id).executeTakeFirst();
  const expected = row?.user_id === userId ? Buffer.from(row.code_hash) : randomBytes(32);
  const matches = timingSafeEqual(hashCode(presented.code), expected);
  let failure: CodeFailure | undefined;
  if (!row || row.user_id !== userId) failure = 'unknown';
  else if (!matches) failure = 'mismatch';
  else if (row.used_at !== null) failure = 'used';
  else if (!isCodeUsable(row)) failure = 'expired';
  if (failure === undefined) return row!;
  await recordCodeFailure(db, userId, presented.id, failure);
  throw invalid(CODE_REFUSED);
}

/** Appends `user.passkey.code.failed` to the user's aggregate (nothing when the user does not exist). */
export async function recordCodeFailure(db: Kysely<Database>, userId: string, codeId: string, reason: CodeFailure): Promise<void> {
  await inTransaction(db, async (trx) => {
    const user = await trx.selectFrom('users').select(['id', 'org_id']).where('id', '=', userId).executeTakeFirst();
    if (!user) return;
    const details = await appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [{ type: 'user.passkey.code.failed', payload: { code_id: codeId, reason } }], 'anonymous');
    await touchUser(trx, user.id, details);
  });
}
