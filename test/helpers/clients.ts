import type { DescService } from '@bufbuild/protobuf';
import { createClient, type Client, type Transport } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';

export type Protocol = 'grpc' | 'grpc-web' | 'connect';
export const PROTOCOLS: Protocol[] = ['grpc', 'grpc-web', 'connect'];

/**
 * A real transport for a protocol: gRPC over HTTP/2 cleartext (prior knowledge), gRPC-web through
 * connect-web with fetch (HTTP/1.1, as a browser), Connect JSON over HTTP/1.1.
 */
function transportFor(protocol: Protocol, baseUrl: string): Transport {
  switch (protocol) {
    case 'grpc':
      return createGrpcTransport({ baseUrl, httpVersion: '2' } as any);
    case 'grpc-web':
      return createGrpcWebTransport({ baseUrl, fetch: globalThis.fetch });
    case 'connect':
      return createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false });
  }
}

/** A client for a service over a protocol. */
export function clientFor<S extends DescService>(service: S, protocol: Protocol, baseUrl: string): Client<S> {
  return createClient(service, transportFor(protocol, baseUrl));
}

/** Call options carrying a Bearer token. */
export function bearer(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}
