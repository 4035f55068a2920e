import type { Kysely } from 'kysely';
import { addSigningKey } from '../auth/signing-keys.js';
import { ROLES, type Role, type TokenService } from '../auth/tokens.js';
import { defaultOrgId } from './bootstrap.js';
import { invalid, notFound } from '../errors.js';
import { orgExists } from '../store/orgs.js';
import type { Database } from '../store/schema.js';

export interface AdminTokenRequest {
  role: string;
  org?: string | undefined;
  user?: string | undefined;
  ttlSeconds?: number | undefined;
}

/** Signs the bootstrap credential: an admin access token for the given role and organization. */
export async function mintAdminToken(db: Kysely<Database>, tokens: TokenService, req: AdminTokenRequest): Promise<string> {
  if (!ROLES.includes(req.role as Role)) throw invalid(`--role must be one of ${ROLES.join(', ')}`);
  const orgId = req.org ?? (await defaultOrgId(db));
  if (!(await orgExists(db, orgId))) throw notFound(`organization ${orgId}`);
  const subject = req.user ?? `admin:${req.role}`;
  const ttl = req.ttlSeconds ?? 3600;
  const { token } = await tokens.issue({ subject, orgId, roles: [req.role as Role], ttlSeconds: ttl });
  return token;
}

/** Adds a signing key; new tokens use it, tokens signed by older keys stay valid until they expire. */
export async function rotateSigningKey(db: Kysely<Database>, tokens: TokenService): Promise<string> {
  const kid = await addSigningKey(db);
  await tokens.reload();
  return kid;
}
