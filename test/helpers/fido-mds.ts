/**
 * A FIDO Metadata Service of the tests' own: a BLOB-signing root and signer, an attestation root with
 * an attestation certificate under it (and one under another CA), and MDS3 BLOBs (JWTs) signed with
 * jose, listing metadata statements for chosen AAGUIDs with chosen statuses. Certificates are made
 * with @peculiar/x509 on node:crypto's WebCrypto.
 */
import { KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { importPKCS8, SignJWT } from 'jose';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const notBefore = new Date(Date.now() - 86400_000);
const notAfter = new Date(Date.now() + 365 * 86400_000);
let serial = 1;

interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function keys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

/** A self-signed CA. */
async function rootCa(name: string): Promise<Issued> {
  const k = await keys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys: k,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { cert, keys: k };
}

/** An end-entity certificate issued by `ca`. */
async function issue(ca: Issued, subject: string): Promise<Issued> {
  const k = await keys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: k.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  return { cert, keys: k };
}

const der = (c: x509.X509Certificate) => new Uint8Array(c.rawData);

/** An authenticator's attestation certificate and the key that signs with it. */
interface AttestationCertificate {
  privateKey: KeyObject;
  chain: Uint8Array[];
}

export interface TestMds {
  /** PEM of the root the BLOBs chain to (PASSKEYD_FIDO_MDS_ROOT). */
  rootPem: string;
  /** A BLOB listing these AAGUIDs, each with its status reports, all trusting the attestation root. */
  blob(entries: { aaguid: string; statuses: string[] }[], o?: { signer?: 'own' | 'stranger' }): Promise<string>;
  /** An attestation certificate under the attestation root the BLOB's statements name. */
  chained: AttestationCertificate;
  /** One under a CA no statement names. */
  unchained: AttestationCertificate;
}

function statement(aaguid: string, attestationRoot: x509.X509Certificate) {
  return {
    aaguid,
    description: `passkeyd test authenticator ${aaguid}`,
    authenticatorVersion: 1,
    protocolFamily: 'fido2',
    schema: 3,
    upv: [{ major: 1, minor: 0 }],
    authenticationAlgorithms: ['secp256r1_ecdsa_sha256_raw'],
    publicKeyAlgAndEncodings: ['cose'],
    attestationTypes: ['basic_full'],
    userVerificationDetails: [[{ userVerificationMethod: 'presence_internal' }]],
    keyProtection: ['hardware'],
    matcherProtection: ['on_chip'],
    attachmentHint: ['internal'],
    tcDisplay: [],
    attestationRootCertificates: [Buffer.from(attestationRoot.rawData).toString('base64')],
  };
}

/** Builds the tests' MDS: roots, signer and attestation certificates. */
export async function createTestMds(): Promise<TestMds> {
  const mdsRoot = await rootCa('CN=passkeyd test MDS root, O=passkeyd tests, C=US');
  const signer = await issue(mdsRoot, 'CN=passkeyd test MDS signer, O=passkeyd tests, C=US');
  const strangerRoot = await rootCa('CN=someone else, O=elsewhere, C=US');
  const stranger = await issue(strangerRoot, 'CN=someone else signer, O=elsewhere, C=US');
  const attestationRoot = await rootCa('CN=passkeyd test attestation root, O=Test Vendor, C=US');
  const otherRoot = await rootCa('CN=unlisted attestation root, O=Other Vendor, C=US');
  const attestationSubject = (o: string) => `C=US, O=${o}, OU=Authenticator Attestation, CN=Test Authenticator`;
  const chainedCert = await issue(attestationRoot, attestationSubject('Test Vendor'));
  const unchainedCert = await issue(otherRoot, attestationSubject('Other Vendor'));
  const attestation = (i: Issued): AttestationCertificate => ({ privateKey: KeyObject.from(i.keys.privateKey), chain: [der(i.cert)] });

  async function sign(payload: object, by: Issued): Promise<string> {
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', by.keys.privateKey)).toString('base64');
    const key = await importPKCS8(`-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----`, 'ES256');
    return new SignJWT(payload as Record<string, unknown>).setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [Buffer.from(by.cert.rawData).toString('base64')] }).sign(key);
  }

  return {
    rootPem: mdsRoot.cert.toString('pem'),
    chained: attestation(chainedCert),
    unchained: attestation(unchainedCert),
    async blob(entries, o = {}) {
      const nextUpdate = new Date(Date.now() + 30 * 86400_000).toISOString().slice(0, 10);
      const payload = {
        legalHeader: 'passkeyd tests',
        no: 1,
        nextUpdate,
        entries: entries.map((e) => ({
          aaguid: e.aaguid,
          metadataStatement: statement(e.aaguid, attestationRoot.cert),
          statusReports: e.statuses.map((status) => ({ status, effectiveDate: '2026-01-01' })),
          timeOfLastStatusChange: '2026-01-01',
        })),
      };
      return sign(payload, o.signer === 'stranger' ? stranger : signer);
    },
  };
}
