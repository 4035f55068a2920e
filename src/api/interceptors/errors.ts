import type { Interceptor } from '@connectrpc/connect';
import { internalError, isDatabaseUnavailable, knownConnectError } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * Turns passkeyd errors and unexpected failures into ConnectErrors (src/errors.ts holds the tables);
 * a bug becomes INTERNAL "internal error" and is logged with its stack, which never leaves the process.
 */
export function errorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const known = knownConnectError(err);
      if (known) {
        if (isDatabaseUnavailable(err)) log.warn({ procedure: req.method.name, err: (err as Error).message }, 'database unavailable');
        throw known;
      }
      log.error({ procedure: req.method.name, err }, 'internal error');
      throw internalError(err);
    }
  };
}
