import { isoCBOR } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import { cborItemLength } from '../src/webauthn/cbor-length.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'));

describe('cborItemLength (RFC 8949 examples)', () => {
  it.each([
    ['00', 1], // 0
    ['1903e8', 3], // 1000
    ['3863', 2], // -100
    ['1b000000e8d4a51000', 9], // 1000000000000
    ['1bffffffffffffffff', 9], // 18446744073709551615
    ['f93c00', 3], // 1.0 (half)
    ['fb3ff199999999999a', 9], // 1.1 (double)
    ['f5', 1], // true
    ['f818', 2], // simple(24)
    ['c074323031332d30332d32315432303a30343a30305a', 22], // tag 0 + text
    ['4401020304', 5], // h'01020304'
    ['6449455446', 5], // "IETF"
    ['83010203', 4], // [1, 2, 3]
    ['a26161016162820203', 9], // {"a": 1, "b": [2, 3]}
    ['5f42010243030405ff', 9], // (_ h'0102', h'030405')
    ['7f657374726561646d696e67ff', 13], // (_ "strea", "ming")
    ['9f018202039f0405ffff', 10], // [_ 1, [2, 3], [_ 4, 5]]
    ['bf61610161629f0203ffff', 11], // {_ "a": 1, "b": [_ 2, 3]}
  ])('%s is %i bytes, also with bytes after it', (h, n) => {
    expect(cborItemLength(hex(h))).toBe(n);
    expect(cborItemLength(hex(`${h}00ff`))).toBe(n);
  });

  it.each([
    ['', 'empty'],
    ['19 03', 'truncated argument'],
    ['44 0102', 'truncated byte string'],
    ['83 0102', 'array missing an item'],
    ['a2 6161 01', 'map missing a pair'],
    ['5f 42 0102', 'indefinite string without break'],
    ['5f 61 61 ff', 'text chunk in a byte string'],
    ['1c', 'reserved additional information'],
    ['ff', 'lone break'],
    ['1f', 'indefinite integer'],
    ['5b ffffffffffffffff', 'absurd length'],
    ['9b ffffffffffffffff 00', 'absurd item count'],
    [`${'81'.repeat(40)}00`, 'nested too deeply'],
  ])('%s (%s) is malformed', (h) => {
    expect(cborItemLength(hex(h))).toBeUndefined();
  });

  it('agrees with the encoder SimpleWebAuthn uses', () => {
    const value = new Map<string, Parameters<typeof isoCBOR.encode>[0]>([
      ['fmt', 'packed'],
      [
        'attStmt',
        new Map<string, Parameters<typeof isoCBOR.encode>[0]>([
          ['alg', -7],
          ['sig', new Uint8Array(71)],
        ]),
      ],
      ['authData', new Uint8Array(164)],
    ]);
    const encoded = isoCBOR.encode(value);
    expect(cborItemLength(encoded)).toBe(encoded.length);
  });
});
