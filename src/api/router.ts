import type { DescService } from '@bufbuild/protobuf';
import type { ConnectRouter, Interceptor, ServiceImpl } from '@connectrpc/connect';
import type { ServiceRegistration } from './transport/unary-fast-path.js';
import { Health } from '../../gen/health/v1/health_pb.js';
import { InternalPermissionService } from '../../gen/passkeyd/internal_permission/v2/internal_permission_service_pb.js';
import { OrganizationService } from '../../gen/passkeyd/org/v2/org_service_pb.js';
import { SessionService } from '../../gen/passkeyd/session/v2/session_service_pb.js';
import { UserService } from '../../gen/passkeyd/user/v2/user_service_pb.js';
import { SignUpService } from '../../gen/passkeyd/user/v2/signup_service_pb.js';
import { createAvailabilityService } from './services/availability-service.js';
import { createAdministratorService } from './services/administrator-service.js';
import { createHealthService } from './services/health-service.js';
import { createMachineService } from './services/machine-service.js';
import { createOrgService } from './services/org-service.js';
import { distinctServices } from './descriptors.js';
import { createReflectionServices } from './services/reflection-service.js';
import { createPasskeyService } from './services/passkey-service.js';
import type { ServiceDeps } from './services/deps.js';
import { createSessionService } from './services/session-service.js';
import { createSignUpService } from './services/signup-service.js';
import { createUserService } from './services/user-service.js';

/** passkeyd's own services, in the order reflection lists them. */
const SERVICES = [UserService, SessionService, OrganizationService, InternalPermissionService, SignUpService] as const;

/**
 * Registers every service on one router; the same router serves gRPC, gRPC-web, Connect and REST.
 * Returns the registrations (implementation and interceptors), which the unary fast path serves
 * with the very same objects.
 */
export function createRoutes(deps: ServiceDeps, ping: () => Promise<void>, interceptors: Interceptor[]) {
  return (router: ConnectRouter): ServiceRegistration[] => {
    const registered: ServiceRegistration[] = [];
    const register = <S extends DescService>(service: S, impl: ServiceImpl<S>, withInterceptors: Interceptor[]) => {
      router.service(service, impl, { interceptors: withInterceptors });
      registered.push({ service, impl, interceptors: withInterceptors });
    };
    // UserService is implemented in four parts; `satisfies` makes a method none of them has a compile error.
    const users = { ...createUserService(deps), ...createPasskeyService(deps), ...createMachineService(deps), ...createAvailabilityService(deps) } satisfies ServiceImpl<
      typeof UserService
    >;
    register(UserService, users, interceptors);
    register(SessionService, createSessionService(deps), interceptors);
    register(OrganizationService, createOrgService(deps), interceptors);
    register(InternalPermissionService, createAdministratorService(deps), interceptors);
    register(SignUpService, createSignUpService(deps), interceptors);
    register(
      Health,
      createHealthService(
        ping,
        SERVICES.map((s) => s.typeName),
      ),
      [],
    );
    // Infrastructure, like health: no passkeyd auth (the interceptor would make them admin-only).
    for (const r of createReflectionServices(() => distinctServices(router.handlers))) router.service(r.service, r.impl);
    return registered;
  };
}
