/**
 * Unpadded base64url of bytes, as WebAuthn's JSON carries them: of the view's own bytes only (a stored
 * byte column is a Buffer from pg and a Uint8Array from PGlite, either possibly a view into a larger buffer).
 */
export function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}
