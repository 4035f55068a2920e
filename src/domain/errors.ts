/** The kinds of failure domain code reports; the API edge maps each to a ConnectError code. */
export type DomainErrorKind =
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
export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** Seconds after which a retry may succeed (rate limits). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (what: string) => new DomainError('not_found', `${what} not found`);
export const invalid = (message: string) => new DomainError('invalid_argument', message);
export const precondition = (message: string) => new DomainError('failed_precondition', message);
export const alreadyExists = (message: string) => new DomainError('already_exists', message);
export const denied = (message: string) => new DomainError('permission_denied', message);
export const unauthenticated = (message: string) => new DomainError('unauthenticated', message);
