import { Code, ConnectError } from '@connectrpc/connect';

/**
 * passkeyd's error vocabulary, on the bottom floor so every layer can throw it: the kinds of failure
 * whose message is safe to show, one table from kind to Connect code, one from Connect code to HTTP
 * status, and the google.rpc.Status JSON body every plain-HTTP error answer carries. Every writer of an
 * error (the interceptors, the unary fast path, the REST transcoder, the public routes) uses these.
 */
export type ErrorKind =
  | 'invalid_argument'
  | 'failed_precondition'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'resource_exhausted'
  | 'aborted'
  | 'unavailable';

/** A failure whose message is safe to show to the caller. */
export class PasskeydError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** Seconds after which a retry may succeed (rate limits). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'PasskeydError';
  }
}

export const notFound = (what: string) => new PasskeydError('not_found', `${what} not found`);
export const invalid = (message: string) => new PasskeydError('invalid_argument', message);
export const precondition = (message: string) => new PasskeydError('failed_precondition', message);
export const alreadyExists = (message: string) => new PasskeydError('already_exists', message);
export const denied = (message: string) => new PasskeydError('permission_denied', message);
export const unauthenticated = (message: string) => new PasskeydError('unauthenticated', message);
export const unavailable = (message: string) => new PasskeydError('unavailable', message);
export const aborted = (message: string) => new PasskeydError('aborted', message);
export const exhausted = (message: string, retryAfterSeconds: number) => new PasskeydError('resource_exhausted', message, retryAfterSeconds);

/** The Connect (gRPC) code of each kind. */
const CODE_OF_KIND: Readonly<Record<ErrorKind, Code>> = {
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

/** The usual gRPC → HTTP status mapping (as grpc-gateway and ZITADEL's REST API use). */
const HTTP_STATUS_OF_CODE: Readonly<Partial<Record<Code, number>>> = {
  [Code.InvalidArgument]: 400,
  [Code.FailedPrecondition]: 400,
  [Code.OutOfRange]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.Aborted]: 409,
  [Code.ResourceExhausted]: 429,
  [Code.Canceled]: 499,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};

/**
 * The HTTP status of a request refused for its size, on every protocol that has one (REST, Connect, plain
 * HTTP): 413, with the code RESOURCE_EXHAUSTED (gRPC and gRPC-web carry the code alone), not the 429 of a
 * rate limit: retrying the same request will not help.
 */
export const HTTP_STATUS_TOO_LARGE = 413;

/** The HTTP status of a request whose request line or headers exceed the parser's limit (16 KiB). */
export const HTTP_STATUS_HEADERS_TOO_LARGE = 431;

/** The HTTP status a REST or plain-HTTP answer carries for a Connect code (500 for the rest). */
export function httpStatusOf(code: Code): number {
  return HTTP_STATUS_OF_CODE[code] ?? 500;
}

/** google.rpc.Status in its JSON form: what every REST and plain-HTTP error body looks like. */
export interface StatusJson {
  code: number;
  message: string;
  details: unknown[];
}

/** A google.rpc.Status JSON body for a code and message. */
export function statusBody(code: Code, message: string, details: unknown[] = []): StatusJson {
  return { code, message, details };
}

// Node socket errors and PostgreSQL classes 08 (connection), 53 (resources), 57P (shutdown).
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** True when an error means the database cannot be reached right now. */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (UNAVAILABLE_ERRNO.has(code) || code.startsWith('08') || code.startsWith('57P') || code.startsWith('53')) return true;
  // 57014: a statement cancelled, by statement_timeout (PASSKEYD_DATABASE_STATEMENT_TIMEOUT) or an operator.
  if (code === '57014') return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(msg);
}

/**
 * True when PostgreSQL refused a text value for a character it cannot store: 22P05 (U+0000 in jsonb) and
 * 22021 (a NUL byte, or a byte sequence invalid in UTF-8, in text). passkeyd's own values never hold one,
 * so it came from the request: validation refuses NUL in every proto string, and this is the net for
 * client text inside other values (WebAuthn JSON, say) that a check missed.
 */
function isUnstorableText(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '22P05' || code === '22021';
}

/** The safe message of an UNAVAILABLE answer while the database is away. */
const DATABASE_UNAVAILABLE = 'the database is unavailable; retry later';

/**
 * The ConnectError a failure is answered with, when it is one the vocabulary knows: a ConnectError as
 * it is, a {@link PasskeydError} by its kind (with `retry-after` for rate limits), a database outage as
 * UNAVAILABLE, text the database cannot store as INVALID_ARGUMENT. Undefined for anything else: a bug,
 * which the caller logs and answers as INTERNAL.
 */
export function knownConnectError(err: unknown): ConnectError | undefined {
  if (err instanceof ConnectError) return err;
  if (err instanceof PasskeydError) {
    const ce = new ConnectError(err.message, CODE_OF_KIND[err.kind]);
    if (err.retryAfterSeconds !== undefined) ce.metadata.set('retry-after', String(Math.ceil(err.retryAfterSeconds)));
    return ce;
  }
  if (isDatabaseUnavailable(err)) return new ConnectError(DATABASE_UNAVAILABLE, Code.Unavailable);
  if (isUnstorableText(err)) return new ConnectError('the request holds a character that cannot be stored (such as U+0000)', Code.InvalidArgument);
  return undefined;
}

/** The answer to a failure that is nobody's fault but ours; its details stay in the log. */
export function internalError(cause?: unknown): ConnectError {
  return new ConnectError('internal error', Code.Internal, undefined, undefined, cause);
}
