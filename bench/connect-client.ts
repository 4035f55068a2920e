/**
 * A minimal Connect-protocol client (unary, JSON, HTTP/1.1 keep-alive) for the load generator: the
 * same wire format as Connect's transport with `useBinaryFormat: false`, without its per-call
 * machinery, so the load generator takes less of the machine it shares with the service.
 */
import http from 'node:http';
import { create, fromJsonString, toJsonString, type DescMessage, type DescMethodUnary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import type { LeanClient } from './grpc-client.js';

class ConnectCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(`HTTP ${status}: ${message}`);
  }
}

export function createLeanConnectClient(baseUrl: string, sockets: number): LeanClient {
  const url = new URL(baseUrl);
  // An idle socket is closed after 4 s, before passkeyd's 5 s keep-alive timeout closes it from the other
  // end: reusing a socket just as the server closes it fails the call with ECONNRESET. (Node's agent
  // honours the server's Keep-Alive hint only when the agent has a timeout of its own.)
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets, timeout: 4_000 });
  return {
    call<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, init: MessageInitShape<I>, headers?: Record<string, string>): Promise<MessageShape<O>> {
      const body = toJsonString(method.input, create(method.input, init));
      return new Promise((resolve, reject) => {
        const req = http.request(
          {
            host: url.hostname,
            port: url.port,
            method: 'POST',
            path: `/${method.parent.typeName}/${method.name}`,
            agent,
            headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', 'content-length': Buffer.byteLength(body), ...headers },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              if (res.statusCode !== 200) {
                reject(new ConnectCallError(res.statusCode ?? 0, text.slice(0, 300)));
                return;
              }
              try {
                resolve(fromJsonString(method.output, text));
              } catch (err) {
                reject(err);
              }
            });
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}
