/**
 * A loopback TCP proxy for fault tests. `freeze()` stops forwarding in both
 * directions without closing anything (a network stall: the sockets stay
 * open and keep accepting bytes, which wait in the proxy), `thaw()` forwards
 * what waited, in order, and carries on. Connections opened while frozen are accepted and frozen too.
 * `dropAll()` destroys every proxied connection at once.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export interface TcpProxy {
  /** redis://127.0.0.1:<port> of the proxy. */
  url: string;
  port: number;
  freeze(): void;
  thaw(): void;
  readonly frozen: boolean;
  /** Proxied connections open now. */
  readonly connections: number;
  dropAll(): void;
  close(): Promise<void>;
}

/** Proxies 127.0.0.1:<free port> to `target` (host:port). */
export async function startTcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let frozen = false;
  // Bytes read while frozen, in arrival order, with the socket they are for.
  let held: Array<[Socket, Buffer]> = [];
  const forward = (to: Socket) => (chunk: Buffer) => {
    if (frozen) held.push([to, chunk]);
    else to.write(chunk);
  };
  const server: Server = createServer((client) => {
    const upstream = connect({ host: target.host ?? "127.0.0.1", port: target.port });
    sockets.add(client).add(upstream);
    client.on("data", forward(upstream));
    upstream.on("data", forward(client));
    const end = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      const waiting = held;
      held = [];
      for (const [to, chunk] of waiting) if (!to.destroyed) to.write(chunk);
    },
    get frozen() {
      return frozen;
    },
    get connections() {
      return sockets.size / 2;
    },
    dropAll() {
      for (const s of [...sockets]) s.destroy();
    },
    close() {
      for (const s of [...sockets]) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
