import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../../log.js';
import { restKey } from '../context.js';

/** The wire protocol of a request, from its content type. */
function protocolOf(contentType: string | null, rest: boolean): string {
  if (rest) return 'rest';
  if (!contentType) return 'connect';
  if (contentType.startsWith('application/grpc-web')) return 'grpc-web';
  if (contentType.startsWith('application/grpc')) return 'grpc';
  return 'connect';
}

/**
 * One metric sample per RPC and one log line (procedure, protocol, code, duration; never tokens or
 * payloads): at `debug` for a call that succeeded, at `info` for one that failed. A line per login at
 * `info` was measurable CPU on the login path; the metrics count every call anyway.
 */
export function loggingInterceptor(log: Logger, registry: Registry): Interceptor {
  const requests = new Counter({ name: 'passkeyd_rpc_requests_total', help: 'RPCs handled', labelNames: ['procedure', 'protocol', 'code'], registers: [registry] });
  const duration = new Histogram({
    name: 'passkeyd_rpc_duration_seconds',
    help: 'RPC handling time',
    labelNames: ['procedure', 'protocol'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return (next) => async (req) => {
    const start = performance.now();
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const protocol = protocolOf(req.header.get('content-type'), req.contextValues.get(restKey));
    let code = 'ok';
    try {
      return await next(req);
    } catch (err) {
      code = err instanceof ConnectError ? Code[err.code] : 'Internal';
      throw err;
    } finally {
      const ms = performance.now() - start;
      requests.inc({ procedure, protocol, code });
      duration.observe({ procedure, protocol }, ms / 1000);
      const level = code === 'ok' ? 'debug' : 'info';
      if (log.isLevelEnabled(level)) log[level]({ procedure, protocol, code, ms: Math.round(ms * 100) / 100 }, 'rpc');
    }
  };
}
