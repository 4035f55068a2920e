import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { detachedKeyPair } from '../src/auth/key-pairs.js';

const run = promisify(execFile);
const modulePath = fileURLToPath(new URL('../src/auth/key-pairs.ts', import.meta.url));

describe('detachedKeyPair (signing keys, test authenticators)', () => {
  it('is the same key pair: what the detached private key signs, the original public key verifies, and the JWKs match', () => {
    for (const pair of [generateKeyPairSync('ec', { namedCurve: 'P-256' }), generateKeyPairSync('ed25519'), generateKeyPairSync('rsa', { modulusLength: 2048 })]) {
      const detached = detachedKeyPair(pair);
      const hash = pair.publicKey.asymmetricKeyType === 'ed25519' ? null : 'sha256';
      const signature = sign(hash, Buffer.from('payload'), detached.privateKey);
      expect(verify(hash, Buffer.from('payload'), pair.publicKey, signature)).toBe(true);
      expect(detached.publicKey.export({ format: 'jwk' })).toEqual(pair.publicKey.export({ format: 'jwk' }));
      expect(detached.privateKey.export({ format: 'jwk' })).toEqual(pair.privateKey.export({ format: 'jwk' }));
    }
  });

  it('lets a process generate keys and export them as JWKs through many garbage collections without hanging', async () => {
    // A tiny young generation makes a collection land inside the JWK export often: on Node 20 the same
    // loop without detachedKeyPair stopped for ever within its first 5,000 keys in nine runs of ten
    // (see src/auth/key-pairs.ts).
    const script = `
      const { generateKeyPairSync } = await import('node:crypto');
      const { detachedKeyPair } = await import(${JSON.stringify(modulePath)});
      const junk = [];
      for (let i = 0; i < 10000; i++) {
        const { privateKey, publicKey } = detachedKeyPair(generateKeyPairSync('ec', { namedCurve: 'P-256' }));
        publicKey.export({ format: 'jwk' });
        privateKey.export({ format: 'jwk' });
        for (let j = 0; j < 50; j++) junk.push({ j, s: 'x' + j });
        if (junk.length > 5000) junk.length = 0;
      }
      console.log('done');
    `;
    const { stdout } = await run(process.execPath, ['--max-semi-space-size=1', '--import', 'tsx', '--input-type=module', '-e', script], { timeout: 80_000 });
    expect(stdout.trim()).toBe('done');
  }, 100_000);
});
