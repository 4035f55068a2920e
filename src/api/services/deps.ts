import type { HandlerContext } from '@connectrpc/connect';
import type { Kysely } from 'kysely';
import type { Callers, Principal } from '../../auth/callers.js';
import type { TokenService } from '../../auth/tokens.js';
import type { Config } from '../../config/config.js';
import { unauthenticated } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Database } from '../../store/schema.js';
import type { TrustedMetadata } from '../../webauthn/metadata.js';
import { principalKey } from '../context.js';

/** What handlers need; built once per process. */
export interface ServiceDeps {
  config: Config;
  db: Kysely<Database>;
  tokens: TokenService;
  callers: Callers;
  log: Logger;
  /** The FIDO metadata trusted attestation is checked against (PASSKEYD_FIDO_MDS_FILE). */
  metadata: TrustedMetadata;
}

/** The verified caller of a handler that requires one. */
export function callerOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw unauthenticated('this call needs a Bearer access token');
  return p;
}
