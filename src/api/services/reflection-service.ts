import { toBinary, type DescFile, type DescService } from '@bufbuild/protobuf';
import { nestedTypes } from '@bufbuild/protobuf/reflect';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, type ServiceImpl } from '@connectrpc/connect';
import { ServerReflection as ServerReflectionV1, type ServerReflectionRequest, type ServerReflectionResponse } from '../../../gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ServerReflectionV1Alpha } from '../../../gen/grpc/reflection/v1alpha/reflection_pb.js';
import { filesOf } from '../descriptors.js';

/** What the reflection answers are computed from, built once on first use. */
interface ReflectionIndex {
  services: string[];
  byName: Map<string, DescFile>;
  bySymbol: Map<string, DescFile>;
  /** "containing type" → extension number → declaring file. */
  extensions: Map<string, Map<number, DescFile>>;
  encoded: Map<DescFile, Uint8Array>;
}

function buildIndex(services: readonly DescService[]): ReflectionIndex {
  const byName = new Map<string, DescFile>();
  const bySymbol = new Map<string, DescFile>();
  const extensions = new Map<string, Map<number, DescFile>>();
  for (const file of filesOf(services)) {
    byName.set(file.proto.name, file);
    for (const t of nestedTypes(file)) {
      bySymbol.set(t.typeName, file);
      switch (t.kind) {
        case 'message':
          for (const f of t.fields) bySymbol.set(`${t.typeName}.${f.name}`, file);
          for (const o of t.oneofs) bySymbol.set(`${t.typeName}.${o.name}`, file);
          break;
        case 'enum': {
          // Enum values are scoped like C++: siblings of their enum, not children.
          const scope = t.typeName.slice(0, t.typeName.lastIndexOf('.') + 1);
          for (const v of t.values) bySymbol.set(`${scope}${v.name}`, file);
          break;
        }
        case 'service':
          for (const m of t.methods) bySymbol.set(`${t.typeName}.${m.name}`, file);
          break;
        case 'extension': {
          let byNumber = extensions.get(t.extendee.typeName);
          if (!byNumber) extensions.set(t.extendee.typeName, (byNumber = new Map()));
          byNumber.set(t.number, file);
          break;
        }
      }
    }
  }
  return { services: services.map((s) => s.typeName), byName, bySymbol, extensions, encoded: new Map() };
}

type Answer = ServerReflectionResponse['messageResponse'];

const notFound = (message: string): Answer => ({ case: 'errorResponse', value: { errorCode: Code.NotFound, errorMessage: message } as any });

/**
 * The file and its transitive imports, in the form reflection clients expect: the requested file first,
 * then the imports this stream has not sent yet (grpc-go's behaviour; clients cache what they received).
 */
function fileAnswer(index: ReflectionIndex, file: DescFile, sent: Set<string>): Answer {
  const out: Uint8Array[] = [];
  const queue: DescFile[] = [file];
  const queued = new Set<string>([file.proto.name]);
  while (queue.length > 0) {
    const f = queue.shift()!;
    if (out.length === 0 || !sent.has(f.proto.name)) {
      sent.add(f.proto.name);
      let bytes = index.encoded.get(f);
      if (!bytes) index.encoded.set(f, (bytes = toBinary(FileDescriptorProtoSchema, f.proto)));
      out.push(bytes);
    }
    for (const dep of f.dependencies) {
      if (queued.has(dep.proto.name)) continue;
      queued.add(dep.proto.name);
      queue.push(dep);
    }
  }
  return { case: 'fileDescriptorResponse', value: { fileDescriptorProto: out } as any };
}

function answer(index: ReflectionIndex, req: ServerReflectionRequest, sent: Set<string>): Answer {
  const r = req.messageRequest;
  switch (r.case) {
    case 'listServices':
      return { case: 'listServicesResponse', value: { service: index.services.map((name) => ({ name })) } as any };
    case 'fileByFilename': {
      const file = index.byName.get(r.value);
      return file ? fileAnswer(index, file, sent) : notFound(`file ${r.value} not found`);
    }
    case 'fileContainingSymbol': {
      const symbol = r.value.replace(/^\./, '');
      const file = index.bySymbol.get(symbol);
      return file ? fileAnswer(index, file, sent) : notFound(`symbol ${symbol} not found`);
    }
    case 'fileContainingExtension': {
      const type = r.value.containingType.replace(/^\./, '');
      const file = index.extensions.get(type)?.get(r.value.extensionNumber);
      return file ? fileAnswer(index, file, sent) : notFound(`extension ${r.value.extensionNumber} of ${type} not found`);
    }
    case 'allExtensionNumbersOfType': {
      const type = r.value.replace(/^\./, '');
      if (!index.bySymbol.has(type)) return notFound(`type ${type} not found`);
      const numbers = [...(index.extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b);
      return { case: 'allExtensionNumbersResponse', value: { baseTypeName: type, extensionNumber: numbers } as any };
    }
    default:
      return { case: 'errorResponse', value: { errorCode: Code.InvalidArgument, errorMessage: 'empty reflection request' } as any };
  }
}

function createImpl(services: () => readonly DescService[]): ServiceImpl<typeof ServerReflectionV1> {
  let index: ReflectionIndex | undefined;
  return {
    async *serverReflectionInfo(requests) {
      // Built lazily: the list of services is only complete once every service is registered.
      index ??= buildIndex(services());
      const sent = new Set<string>();
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req, sent) };
      }
    },
  };
}

/**
 * gRPC server reflection, grpc.reflection.v1 and v1alpha (grpcurl and `buf curl` try both), answered
 * from the descriptors compiled into the generated code: every registered service, its files, and their
 * imports (google/api, well-known types). `services` is called once, on first use.
 */
export function createReflectionServices(services: () => readonly DescService[]) {
  const v1 = createImpl(services);
  // v1alpha's messages have the same fields and numbers as v1's, only other type names: one
  // implementation serves both (it reads requests by field name and returns plain objects, which the
  // handler turns into messages of whichever version was called).
  return [
    { service: ServerReflectionV1, impl: v1 },
    { service: ServerReflectionV1Alpha, impl: v1 as unknown as ServiceImpl<typeof ServerReflectionV1Alpha> },
  ] as const;
}
