/**
 * Server benchmark peer: wse. The peer protocol is described in `bench/server.ts`; everything
 * that depends on our server API is inside {@linkcode startServer}.
 */
import { serve } from "../../src/transport/tcp_server.ts";
import type { WebSocketConnection } from "../../src/transport/tcp_connection.ts";

/** A listening benchmark server. */
export interface PeerServer {
  /** The loopback port it listens on. */
  port: number;
  /** Stops it. */
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port and speaks the peer protocol. Today on the transport's `serve()`:
 * broadcast loops over the open connections and calls `send`; the topic is a `Set` of members.
 */
export function startServer(): PeerServer {
  const topic = new Set<WebSocketConnection>();
  const encoder = new TextEncoder();
  const ignore = () => {}; // a connection closing under a send
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onConnection: async (ws) => {
      for await (const m of ws) {
        if (m.type !== "text") continue;
        if (m.data === "join") {
          topic.add(ws);
          ws.send("joined").catch(ignore);
        } else if (m.data.startsWith("broadcast")) {
          const bytes = encoder.encode(m.data);
          for (const c of server.connections) if (c.state === "open") c.send(bytes).catch(ignore);
        } else if (m.data.startsWith("publish")) {
          const bytes = encoder.encode(m.data);
          for (const c of topic) if (c.state === "open") c.send(bytes).catch(ignore);
        }
      }
      topic.delete(ws);
    },
  });
  return { port: server.port, close: () => server.close() };
}

if (import.meta.main) {
  const server = startServer();
  console.log(`PORT ${server.port}`);
  // Runs until the benchmark closes our stdin (or dies).
  for await (const _ of Deno.stdin.readable) { /* ignore */ }
  Deno.exit(0);
}
