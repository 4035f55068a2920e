import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { addSigningKey } from '../auth/signing-keys.js';
import { newId } from '../ids.js';
import { appendEvents } from '../store/events.js';
import { findDefaultOrgId, insertOrg, lockBootstrap } from '../store/orgs.js';
import type { Database } from '../store/schema.js';
import { insertSecretIfMissing } from '../store/secrets.js';
import { hasSigningKey } from '../store/signing-keys.js';
import { event } from './events.js';

/** Server secrets created at first start. `pseudo_credentials` derives ids for unknown login names. */
const SECRET_NAMES = ['pseudo_credentials'] as const;

/**
 * First-start set-up, idempotent and safe when several instances start at once: the default
 * organization, a signing key and the server secrets.
 */
export async function bootstrap(db: Kysely<Database>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await lockBootstrap(trx);
    if (!(await findDefaultOrgId(trx))) {
      const id = newId();
      const details = await appendEvents(trx, { type: 'org', id, owner: id }, [event('org.added', { name: 'Default', is_default: true })], 'system');
      await insertOrg(trx, { id, name: 'Default', isDefault: true }, details);
    }
    for (const name of SECRET_NAMES) await insertSecretIfMissing(trx, name, randomBytes(32));
  });
  if (!(await hasSigningKey(db))) {
    await db.transaction().execute(async (trx) => {
      await lockBootstrap(trx);
      if (!(await hasSigningKey(trx))) await addSigningKey(trx);
    });
  }
}

/** The id of the organization created at first start. */
export async function defaultOrgId(db: Kysely<Database>): Promise<string> {
  const id = await findDefaultOrgId(db);
  if (!id) throw new Error('the default organization is missing: the database was not bootstrapped');
  return id;
}
