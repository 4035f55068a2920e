import { readFile } from 'node:fs/promises';
import { MetadataService, SettingsService } from '@simplewebauthn/server';
import { verifyMDSBlob } from '@simplewebauthn/server/helpers';
import { denied } from '../errors.js';

/**
 * Statuses that make an authenticator untrusted (FIDO MDS3 AuthenticatorStatus): revoked, and every
 * kind of compromise SimpleWebAuthn also refuses.
 */
const REFUSED_STATUSES = new Set(['REVOKED', 'USER_VERIFICATION_BYPASS', 'ATTESTATION_KEY_COMPROMISE', 'USER_KEY_REMOTE_COMPROMISE', 'USER_KEY_PHYSICAL_COMPROMISE']);

/** What a FIDO MDS3 BLOB says about authenticators, for trusted-attestation checks. */
export interface TrustedMetadata {
  /** Refuses (PERMISSION_DENIED) a registration whose attestation the BLOB does not vouch for. */
  checkTrusted(credential: { aaguid: string; attestationFormat: string; attestationCertified: boolean }): void;
}

const NOT_TRUSTED = "this authenticator's attestation is not trusted by the organization's login policy (require_trusted_attestation)";

/** Without a BLOB nothing is trusted: a policy that requires trusted attestation refuses every registration. */
export const NO_METADATA: TrustedMetadata = {
  checkTrusted() {
    throw denied(`${NOT_TRUSTED}: no FIDO metadata is configured (PASSKEYD_FIDO_MDS_FILE)`);
  },
};

/**
 * Reads and verifies an MDS3 BLOB (a JWT whose x5c chain must end in `rootPem`, or in FIDO's own root
 * that SimpleWebAuthn carries), with SimpleWebAuthn's verifyMDSBlob, and hands its metadata statements
 * to SimpleWebAuthn's MetadataService: from then on a registration whose attestation names a listed
 * AAGUID must chain to that statement's attestation roots, for every organization. Nothing is
 * downloaded; the file is read once, at start. Throws (start-up fails) on a BLOB that does not verify.
 */
export async function loadTrustedMetadata(file: string, rootPem?: string | undefined): Promise<TrustedMetadata> {
  if (rootPem !== undefined) SettingsService.setRootCertificates({ identifier: 'mds', certificates: [rootPem] });
  const blob = (await readFile(file, 'utf8')).trim();
  let payload: Awaited<ReturnType<typeof verifyMDSBlob>>['payload'];
  try {
    ({ payload } = await verifyMDSBlob(blob));
  } catch (err) {
    const cause = err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err);
    throw new Error(`PASSKEYD_FIDO_MDS_FILE ${file}: the BLOB does not verify (${cause})`);
  }
  const statuses = new Map<string, string[]>();
  const statements = [];
  for (const entry of payload.entries) {
    if (!entry.aaguid || !entry.metadataStatement) continue;
    statuses.set(
      entry.aaguid.toLowerCase(),
      (entry.statusReports ?? []).map((r) => r.status),
    );
    statements.push(entry.metadataStatement);
  }
  // Permissive: an AAGUID the BLOB does not list is not refused for everyone, only where trust is required.
  await MetadataService.initialize({ mdsServers: [], statements, verificationMode: 'permissive' });
  return {
    checkTrusted(credential) {
      const reported = statuses.get(credential.aaguid.toLowerCase());
      if (reported === undefined) throw denied(`${NOT_TRUSTED}: AAGUID ${credential.aaguid} is not in the FIDO metadata`);
      const refused = reported.find((s) => REFUSED_STATUSES.has(s));
      if (refused) throw denied(`${NOT_TRUSTED}: the FIDO metadata reports this authenticator ${refused}`);
      // Only an attestation certificate (x5c) is checked against the statement's roots; "none" and self
      // attestation prove nothing about the authenticator.
      if (credential.attestationFormat === 'none' || !credential.attestationCertified) {
        throw denied(`${NOT_TRUSTED}: the registration carries no attestation certificate (format "${credential.attestationFormat}")`);
      }
    },
  };
}
