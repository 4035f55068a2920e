import { fromBinary, toJson, type JsonObject, type JsonValue, type Registry } from '@bufbuild/protobuf';
import { base64Decode } from '@bufbuild/protobuf/wire';
import { Code } from '@connectrpc/connect';

/** The usual gRPC → HTTP status mapping (as grpc-gateway and ZITADEL's REST API use). */
export function httpStatusOf(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Canceled:
      return 499;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

const CODE_BY_NAME = new Map<string, Code>(
  Object.entries(Code)
    .filter((e): e is [string, Code] => typeof e[1] === 'number')
    // Code.Canceled's Connect wire name is "canceled"; the rest are snake_case of the enum name.
    .map(([name, code]) => [name.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase(), code]),
);

/** The Connect protocol's error code string ("invalid_argument") as a numeric gRPC code. */
export function codeFromConnectName(name: unknown): Code {
  return (typeof name === 'string' && CODE_BY_NAME.get(name)) || Code.Unknown;
}

/** google.rpc.Status in its JSON form: what every REST error body looks like. */
export interface StatusJson {
  code: number;
  message: string;
  details: JsonValue[];
}

/** A google.rpc.Status JSON body for a code and message. */
export function statusBody(code: Code, message: string, details: JsonValue[] = []): StatusJson {
  return { code, message, details };
}

/**
 * Converts a Connect error detail ({type, value: base64}) to the google.protobuf.Any JSON form that
 * google.rpc.Status carries: the message's JSON fields plus "@type", or, for a type this server does not
 * know, the raw bytes as "value".
 */
export function detailToAnyJson(detail: unknown, registry: Registry): JsonValue | undefined {
  if (typeof detail !== 'object' || detail === null) return undefined;
  const { type, value } = detail as { type?: unknown; value?: unknown };
  if (typeof type !== 'string' || typeof value !== 'string') return undefined;
  const typeUrl = `type.googleapis.com/${type}`;
  const desc = registry.getMessage(type);
  if (desc) {
    try {
      const json = toJson(desc, fromBinary(desc, base64Decode(value)), { registry });
      // Well-known types with a non-object JSON form nest it under "value", as Any does.
      return typeof json === 'object' && json !== null && !Array.isArray(json) ? { '@type': typeUrl, ...(json as JsonObject) } : { '@type': typeUrl, value: json };
    } catch {
      // Fall through to the raw form.
    }
  }
  return { '@type': typeUrl, value };
}
