/**
 * A minimal unary gRPC client over node:http2 for the load generator: one HTTP/2 connection, protobuf
 * framing, status from the trailers (or a trailers-only answer). It does a fraction of the work of a
 * general-purpose client, so the load generator, which shares the machine with the service and the
 * database, takes less of the CPU it measures. (`--client connect` uses Connect's gRPC transport;
 * bench/connect-client.ts is the same for Connect JSON.)
 */
import http2 from 'node:http2';
import { create, fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';

class GrpcError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(`gRPC status ${status}: ${message}`);
  }
}

/** A unary client of the load generator's own (gRPC or Connect JSON). */
export interface LeanClient {
  call<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, message: MessageInitShape<I>, headers?: Record<string, string>): Promise<MessageShape<O>>;
  close(): void;
}

export function createLeanGrpcClient(baseUrl: string): LeanClient {
  const session = http2.connect(baseUrl);
  session.on('error', () => {});
  return {
    call(method, init, headers) {
      const body = toBinary(method.input, create(method.input, init));
      const framed = Buffer.allocUnsafe(5 + body.length);
      framed[0] = 0;
      framed.writeUInt32BE(body.length, 1);
      framed.set(body, 5);
      return new Promise((resolve, reject) => {
        const req = session.request({ ':method': 'POST', ':path': `/${method.parent.typeName}/${method.name}`, 'content-type': 'application/grpc', te: 'trailers', ...headers });
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let message = '';
        const take = (h: http2.IncomingHttpHeaders) => {
          if (h['grpc-status'] !== undefined) {
            status = String(h['grpc-status']);
            message = decodeURIComponent(String(h['grpc-message'] ?? ''));
          }
        };
        req.on('response', take);
        req.on('trailers', take);
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('error', reject);
        req.on('end', () => {
          if (status !== '0') {
            reject(new GrpcError(Number(status ?? 2), message || 'no status'));
            return;
          }
          const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          resolve(fromBinary(method.output, data.subarray(5)));
        });
        req.end(framed);
      });
    },
    close: () => session.close(),
  };
}
