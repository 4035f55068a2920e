import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { invalid, notFound } from '../errors.js';
import { newId } from '../ids.js';
import { appendEvents } from '../store/events.js';
import { findRegistrationCode, insertRegistrationCode, type RegistrationCode } from '../store/registration-codes.js';
import type { Database } from '../store/schema.js';
import { inTransaction } from '../store/transaction.js';
import { findUser, type User } from '../store/users.js';
import { event, type EventPayloads, type PasskeydEvent } from './events.js';
import type { ChangeDetails } from './types.js';
import { getUser } from './users.js';

export type { RegistrationCode } from '../store/registration-codes.js';

/** Why a presented code was refused (recorded in `user.passkey.code.failed`). */
export type CodeFailure = EventPayloads['user.passkey.code.failed']['reason'];

/** The one message for every refused code (no hint whether it exists, expired or was used). */
export const CODE_REFUSED = 'the registration code is invalid or has expired';

/** SHA-256 of a code: the code has 256 bits of entropy, so a fast hash is enough (nothing to brute-force). */
function hashCode(code: string): Buffer {
  return createHash('sha256').update(code, 'utf8').digest();
}

/** True when the code can still begin or complete a registration. */
export function isCodeUsable(row: Pick<RegistrationCode, 'used_at' | 'expires_at'>, now = new Date()): boolean {
  return row.used_at === null && new Date(row.expires_at).getTime() > now.getTime();
}

/** A new code: 32 random bytes, base64url; with its id and hash. */
function newRegistrationCode(): { id: string; code: string; hash: Buffer } {
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
    const current = await findUser(trx, input.userId);
    if (!current) throw notFound(`user ${input.userId}`);
    const payload = { code_id: id, expires_at: expiresAt.toISOString() };
    const events: PasskeydEvent[] = [event('user.passkey.code.added', payload)];
    if (input.delivery) events.push(event('user.passkey.code.sent', payload));
    const details = await appendEvents(trx, { type: 'user', id: current.id, owner: current.org_id }, events, creator);
    await insertRegistrationCode(trx, { id, user_id: current.id, code_hash: hash, created_at: createdAt, expires_at: expiresAt, used_at: null });
    return details;
  });
  return { id, code, expiresAt, details };
}

/**
 * Checks a code presented for a user: it must exist for THAT user, match by hash (constant time), be
 * unused and unexpired. A refusal is recorded as `user.passkey.code.failed` in its own transaction (so
 * it stays recorded although the request fails) and surfaces as INVALID_ARGUMENT.
 */
export async function checkRegistrationCode(db: Kysely<Database>, userId: string, presented: { id: string; code: string }): Promise<RegistrationCode> {
  const row = await findRegistrationCode(db, presented.id);
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
    const user = await findUser(trx, userId);
    if (!user) return;
    await appendEvents(trx, { type: 'user', id: user.id, owner: user.org_id }, [event('user.passkey.code.failed', { code_id: codeId, reason })], 'anonymous');
  });
}

/** The code a code-begun registration was bound to, as stored (for a token-less VerifyPasskeyRegistration). */
export function readRegistrationCode(db: Kysely<Database>, id: string): Promise<RegistrationCode | undefined> {
  return findRegistrationCode(db, id);
}
