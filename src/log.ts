import { pino, type Logger } from 'pino';

/** Creates the service logger: JSON lines on stdout (stderr for CLI commands whose stdout is an answer). */
export function createLogger(level: string, destination: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { service: 'passkeyd' },
      redact: { paths: ['authorization', '*.authorization', 'token', '*.token', 'access_token', '*.access_token'], censor: '[redacted]' },
    },
    pino.destination({ fd: destination, sync: false }),
  );
}

export type { Logger };
