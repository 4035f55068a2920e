import type { Config } from '../config/config.js';
import { invalid } from '../errors.js';

/** COSE algorithms offered and accepted for new passkeys: EdDSA, ES256, RS256 (in order of preference). */
export const SUPPORTED_ALGORITHMS: readonly number[] = [-8, -7, -257];

/**
 * The relying-party id a ceremony runs for: the request's `domain` when it is one of the configured ids,
 * the first configured id when it is empty. Anything else is refused rather than silently replaced,
 * so a client never gets options its browser would reject for the page it is on.
 */
export function resolveRpId(config: Pick<Config, 'rpIds'>, domain: string | undefined): string {
  if (!domain) return config.rpIds[0]!;
  if (config.rpIds.includes(domain)) return domain;
  throw invalid(`domain "${domain}" is not a configured relying-party id (configured: ${config.rpIds.join(', ')})`);
}

/** The origins a WebAuthn response may come from (PASSKEYD_ORIGINS). */
export function expectedOrigins(config: Pick<Config, 'origins'>): string[] {
  return [...config.origins];
}
