import type { ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import { type Health, HealthCheckResponse_ServingStatus as Status } from '../../../gen/health/v1/health_pb.js';

/** grpc.health.v1: SERVING while the database answers. Service names "" and passkeyd's own are known. */
export function createHealthService(ping: () => Promise<void>, services: string[]): ServiceImpl<typeof Health> {
  const known = new Set(['', ...services]);
  const status = async (service: string) => {
    if (!known.has(service)) throw new ConnectError(`unknown service ${service}`, Code.NotFound);
    try {
      await ping();
      return Status.SERVING;
    } catch {
      return Status.NOT_SERVING;
    }
  };
  return {
    async check(req) {
      return { status: await status(req.service) };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const s = await status(req.service);
        if (s !== last) yield { status: s };
        last = s;
        await new Promise((r) => setTimeout(r, 2000));
      }
    },
    async list() {
      const statuses: Record<string, { status: Status }> = {};
      for (const s of known) statuses[s] = { status: await status(s) };
      return { statuses };
    },
  };
}
