import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Config } from '../config/config.js';
import type { Database } from '../store/schema.js';
import { hasReadyPasskey } from '../store/users.js';
import { defaultOrgId } from './bootstrap.js';
import { policyOfLogin } from './login-policy.js';

/**
 * Runs `fn` and answers no sooner than `minMs` after the start, whatever the outcome, so the time an
 * answer takes does not tell a known name from an unknown one (or a database hit from a miss).
 */
async function withMinimumLatency<T>(minMs: number, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    const left = minMs - (performance.now() - started);
    if (left > 0) await sleep(left);
  }
}

/**
 * CheckPasskeyAvailability: whether an active user with this login name has a READY passkey, and
 * whether the name's organization signs in through SSO, answered no sooner than `minLatencyMs` whatever
 * the name. An unknown name gets the policy of the default organization, where AddHumanUser and
 * self-service sign-up put a name that has no organization yet, so it reads like a known one's.
 */
export function passkeyAvailability(db: Kysely<Database>, config: Config, loginName: string): Promise<{ hasPasskey: boolean; ssoRequired: boolean }> {
  return withMinimumLatency(config.availabilityMinLatencyMs, async () => {
    const [hasPasskey, policy] = await Promise.all([hasReadyPasskey(db, loginName), policyOfLogin(db, config, { loginName }, () => defaultOrgId(db))]);
    return { hasPasskey, ssoRequired: policy.sso_required };
  });
}
