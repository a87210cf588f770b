/**
 * Server benchmark peer: wse, on `createServer` listening itself on our transport. The peer
 * protocol is described in `bench/server.ts`; everything that depends on our server API is inside
 * {@linkcode startServer}. Keep-alive pings every 120 s, as Bun's and Deno's defaults (npm:ws
 * sends none), so no server pings during a run.
 */
import { createServer } from "../../src/server/mod.ts";

/** A listening benchmark server. */
export interface PeerServer {
  /** The loopback port it listens on. */
  port: number;
  /** Stops it. */
  close(): Promise<void>;
}

/**
 * Listens on a free loopback port and speaks the peer protocol: "join" subscribes the connection
 * to the topic; "broadcast…" is broadcast to every connection and "publish…" published to the
 * topic, each framed once, as binary messages.
 */
export async function startServer(): Promise<PeerServer> {
  const encoder = new TextEncoder();
  const server = createServer({
    checkOrigin: "*",
    keepAlive: { intervalMs: 120_000 },
    onMessage: (m, ctx) => {
      if (m.type !== "text") return;
      if (m.data === "join") {
        server.subscribe(ctx.id, "topic");
        return ctx.send("joined");
      }
      // relayed as binary, as the peer protocol says
      if (m.data.startsWith("broadcast")) server.broadcast(encoder.encode(m.data));
      else if (m.data.startsWith("publish")) server.publish("topic", encoder.encode(m.data));
    },
  });
  const { port } = await server.listen({ port: 0, hostname: "127.0.0.1" });
  await server.ready;
  return { port, close: () => server.stop() };
}

if (import.meta.main) {
  const server = await startServer();
  console.log(`PORT ${server.port}`);
  // Runs until the benchmark closes our stdin (or dies).
  for await (const _ of Deno.stdin.readable) { /* ignore */ }
  Deno.exit(0);
}
