/** Service configuration: flags win over environment variables, which win over defaults. */
export interface Config {
  port: number;
  host: string;
  /** Separate HTTP/2-cleartext port; 0 = serve gRPC on the main port (the default). */
  grpcPort: number;
  databaseUrl: string | undefined;
  databaseSchema: string | undefined;
  databasePreparedStatements: boolean;
  /** How long opening a PostgreSQL connection, or waiting for a free one, may take. */
  databaseConnectTimeoutSeconds: number;
  /** PostgreSQL's statement_timeout for passkeyd's sessions; 0 = none. */
  databaseStatementTimeoutSeconds: number;
  /** How long an idle PostgreSQL connection stays open; 0: until the process ends. */
  databaseIdleTimeoutSeconds: number;
  /** A call's deadline when the client sends none (grpc-timeout, connect-timeout-ms). */
  callTimeoutSeconds: number;
  /** How long /readyz and the gRPC health check wait for the database before saying it is not ready. */
  readinessTimeoutSeconds: number;
  dataDir: string;
  rpIds: string[];
  rpName: string;
  origins: string[];
  issuer: string;
  audience: string;
  tokenTtlSeconds: number;
  challengeTtlSeconds: number;
  sessionTtlSeconds: number;
  registrationCodeTtlSeconds: number;
  attestation: 'none' | 'indirect' | 'direct' | 'enterprise';
  userVerification: 'required' | 'preferred' | 'discouraged';
  signCountPolicy: 'reject' | 'log';
  /** Request JSON nested deeper than this is refused before it is parsed, on every protocol. */
  maxJsonDepth: number;
  logLevel: string;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  workers: number;
  shutdownGraceSeconds: number;
  linkWebhookUrl: string | undefined;
  /** A FIDO MDS3 BLOB (JWT) file: what login policies with require_trusted_attestation trust. */
  fidoMdsFile: string | undefined;
  /** PEM file of the root the BLOB's signing chain must end in; unset: FIDO's own (built into SimpleWebAuthn). */
  fidoMdsRoot: string | undefined;
  rateLimitPerMinute: number;
  availabilityRateLimitPerMinute: number;
  availabilityMinLatencyMs: number;
  /** Calls of the OAuth endpoints per window, per client address and per machine user. */
  oauthRateLimitPerMinute: number;
  /** The window the rate limits count in (the limits are "per minute" at the default). */
  rateLimitWindowSeconds: number;
}

/** One configuration setting: its variable, flag and parser. */
interface Setting<K extends keyof Config> {
  key: K;
  env: string;
  flag: string;
  parse: (raw: string) => Config[K];
  doc: string;
}

export class ConfigError extends Error {}

const int =
  (name: string, min: number, max: number) =>
  (raw: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
    return n;
  };

