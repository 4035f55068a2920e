import { fromBinary, toJson, type JsonObject, type JsonValue, type Registry } from '@bufbuild/protobuf';
import { base64Decode } from '@bufbuild/protobuf/wire';
import { Code } from '@connectrpc/connect';

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
