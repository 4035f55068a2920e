import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { Health } from '../../gen/health/v1/health_pb.js';
import { OrganizationService } from '../../gen/passkeyd/org/v2/org_service_pb.js';
import { UserService } from '../../gen/passkeyd/user/v2/user_service_pb.js';
import { createHealthService } from './services/health-service.js';
import { createOrgService } from './services/org-service.js';
import type { ServiceDeps } from './services/deps.js';
import { createUserService } from './services/user-service.js';

/** passkeyd's own services, in the order reflection lists them. */
export const SERVICES = [UserService, OrganizationService] as const;

/** Registers every service on one router; the same router serves gRPC, gRPC-web, Connect and REST. */
export function createRoutes(deps: ServiceDeps, ping: () => Promise<void>, interceptors: Interceptor[]) {
  return (router: ConnectRouter) => {
    router.service(UserService, { ...createUserService(deps) }, { interceptors });
    router.service(OrganizationService, createOrgService(deps), { interceptors });
    router.service(Health, createHealthService(ping, SERVICES.map((s) => s.typeName)));
  };
}
