import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';

/**
 * The CPU floor of one passkey login, measured here: one ES256 signature verification with a ready
 * KeyObject (the assertion) plus one ES256 JWT signature with node:crypto (the access token).
 */
export function measureFloor(iterations = 4000): { verifyMicros: number; jwtSignMicros: number; floorMicros: number } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const authData = Buffer.alloc(37, 1);
  const clientDataHash = createHash('sha256').update('{"type":"webauthn.get","challenge":"x","origin":"http://localhost:8080"}').digest();
  const signed = Buffer.concat([authData, clientDataHash]);
  const signature = sign('sha256', signed, privateKey);
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'k', typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(
    JSON.stringify({ iss: 'http://localhost:8080', sub: '01m80r27jq2s4aps00k2jsfvhr', aud: 'passkeyd', exp: 1, iat: 1, jti: 'x', sid: 'y', org: 'z' }),
  ).toString('base64url');
  const cpuMicros = (fn: () => void): number => {
    for (let i = 0; i < 200; i++) fn();
    const before = process.cpuUsage();
    for (let i = 0; i < iterations; i++) fn();
    const used = process.cpuUsage(before);
    return (used.user + used.system) / iterations;
  };
  const verifyMicros = cpuMicros(() => {
    if (!verify('sha256', signed, publicKey, signature)) throw new Error('verify failed');
  });
  const jwtSignMicros = cpuMicros(() => {
    const input = `${header}.${payload}`;
    sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  });
  const r = (n: number) => Math.round(n * 10) / 10;
  return { verifyMicros: r(verifyMicros), jwtSignMicros: r(jwtSignMicros), floorMicros: r(verifyMicros + jwtSignMicros) };
}
