import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { isDatabaseUnavailable } from '../../errors.js';
import { timeLimit, withDeadline } from '../../store/deadline.js';

const GRPC_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** The deadline a client sent, in ms: gRPC and gRPC-web `grpc-timeout`, Connect `connect-timeout-ms`. */
function clientTimeoutMs(header: Headers): number | undefined {
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get('grpc-timeout') ?? '');
  if (grpc) return Number(grpc[1]) * GRPC_UNITS[grpc[2]!]!;
  const connect = /^\d{1,10}$/.exec(header.get('connect-timeout-ms') ?? '');
  return connect ? Number(connect[0]) : undefined;
}

const exceeded = () => new ConnectError('the deadline passed before the call was done', Code.DeadlineExceeded);

/**
 * Gives every unary call a deadline: the client's, or `defaultMs` when it sends none. The database work
 * of the call is bounded by it (src/store/deadline.ts), and the answer is DEADLINE_EXCEEDED once it has
 * passed, whatever the call is still waiting for (gRPC's meaning: the outcome is unknown to the client).
 */
export function deadlineInterceptor(defaultMs: number): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return next(req);
    const ms = clientTimeoutMs(req.header) ?? defaultMs;
    const at = Date.now() + ms;
    try {
      return await timeLimit(
        withDeadline(ms, () => next(req)),
        ms,
        exceeded,
      );
    } catch (err) {
      // A query the deadline cut off fails as a database error; the answer is still the deadline's.
      if (Date.now() >= at && isDatabaseUnavailable(err)) throw exceeded();
      throw err;
    }
  };
}
