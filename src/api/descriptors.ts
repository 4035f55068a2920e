import { createRegistry, type DescFile, type DescService, type Registry } from '@bufbuild/protobuf';

/**
 * Every file the given services need: the files declaring them and, transitively, everything those
 * import (google/api, the well-known types, descriptor.proto for the options). Dependencies come
 * before the files that import them, so the list can be loaded in order.
 */
export function filesOf(services: readonly DescService[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (file: DescFile) => {
    if (seen.has(file.proto.name)) return;
    seen.add(file.proto.name);
    for (const dep of file.dependencies) visit(dep);
    out.push(file);
  };
  for (const s of services) visit(s.file);
  return out;
}

/** A type registry over {@link filesOf}: resolves Any / error-detail type names. */
export function registryOf(services: readonly DescService[]): Registry {
  return createRegistry(...filesOf(services));
}

/** The distinct services of a list of handlers (one per method), in registration order. */
export function distinctServices(items: readonly { service: DescService }[]): DescService[] {
  const seen = new Set<string>();
  const out: DescService[] = [];
  for (const { service } of items) {
    if (seen.has(service.typeName)) continue;
    seen.add(service.typeName);
    out.push(service);
  }
  return out;
}
