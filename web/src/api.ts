/**
 * The pages' only way to passkeyd: gRPC-web (binary) through connect-web, against the same origin the
 * page came from. Browsers speak HTTP/1.1 (or HTTP/2 over TLS) to it; gRPC-web needs neither trailers
 * nor HTTP/2, which is why the pages use it rather than native gRPC.
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { SessionService } from '../../gen/passkeyd/session/v2/session_service_pb.js';
import { SignUpService } from '../../gen/passkeyd/user/v2/signup_service_pb.js';
import { UserService } from '../../gen/passkeyd/user/v2/user_service_pb.js';

const transport = createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true });

/** passkeyd.user.v2.UserService over gRPC-web. */
export const users: Client<typeof UserService> = createClient(UserService, transport);

/** passkeyd.session.v2.SessionService over gRPC-web. */
export const sessions: Client<typeof SessionService> = createClient(SessionService, transport);

/** passkeyd.user.v2.SignUpService over gRPC-web. */
export const signUps: Client<typeof SignUpService> = createClient(SignUpService, transport);

/** Call options carrying the signed-in user's access token. */
export function bearer(accessToken: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${accessToken}` } };
}

/** The `publicKey` member of a `{"publicKey": ...}` options Struct, or an error naming what is missing. */
export function publicKeyOf<T>(struct: JsonObject | undefined, what: string): T {
  const pk = struct?.publicKey;
  if (!pk || typeof pk !== 'object' || Array.isArray(pk)) throw new Error(`${what}: the server sent no WebAuthn options`);
  return pk as unknown as T;
}

/**
 * A browser response (RegistrationResponseJSON, AuthenticationResponseJSON) as a Struct. The round trip
 * through JSON drops `undefined` members (e.g. a missing authenticatorAttachment), which a Struct cannot hold.
 */
export function asStruct(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value)) as JsonObject;
}
