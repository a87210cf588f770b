// Type-checked (tsc --strict, no skipLibCheck) against the tarball's .d.ts: what an application
// writes against each entry point compiles.
import { type EngineOptions, WebSocketEngine, type WireMessage } from "@wse/engine";
import { createServer, type ServerContext } from "@wse/engine/server";
import { connect, type WebSocketConnection } from "@wse/engine/transport";
import { encodeFrame, Opcode } from "@wse/engine/protocol";
import { startRedisServer } from "@wse/engine/testing";

const options: EngineOptions = {
  url: "ws://127.0.0.1:8080/",
  workers: { module: new URL("./handler.mjs", import.meta.url), count: 2 },
  client: { onOpen: async (ctx) => void (await ctx.send("hi")) },
};
export const engine: WebSocketEngine = new WebSocketEngine(options);
export const server = createServer({
  onMessage: (m: WireMessage, ctx: ServerContext) => ctx.send(m.type === "text" ? m.data : "bin"),
});
export const dial: (url: string) => Promise<WebSocketConnection> = (url) => connect(url);
export const frame: Uint8Array = encodeFrame(Opcode.Text, new Uint8Array(1));
export const redis: Promise<{ url: string; stop(): Promise<void> }> = startRedisServer();
