import { createHash } from 'node:crypto';

/**
 * Personal access tokens are `pat_<token id>_<secret>`: the id finds the row, the secret (32 random
 * bytes) is checked against its stored SHA-256 (it has 256 bits of entropy, so a fast hash is enough).
 * The prefix tells a PAT from a JWT at a glance, in logs as in code.
 */
export const PAT_PREFIX = 'pat_';

const SHAPE = /^pat_([0-9a-z]{26})_([A-Za-z0-9_-]{43})$/;

/** The token id and secret of a PAT, or undefined when the string is not shaped like one. */
export function parsePat(token: string): { id: string; secret: string } | undefined {
  const m = SHAPE.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** What is stored of a PAT's secret. */
export function hashPatSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}
