import { createHmac } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { readSecret } from '../store/secrets.js';

/** A credential descriptor as it appears in `allowCredentials`. */
export interface CredentialDescriptor {
  /** base64url */
  id: string;
  transports: string[];
}

// Transport sets real passkeys report (sorted, as getTransports() returns them); a pseudo credential
// picks one so its descriptor looks like one a real authenticator produced.
const TRANSPORT_SETS: readonly string[][] = [['hybrid', 'internal'], ['internal'], ['hybrid', 'internal'], ['nfc', 'usb'], ['usb']];

/** What a login was asked for: a login name (case-insensitive) or a user id. */
export type LoginLookup = { loginName: string } | { userId: string };

/**
 * Stand-in credentials for logins without passkeys (unknown names, users without a passkey for the
 * RP ID), so the answer reveals nothing: the same 1–2 descriptors every time for the same name and RP
 * ID, and unpredictable without the server secret.
 */
export interface PseudoCredentials {
  /** A keyed digest of the lookup, stored with the session so later challenges derive the same ids. */
  digest(lookup: LoginLookup): Promise<Buffer>;
  /** The descriptors for a digest and RP ID. */
  derive(rpId: string, digest: Uint8Array): Promise<CredentialDescriptor[]>;
}

/**
 * Pseudo credentials keyed by the `pseudo_credentials` server secret (created at bootstrap and shared
 * by every instance, so all instances answer alike). The secret is read once and kept.
 */
export function createPseudoCredentials(db: Kysely<Database>): PseudoCredentials {
  let secret: Promise<Buffer> | undefined;
  const key = (): Promise<Buffer> => {
    secret ??= readSecret(db, 'pseudo_credentials').catch((err: unknown) => {
      secret = undefined;
      throw err;
    });
    return secret;
  };
  return {
    async digest(lookup) {
      const subject = 'loginName' in lookup ? `name\u0000${lookup.loginName.toLowerCase()}` : `id\u0000${lookup.userId}`;
      return createHmac('sha256', await key())
        .update(subject)
        .digest();
    },
    async derive(rpId, digest) {
      const k = await key();
      const seed = createHmac('sha256', k).update(rpId).update('\u0000').update(digest).digest();
      const count = 1 + (seed[0]! & 1);
      const out: CredentialDescriptor[] = [];
      for (let i = 0; i < count; i++) {
        const id = createHmac('sha256', k).update(seed).update(String(i)).digest();
        out.push({ id: id.toString('base64url'), transports: [...TRANSPORT_SETS[seed[1 + i]! % TRANSPORT_SETS.length]!] });
      }
      return out;
    },
  };
}
