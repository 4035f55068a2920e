import net from 'node:net';

/** A TCP forwarder that can be cut and restored, to take a real database "down" for one server. */
export interface TcpProxy {
  port: number;
  /** Refuses new connections and resets open ones. */
  cut(): Promise<void>;
  /** Accepts connections again on the same port. */
  restore(): Promise<void>;
  /**
   * A network partition: every connection, open or new, stays open but nothing passes either way (the
   * bytes are held, as TCP would keep retransmitting them), so a peer sees silence, not a refusal.
   */
  blackhole(): void;
  /** Ends the partition: the held bytes pass, and so does everything after them. */
  heal(): void;
  close(): Promise<void>;
}

/** One direction of a connection: writes to `to`, or holds the bytes while the proxy is partitioned. */
interface Direction {
  to: net.Socket;
  held: Buffer[];
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const directions = new Set<Direction>();
  let partitioned = false;
  const forward = (from: net.Socket, to: net.Socket) => {
    const d: Direction = { to, held: [] };
    directions.add(d);
    from.on('data', (chunk: Buffer) => {
      if (partitioned) d.held.push(chunk);
      else to.write(chunk);
    });
    from.on('close', () => directions.delete(d));
  };
  const make = () =>
    net.createServer((client) => {
      const upstream = net.connect(targetPort, targetHost);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      forward(client, upstream);
      forward(upstream, client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  let server = make();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return {
    port,
    cut: stop,
    async restore() {
      server = make();
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    },
    blackhole() {
      partitioned = true;
    },
    heal() {
      partitioned = false;
      for (const d of directions) {
        for (const chunk of d.held.splice(0)) if (!d.to.destroyed) d.to.write(chunk);
      }
    },
    close: stop,
  };
}
