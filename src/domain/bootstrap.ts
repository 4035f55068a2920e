import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { addSigningKey } from '../auth/signing-keys.js';
import { newId } from '../ids.js';
import { appendEvents } from '../store/events.js';
import type { Database } from '../store/schema.js';

const BOOTSTRAP_LOCK = 7_146_355_002;

/** Server secrets created at first start. `pseudo_credentials` derives ids for unknown login names. */
export const SECRET_NAMES = ['pseudo_credentials'] as const;

/**
 * First-start set-up, idempotent and safe when several instances start at once: the default
 * organization, a signing key and the server secrets.
 */
export async function bootstrap(db: Kysely<Database>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(trx);
    const defaultOrg = await trx.selectFrom('orgs').select('id').where('is_default', '=', true).executeTakeFirst();
    if (!defaultOrg) {
      const id = newId();
      const details = await appendEvents(trx, { type: 'org', id, owner: id }, [{ type: 'org.added', payload: { name: 'Default', is_default: true } }], 'system');
      await trx
        .insertInto('orgs')
        .values({ id, name: 'Default', state: 'active', is_default: true, created_at: details.creationDate, updated_at: details.changeDate, sequence: details.sequence })
        .execute();
    }
    for (const name of SECRET_NAMES) {
      await trx.insertInto('secrets').values({ name, value: randomBytes(32), created_at: new Date() }).onConflict((oc) => oc.column('name').doNothing()).execute();
    }
  });
  const key = await db.selectFrom('signing_keys').select('kid').limit(1).executeTakeFirst();
  if (!key) {
    await db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`.execute(trx);
      const again = await trx.selectFrom('signing_keys').select('kid').limit(1).executeTakeFirst();
      if (!again) await addSigningKey(trx);
    });
  }
}

/** The id of the organization created at first start. */
export async function defaultOrgId(db: Kysely<Database>): Promise<string> {
  const row = await db.selectFrom('orgs').select('id').where('is_default', '=', true).executeTakeFirstOrThrow();
  return row.id;
}
