import { createRequire } from 'node:module';

/** The all-zero AAGUID: the authenticator chose not to say what it is (attestation "none"). */
const ZERO_AAGUID = '00000000-0000-0000-0000-000000000000';

// The package is CommonJS exporting the JSON map itself; its typings describe an ESM default export.
const names = createRequire(import.meta.url)('aaguids') as Record<string, string>;

/**
 * A display name for an authenticator model ("iCloud Keychain", "YubiKey 5 Series"), from the
 * community-maintained `aaguids` list; empty when the AAGUID is unknown or all zeros.
 */
export function authenticatorNameOf(aaguid: string): string {
  if (aaguid === ZERO_AAGUID) return '';
  return names[aaguid.toLowerCase()] ?? '';
}
