// The three ways a server is reached, so the behavioural suite runs on each: listening itself on
// our transport, as a Deno.serve handler (the runtime's upgrade), on node:http's upgrade event.
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "../../src/server/server.ts";
import type { ServerOptions } from "../../src/server/options.ts";

export interface Mounted {
  /** ws://127.0.0.1:<port>/ */
  url: string;
  port: number;
  /** Stops the listener (the server itself is stopped by the test). */
  close(): Promise<void>;
}

export interface Mount {
  name: "own" | "deno" | "node";
  /** What this mount cannot do, by feature: the suite skips those cases and says why. */
  lacks: Partial<Record<"deflate" | "closeCodes" | "headerLimit" | "slowLoris", string>>;
  mount(server: Server): Promise<Mounted>;
}

export const MOUNTS: Mount[] = [
  {
    name: "own",
    lacks: {},
    async mount(server) {
      const { port } = await server.listen({ port: 0 });
      return { url: `ws://127.0.0.1:${port}/`, port, close: () => Promise.resolve() };
    },
  },
  {
    name: "deno",
    lacks: {
      deflate: "Deno.upgradeWebSocket negotiates no permessage-deflate",
      closeCodes: "the runtime's close() sends only 1000 and 3000-4999",
      headerLimit: "the runtime gives a message only once it arrived whole",
      slowLoris: "Deno.serve owns the HTTP side, with its own timeouts",
    },
    mount(server) {
      const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, server.handler);
      const port = http.addr.port;
      return Promise.resolve({
        url: `ws://127.0.0.1:${port}/`,
        port,
        close: () => http.shutdown(),
      });
    },
  },
  {
    name: "node",
    lacks: { slowLoris: "node:http reads the request head itself (see its headersTimeout)" },
    async mount(server) {
      const http = createHttpServer((_req, res) => res.end("plain HTTP"));
      http.on("upgrade", (req, socket, head) => void server.handleNodeUpgrade(req, socket, head));
      await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
      const port = (http.address() as AddressInfo).port;
      return {
        url: `ws://127.0.0.1:${port}/`,
        port,
        close: () => new Promise<void>((r) => http.close(() => r())),
      };
    },
  },
];

/** A server on one mount, stopped (and its listener closed) at the end. */
export async function withServer(
  m: Mount,
  options: ServerOptions,
  fn: (server: Server, at: Mounted) => Promise<void>,
): Promise<void> {
  const server = createServer(options);
  const at = await m.mount(server);
  try {
    await server.ready;
    await fn(server, at);
  } finally {
    await server.stop({ timeoutMs: 2000 });
    await at.close();
  }
}
