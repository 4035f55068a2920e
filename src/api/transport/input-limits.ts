import { Code, ConnectError } from '@connectrpc/connect';
import type { Compression } from '@connectrpc/connect/protocol';

/**
 * Input limits that hold before anything is parsed, the same on every protocol: JSON nesting depth and
 * unpaired surrogate escapes (a cheap byte scan, so such a body never reaches a recursive parser or
 * serializer, nor an error message), and decompression failures as the client's fault.
 */

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const U = 0x75;
const LONE_SURROGATE = 'request JSON has an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF), which no UTF-8 string can hold';

const hexAt = (bytes: Uint8Array, i: number): number => {
  let v = 0;
  for (let k = i; k < i + 4; k++) {
    const c = bytes[k];
    const d = c === undefined ? -1 : c >= 0x30 && c <= 0x39 ? c - 0x30 : (c | 0x20) >= 0x61 && (c | 0x20) <= 0x66 ? (c | 0x20) - 0x57 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
};
const isHigh = (u: number) => u >= 0xd800 && u <= 0xdbff;
const isLow = (u: number) => u >= 0xdc00 && u <= 0xdfff;

/**
 * What makes JSON text unfit to parse, checked before it is parsed, or undefined: nesting of objects and
 * arrays deeper than `maxDepth` (a recursive parser or JSON.stringify would overflow the stack), or a
 * `\uD800`-style escape of an unpaired UTF-16 surrogate (no UTF-8 string, so no protobuf string, can
 * hold one; and an error message quoting it cannot be percent-encoded into grpc-message, which left gRPC
 * calls unanswered). One pass over the bytes, no copy; brackets inside strings do not count. Not a
 * validator: other malformed JSON is the parser's to refuse.
 */
export function jsonProblem(bytes: Uint8Array, maxDepth: number): string | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === QUOTE) inString = false;
      else if (b === BACKSLASH) {
        if (bytes[i + 1] === U) {
          const unit = hexAt(bytes, i + 2);
          if (isLow(unit)) return LONE_SURROGATE;
          if (isHigh(unit)) {
            if (bytes[i + 6] !== BACKSLASH || bytes[i + 7] !== U || !isLow(hexAt(bytes, i + 8))) return LONE_SURROGATE;
            i += 6;
          }
        }
        i++;
      }
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > maxDepth) return `request JSON is nested deeper than ${maxDepth} levels`;
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return undefined;
}

/**
 * A TextDecoder for Connect's JSON serialization (the `textDecoder` of its JSON options), which every
 * JSON request of Connect, gRPC-web, gRPC and the fast path goes through: it refuses what
 * {@link jsonProblem} finds before the text is parsed. Connect answers what its decoder throws as
 * INVALID_ARGUMENT.
 */
export function checkedJsonDecoder(maxDepth: number): { decode(data: Uint8Array): string } {
  const utf8 = new TextDecoder();
  return {
    decode(data) {
      const problem = jsonProblem(data, maxDepth);
      if (problem) throw new Error(problem);
      return utf8.decode(data);
    },
  };
}

/**
 * A compression whose decompression failures are the client's: bytes that do not decompress (a corrupt
 * or truncated stream) are INVALID_ARGUMENT, not INTERNAL; too much after decompression stays
 * RESOURCE_EXHAUSTED. connect-node maps only zlib's "data error" to INVALID_ARGUMENT, so a truncated gzip
 * stream ("unexpected end of file") would otherwise be answered as a server failure.
 */
export function clientFaultCompression(compression: Compression): Compression {
  return {
    name: compression.name,
    compress: (bytes) => compression.compress(bytes),
    decompress: (bytes, readMaxBytes) =>
      compression.decompress(bytes, readMaxBytes).catch((err: unknown) => {
        const ce = ConnectError.from(err);
        if (ce.code === Code.ResourceExhausted || ce.code === Code.InvalidArgument) throw ce;
        throw new ConnectError(`the body is not valid ${compression.name}: ${ce.rawMessage}`, Code.InvalidArgument, undefined, undefined, err);
      }),
  };
}
