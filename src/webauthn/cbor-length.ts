/**
 * The byte length of one CBOR data item (RFC 8949), found by walking its headers without decoding
 * values. SimpleWebAuthn decodes only the first item of an attestation object and ignores whatever
 * follows; passkeyd refuses such trailing bytes, so a registration response is accepted only exactly as
 * the authenticator produced it.
 */

const MAX_DEPTH = 32;

class CborLengthError extends Error {}

function need(bytes: Uint8Array, end: number): void {
  if (end > bytes.length) throw new CborLengthError('truncated CBOR');
}

/** Reads a header's argument; returns [value, offset after the header]. -1 marks an indefinite length. */
function argument(bytes: Uint8Array, at: number): [number, number] {
  need(bytes, at + 1);
  const info = bytes[at]! & 0x1f;
  if (info < 24) return [info, at + 1];
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : info === 31 ? 0 : -1;
  if (size < 0) throw new CborLengthError('reserved CBOR additional information');
  if (size === 0) return [-1, at + 1];
  need(bytes, at + 1 + size);
  let n = 0;
  // Integers and floats may use all 64 bits; as a length, a value this large fails the bounds checks.
  for (let i = 0; i < size; i++) n = n * 256 + bytes[at + 1 + i]!;
  return [n, at + 1 + size];
}

function skip(bytes: Uint8Array, at: number, depth: number): number {
  if (depth > MAX_DEPTH) throw new CborLengthError('CBOR nested too deeply');
  need(bytes, at + 1);
  const major = bytes[at]! >> 5;
  const [n, next] = argument(bytes, at);
  switch (major) {
    case 0:
    case 1:
      if (n < 0) throw new CborLengthError('indefinite-length integer');
      return next;
    case 2:
    case 3: {
      if (n >= 0) {
        need(bytes, next + n);
        return next + n;
      }
      // Indefinite-length string: definite chunks of the same major type up to the 0xff break.
      let p = next;
      for (;;) {
        need(bytes, p + 1);
        if (bytes[p] === 0xff) return p + 1;
        if (bytes[p]! >> 5 !== major) throw new CborLengthError('bad chunk in indefinite-length string');
        const [len, after] = argument(bytes, p);
        if (len < 0) throw new CborLengthError('nested indefinite-length string');
        need(bytes, after + len);
        p = after + len;
      }
    }
    case 4:
    case 5: {
      const items = major === 5 && n >= 0 ? n * 2 : n;
      let p = next;
      if (n >= 0) {
        for (let i = 0; i < items; i++) p = skip(bytes, p, depth + 1);
        return p;
      }
      for (;;) {
        need(bytes, p + 1);
        if (bytes[p] === 0xff) return p + 1;
        p = skip(bytes, p, depth + 1);
        if (major === 5) p = skip(bytes, p, depth + 1);
      }
    }
    case 6:
      return skip(bytes, next, depth + 1);
    default:
      // Simple values and floats: the header is the whole item; a lone break is malformed.
      if (n < 0) throw new CborLengthError('unexpected CBOR break');
      return next;
  }
}

/** Length in bytes of the CBOR item starting at `offset`, or `undefined` when it is malformed or truncated. */
export function cborItemLength(bytes: Uint8Array, offset = 0): number | undefined {
  try {
    return skip(bytes, offset, 0) - offset;
  } catch (err) {
    if (err instanceof CborLengthError) return undefined;
    throw err;
  }
}
