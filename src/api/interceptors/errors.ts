import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { DomainError, type DomainErrorKind } from '../../domain/errors.js';
import type { Logger } from '../../log.js';

const CODES: Record<DomainErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  failed_precondition: Code.FailedPrecondition,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  resource_exhausted: Code.ResourceExhausted,
  aborted: Code.Aborted,
  unavailable: Code.Unavailable,
};

// Node socket errors and PostgreSQL classes 08 (connection), 53 (resources), 57P (shutdown).
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when an error means the database cannot be reached right now. */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (UNAVAILABLE_ERRNO.has(code) || code.startsWith('08') || code.startsWith('57P') || code.startsWith('53')) return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(msg);
}

/** Maps any error to a ConnectError whose message is safe to show. Unknown errors become INTERNAL and are logged. */
export function toConnectError(err: unknown, log: Logger, procedure: string): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof DomainError) {
    const ce = new ConnectError(err.message, CODES[err.kind]);
    if (err.retryAfterSeconds !== undefined) ce.metadata.set('retry-after', String(Math.ceil(err.retryAfterSeconds)));
    return ce;
  }
  if (isDatabaseUnavailable(err)) {
    log.warn({ procedure, err: (err as Error).message }, 'database unavailable');
    return new ConnectError('the database is unavailable; retry later', Code.Unavailable);
  }
  log.error({ procedure, err }, 'internal error');
  return new ConnectError('internal error', Code.Internal);
}

/** Turns domain errors and unexpected failures into ConnectErrors; no stack trace leaves the process. */
export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      throw toConnectError(err, log, req.method.name);
    }
  };
}
