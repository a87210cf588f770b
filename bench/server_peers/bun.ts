/**
 * Server benchmark peer: Bun (`Bun.serve({ websocket })`, uWebSockets underneath). Run by the
 * `bun` binary, not Deno. Broadcast loops over the open sockets with `ws.send` (as the other
 * peers do); the topic is Bun's own pub/sub: `ws.subscribe` on join and `server.publish`. The peer
 * protocol is described in `bench/server.ts`.
 */
import process from "node:process";

/** The part of a Bun server socket this peer uses. */
interface BunSocket {
  send(data: string | Uint8Array): number;
  subscribe(topic: string): void;
}

/** The part of Bun's API this peer uses (Deno type-checks this file without Bun's types). */
declare const Bun: {
  serve(options: {
    hostname: string;
    port: number;
    fetch(req: Request, server: { upgrade(req: Request): boolean }): Response | undefined;
    websocket: {
      perMessageDeflate: boolean;
      open(ws: BunSocket): void;
      message(ws: BunSocket, message: string | Uint8Array): void;
      close(ws: BunSocket): void;
    };
  }): { port: number; publish(topic: string, data: Uint8Array): number };
};

const all = new Set<BunSocket>();
const encoder = new TextEncoder();

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response("WebSocket only", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      all.add(ws);
    },
    message(ws, message) {
      if (typeof message !== "string") return;
      if (message === "join") {
        ws.subscribe("all");
        ws.send("joined");
      } else if (message.startsWith("broadcast")) {
        const bytes = encoder.encode(message);
        for (const s of all) s.send(bytes);
      } else if (message.startsWith("publish")) {
        server.publish("all", encoder.encode(message));
      }
    },
    close(ws) {
      all.delete(ws);
    },
  },
});
console.log(`PORT ${server.port}`);
// Runs until the benchmark closes our stdin (or dies).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
