import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { listPage, type ListResult, type Page } from './lists.js';
import type { Database, PasskeysTable } from './schema.js';

/** A passkey as stored (current state). */
export type PasskeyRow = Selectable<PasskeysTable>;

/** The unique constraint a credential registered twice violates. */
export const CREDENTIAL_UNIQUE = 'passkeys_credential_id_key';
/** A user's READY passkeys, one page, with the total. */
export async function listReadyPasskeys(db: Kysely<Database>, userId: string, page: Page): Promise<ListResult<PasskeyRow>> {
  return db
    .transaction()
    .execute((trx) =>
      listPage(trx, trx.selectFrom('passkeys').where('user_id', '=', userId).where('state', '=', 'ready'), (s) => s.selectAll(), { column: 'created_at', tiebreak: 'id' }, page),
    );
}

/** One READY passkey of a user, or undefined. */
export async function findReadyPasskey(trx: Transaction<Database>, userId: string, passkeyId: string): Promise<PasskeyRow | undefined> {
  return trx.selectFrom('passkeys').selectAll().where('id', '=', passkeyId).where('user_id', '=', userId).where('state', '=', 'ready').executeTakeFirst();
}

/** Renames a passkey. */
export async function renamePasskeyRow(trx: Transaction<Database>, passkeyId: string, name: string, at: Date): Promise<void> {
  await trx.updateTable('passkeys').set({ name, updated_at: at }).where('id', '=', passkeyId).execute();
}

/** Deletes a passkey's row (its events stay), and counts it off its user's READY passkeys when it was one. */
export async function deletePasskeyRow(trx: Transaction<Database>, passkeyId: string): Promise<void> {
  await sql`with gone as (delete from passkeys where id = ${passkeyId}::text returning user_id, state)
    update users u set ready_passkeys = u.ready_passkeys - 1 from gone where u.id = gone.user_id and gone.state = 'ready'`.execute(trx);
}
