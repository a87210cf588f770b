/**
 * Server benchmark peer: `npm:ws` on Node. Broadcast loops over `wss.clients`; the topic is a
 * `Set` of members. The peer protocol is described in `bench/server.ts`.
 *
 * Usage: `node ws_node.mjs <directory of the ws package>` (the benchmark finds it).
 */
import { createRequire } from "node:module";
import { Buffer } from "node:buffer";
import process from "node:process";

const require = createRequire(import.meta.url);
const { WebSocketServer, WebSocket } = require(process.argv[2]);

const topic = new Set();
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("close", () => topic.delete(ws));
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    const text = data.toString();
    if (text === "join") {
      topic.add(ws);
      ws.send("joined");
    } else if (text.startsWith("broadcast")) {
      const bytes = Buffer.from(text);
      for (const c of wss.clients) if (c.readyState === WebSocket.OPEN) c.send(bytes);
    } else if (text.startsWith("publish")) {
      const bytes = Buffer.from(text);
      for (const c of topic) if (c.readyState === WebSocket.OPEN) c.send(bytes);
    }
  });
});
wss.on("listening", () => console.log(`PORT ${wss.address().port}`));
// Runs until the benchmark closes our stdin (or dies).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
