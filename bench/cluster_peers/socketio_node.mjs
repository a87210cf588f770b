/**
 * Cluster benchmark peer: one socket.io node on Node — npm `socket.io` with
 * `@socket.io/redis-adapter` over npm `redis` (node-redis), the adapter's documented setup. The
 * peer protocol is described in `bench/cluster.ts`; here its commands are socket.io events.
 * WebSocket transport only (no long-polling), heartbeat every 120 s as the wse peer's keep-alive.
 *
 * Usage: `node socketio_node.mjs <node_modules dir> <redis url> <adapter key> <nodes>`: it prints
 * `PORT <n>` once the adapter sees `<nodes>` servers on its key.
 */
import { createRequire } from "node:module";
import { createServer } from "node:http";
import process from "node:process";

const [modules, url, key, nodes] = process.argv.slice(2);
const require = createRequire(`${modules}/`);
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const pub = createClient({ url });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  pingInterval: 120_000,
  pingTimeout: 60_000,
  adapter: createAdapter(pub, sub, { key }),
});

/** Emits `n` numbered 64 B messages to socket `id`, 1,000 per turn of the event loop. */
async function burst(id, n) {
  for (let i = 0; i < n;) {
    for (const end = Math.min(n, i + 1000); i < end; i++) {
      io.to(id).emit("m", String(i).padEnd(64));
    }
    await new Promise((r) => setImmediate(r));
  }
}

io.on("connection", (socket) => {
  // "u" (id, 64 B payload): relay the payload to the socket, wherever it is
  socket.on("u", (id, payload) => io.to(id).emit("m", payload));
  socket.on("broadcast", (payload) => io.emit("b", payload));
  socket.on("burst", (id, n) => void burst(id, n));
});

http.listen(0, "127.0.0.1", async () => {
  // The adapter subscribes without telling when it is done: wait until every node is counted.
  for (let i = 0; i < 500; i++) {
    if (await io.of("/").adapter.serverCount() >= Number(nodes)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(`PORT ${http.address().port}`);
});
// Runs until the benchmark closes our stdin (or dies).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