const list = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Parses "15m", "1h", "30s", "2d" or plain seconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+)\s*(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) throw new ConfigError(`invalid duration "${raw}" (use e.g. 30s, 15m, 1h, 7d)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const seconds = unit === 'ms' ? n / 1000 : unit === 's' ? n : unit === 'm' ? n * 60 : unit === 'h' ? n * 3600 : n * 86400;
  if (seconds <= 0) throw new ConfigError(`duration "${raw}" must be positive`);
  return seconds;
}

const oneOf =
  <T extends string>(name: string, values: readonly T[]) =>
  (raw: string): T => {
    if (!(values as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    return raw as T;
  };

const bool =
  (name: string) =>
  (raw: string): boolean => {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(`${name} must be true or false, got "${raw}"`);
  };

const str = (raw: string) => raw;
/** A duration, or 0 for none. */
const durationOrOff = (raw: string): number => (/^0+\s*(ms|s|m|h|d)?$/.test(raw.trim()) ? 0 : parseDuration(raw));
const schemaName = (raw: string): string | undefined => {
  if (!raw) return undefined;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) throw new ConfigError(`PASSKEYD_DATABASE_SCHEMA must be a lower-case SQL identifier, got "${raw}"`);
  return raw;
};
const optStr = (raw: string): string | undefined => raw || undefined;

/** Every setting, in the order the README's configuration table lists them. */
export const settings: Setting<keyof Config>[] = [
  { key: 'port', env: 'PASSKEYD_PORT', flag: 'port', parse: int('PASSKEYD_PORT', 0, 65535), doc: 'listening port (gRPC, gRPC-web, Connect, REST, pages)' },
  { key: 'host', env: 'PASSKEYD_HOST', flag: 'host', parse: str, doc: 'listening address' },
  {
    key: 'grpcPort',
    env: 'PASSKEYD_GRPC_PORT',
    flag: 'grpc-port',
    parse: int('PASSKEYD_GRPC_PORT', 0, 65535),
    doc: 'optional extra HTTP/2-only port (0 = none; gRPC works on the main port)',
  },
  { key: 'databaseUrl', env: 'DATABASE_URL', flag: 'database-url', parse: optStr, doc: 'PostgreSQL URL; unset means embedded PGlite' },
  {
    key: 'databasePreparedStatements',
    env: 'PASSKEYD_DATABASE_PREPARED_STATEMENTS',
    flag: 'database-prepared-statements',
    parse: bool('PASSKEYD_DATABASE_PREPARED_STATEMENTS'),
    doc: 'prepare each statement once per PostgreSQL connection (turn off behind a pooler in transaction mode)',
  },
  {
    key: 'databaseSchema',
    env: 'PASSKEYD_DATABASE_SCHEMA',
    flag: 'database-schema',
    parse: schemaName,
    doc: "PostgreSQL schema for passkeyd's tables (created if missing); unset means the default search path",
  },
  {
    key: 'databaseConnectTimeoutSeconds',
    env: 'PASSKEYD_DATABASE_CONNECT_TIMEOUT',
    flag: 'database-connect-timeout',
    parse: parseDuration,
    doc: 'how long opening a PostgreSQL connection, or waiting for a free one in the pool, may take',
  },
  {
    key: 'databaseStatementTimeoutSeconds',
    env: 'PASSKEYD_DATABASE_STATEMENT_TIMEOUT',
    flag: 'database-statement-timeout',
    parse: durationOrOff,
    doc: "PostgreSQL's statement_timeout for passkeyd's connections (0 = none); a query unanswered 1s longer gives up its connection",
  },
  {
    key: 'databaseIdleTimeoutSeconds',
    env: 'PASSKEYD_DATABASE_IDLE_TIMEOUT',
    flag: 'database-idle-timeout',
    parse: durationOrOff,
    doc: 'how long a PostgreSQL connection may sit idle in the pool before it is closed (0 = kept open)',
  },
  { key: 'dataDir', env: 'PASSKEYD_DATA_DIR', flag: 'data-dir', parse: str, doc: 'PGlite data directory' },
  { key: 'rpIds', env: 'PASSKEYD_RP_ID', flag: 'rp-id', parse: list, doc: 'WebAuthn relying-party id(s), comma-separated, first is default' },
  { key: 'rpName', env: 'PASSKEYD_RP_NAME', flag: 'rp-name', parse: str, doc: 'relying-party display name' },
  { key: 'origins', env: 'PASSKEYD_ORIGINS', flag: 'origins', parse: list, doc: 'allowed WebAuthn/CORS origins, comma-separated' },
  { key: 'issuer', env: 'PASSKEYD_ISSUER', flag: 'issuer', parse: str, doc: 'JWT `iss` and discovery base URL' },
  { key: 'audience', env: 'PASSKEYD_AUDIENCE', flag: 'audience', parse: str, doc: 'JWT `aud` of issued access tokens' },
  { key: 'tokenTtlSeconds', env: 'PASSKEYD_TOKEN_TTL', flag: 'token-ttl', parse: parseDuration, doc: 'access token lifetime' },
  { key: 'challengeTtlSeconds', env: 'PASSKEYD_CHALLENGE_TTL', flag: 'challenge-ttl', parse: parseDuration, doc: 'ceremony challenge lifetime' },
  { key: 'sessionTtlSeconds', env: 'PASSKEYD_SESSION_TTL', flag: 'session-ttl', parse: parseDuration, doc: 'session lifetime' },
  { key: 'registrationCodeTtlSeconds', env: 'PASSKEYD_REGISTRATION_CODE_TTL', flag: 'registration-code-ttl', parse: parseDuration, doc: 'passkey registration code lifetime' },
  {
    key: 'attestation',
    env: 'PASSKEYD_ATTESTATION',
    flag: 'attestation',
    parse: oneOf('PASSKEYD_ATTESTATION', ['none', 'indirect', 'direct', 'enterprise'] as const),
    doc: 'attestation conveyance asked for at registration',
  },
  {
    key: 'userVerification',
    env: 'PASSKEYD_USER_VERIFICATION',
    flag: 'user-verification',
    parse: oneOf('PASSKEYD_USER_VERIFICATION', ['required', 'preferred', 'discouraged'] as const),
    doc: 'default user verification requirement',
  },
  {
    key: 'signCountPolicy',
    env: 'PASSKEYD_SIGN_COUNT_POLICY',
    flag: 'sign-count-policy',
    parse: oneOf('PASSKEYD_SIGN_COUNT_POLICY', ['reject', 'log'] as const),
    doc: 'a sign counter that did not increase: refuse the login, or only record it',
  },
  {
    key: 'maxJsonDepth',
    env: 'PASSKEYD_MAX_JSON_DEPTH',
    flag: 'max-json-depth',
    parse: int('PASSKEYD_MAX_JSON_DEPTH', 8, 1000),
    doc: 'request JSON nested deeper than this (objects and arrays) is refused before parsing, on every protocol',
  },
  {
    key: 'logLevel',
    env: 'PASSKEYD_LOG_LEVEL',
    flag: 'log-level',
    parse: oneOf('PASSKEYD_LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    doc: 'pino log level',
  },
  { key: 'tlsCert', env: 'PASSKEYD_TLS_CERT', flag: 'tls-cert', parse: optStr, doc: 'PEM certificate file; with the key, serves TLS (ALPN h2 + http/1.1)' },
  { key: 'tlsKey', env: 'PASSKEYD_TLS_KEY', flag: 'tls-key', parse: optStr, doc: 'PEM private key file' },
  {
    key: 'workers',
    env: 'PASSKEYD_WORKERS',
    flag: 'workers',
    parse: int('PASSKEYD_WORKERS', 0, 256),
    doc: 'worker processes for `serve` with PostgreSQL (0 = one per core, one fewer when PostgreSQL is on this machine); PGlite always runs one',
  },
  { key: 'shutdownGraceSeconds', env: 'PASSKEYD_SHUTDOWN_GRACE', flag: 'shutdown-grace', parse: parseDuration, doc: 'how long SIGTERM waits for in-flight requests' },
  {
    key: 'callTimeoutSeconds',
    env: 'PASSKEYD_CALL_TIMEOUT',
    flag: 'call-timeout',
    parse: parseDuration,
    doc: "a call's deadline when the client sends none (gRPC `grpc-timeout`, Connect `connect-timeout-ms`)",
  },
  {
    key: 'readinessTimeoutSeconds',
    env: 'PASSKEYD_READINESS_TIMEOUT',
    flag: 'readiness-timeout',
    parse: parseDuration,
    doc: 'how long /readyz and the gRPC health check wait for the database before answering "not ready"',
  },
  {
    key: 'linkWebhookUrl',
    env: 'PASSKEYD_LINK_WEBHOOK_URL',
    flag: 'link-webhook-url',
    parse: optStr,
    doc: 'HTTP endpoint that receives registration links to deliver (`send_link`)',
  },
  {
    key: 'fidoMdsFile',
    env: 'PASSKEYD_FIDO_MDS_FILE',
    flag: 'fido-mds-file',
    parse: optStr,
    doc: 'FIDO Metadata Service (MDS3) BLOB file, read at start; trusted attestation checks against it',
  },
  {
    key: 'fidoMdsRoot',
    env: 'PASSKEYD_FIDO_MDS_ROOT',
    flag: 'fido-mds-root',
    parse: optStr,
    doc: "PEM root certificate the BLOB's signature must chain to (unset: the FIDO Alliance's root)",
  },
  {
    key: 'rateLimitPerMinute',
    env: 'PASSKEYD_RATE_LIMIT',
    flag: 'rate-limit',
    parse: int('PASSKEYD_RATE_LIMIT', 1, 1_000_000_000),
    doc: 'requests per minute per client address on endpoints callable without a token',
  },
  {
    key: 'rateLimitWindowSeconds',
    env: 'PASSKEYD_RATE_LIMIT_WINDOW',
    flag: 'rate-limit-window',
    parse: parseDuration,
    doc: 'the window the rate limits count in (the limits above and below are per this window)',
  },
  {
    key: 'availabilityRateLimitPerMinute',
    env: 'PASSKEYD_AVAILABILITY_RATE_LIMIT',
    flag: 'availability-rate-limit',
    parse: int('PASSKEYD_AVAILABILITY_RATE_LIMIT', 1, 1_000_000_000),
    doc: 'CheckPasskeyAvailability calls per minute per client address',
  },
  {
    key: 'availabilityMinLatencyMs',
    env: 'PASSKEYD_AVAILABILITY_MIN_LATENCY_MS',
    flag: 'availability-min-latency-ms',
    parse: int('PASSKEYD_AVAILABILITY_MIN_LATENCY_MS', 0, 10_000),
    doc: 'CheckPasskeyAvailability answers no sooner than this',
  },
  {
    key: 'oauthRateLimitPerMinute',
    env: 'PASSKEYD_OAUTH_RATE_LIMIT',
    flag: 'oauth-rate-limit',
    parse: int('PASSKEYD_OAUTH_RATE_LIMIT', 1, 1_000_000_000),
    doc: 'calls of /oauth/v2/token and /oauth/v2/introspect per window, per client address and per machine user',
  },
];

/** The defaults: `npm start` runs with these and no set-up. */
const defaults: Config = {
  port: 8080,
  host: '127.0.0.1',
  grpcPort: 0,
  databaseUrl: undefined,
  databaseSchema: undefined,
  databasePreparedStatements: true,
  databaseConnectTimeoutSeconds: 5,
  databaseStatementTimeoutSeconds: 10,
  databaseIdleTimeoutSeconds: 10,
  callTimeoutSeconds: 10,
  readinessTimeoutSeconds: 0.8,
  dataDir: './data',
  rpIds: ['localhost'],
  rpName: 'passkeyd',
  origins: ['http://localhost:8080'],
  issuer: 'http://localhost:8080',
  audience: 'passkeyd',
  tokenTtlSeconds: 15 * 60,
  challengeTtlSeconds: 5 * 60,
  sessionTtlSeconds: 24 * 3600,
  registrationCodeTtlSeconds: 3600,
  attestation: 'none',
  userVerification: 'required',
  signCountPolicy: 'reject',
  maxJsonDepth: 64,
  logLevel: 'info',
  tlsCert: undefined,
  tlsKey: undefined,
  workers: 0,
  shutdownGraceSeconds: 10,
  linkWebhookUrl: undefined,
  fidoMdsFile: undefined,
  fidoMdsRoot: undefined,
  rateLimitPerMinute: 600,
  availabilityRateLimitPerMinute: 10,
  availabilityMinLatencyMs: 100,
  oauthRateLimitPerMinute: 120,
  rateLimitWindowSeconds: 60,
};

/**
 * Builds the configuration from the environment and `--flag value` / `--flag=value` pairs.
 * Unknown flags are an error, so a typo never silently falls back to a default.
 */
export function loadConfig(flags: Record<string, string> = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const config: Config = { ...defaults };
  const known = new Set(settings.map((s) => s.flag));
  for (const name of Object.keys(flags)) {
    if (!known.has(name)) throw new ConfigError(`unknown option --${name}`);
  }
  for (const s of settings) {
    const raw = flags[s.flag] ?? env[s.env];
    if (raw === undefined || (raw === '' && s.parse !== optStr && s.parse !== schemaName)) continue;
    (config as unknown as Record<string, unknown>)[s.key] = s.parse(raw);
  }
  if (config.rpIds.length === 0) throw new ConfigError('PASSKEYD_RP_ID needs at least one relying-party id');
  if (config.origins.length === 0) throw new ConfigError('PASSKEYD_ORIGINS needs at least one origin');
  for (const o of config.origins) {
    try {
      new URL(o);
    } catch {
      throw new ConfigError(`PASSKEYD_ORIGINS: "${o}" is not a URL`);
    }
  }
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) throw new ConfigError('PASSKEYD_TLS_CERT and PASSKEYD_TLS_KEY go together');
  return config;
}
