/**
 * Cluster benchmark peer: one wse node, `createServer({ nodeId, cluster: { broker } })` on a
 * `RedisBroker`, listening itself on a free loopback port. The peer protocol is described in
 * `bench/cluster.ts`. Keep-alive pings every 120 s (socket.io's peer pings as seldom), so no
 * ping traffic to 10,000 clients runs during a measurement.
 *
 * Usage: `deno run -A wse_node.ts <nodeId> <redis url> <broker prefix>`.
 */
import { createServer, RedisBroker } from "../../src/server/mod.ts";

const [nodeId, url, prefix] = Deno.args;
const broker = await RedisBroker.connect({ url, prefix });
let failed = 0;
/** A lost send shows in the benchmark as a step that times out; the first few say why. */
const fail = (e: unknown) => {
  if (++failed <= 3) console.error(`wse node ${nodeId}: ${e}`);
};

/** Sends `n` numbered 64 B messages to `id`, 1,000 per turn of the event loop. */
async function burst(id: string, n: number): Promise<void> {
  for (let i = 0; i < n;) {
    for (const end = Math.min(n, i + 1000); i < end; i++) {
      server.send(id, String(i).padEnd(64)).catch(fail);
    }
    await new Promise((r) => setTimeout(r, 0));
  }
}

const server = createServer({
  nodeId,
  cluster: { broker }, // heartbeats every second, the default
  checkOrigin: "*",
  keepAlive: { intervalMs: 120_000 },
  onMessage: (m, ctx) => {
    if (m.type !== "text") return;
    const text = m.data;
    if (text.startsWith("u ")) {
      // "u <id> <64 B payload>": relay the payload to the connection, wherever it is
      const space = text.indexOf(" ", 2);
      server.send(text.slice(2, space), text.slice(space + 1)).catch(fail);
    } else if (text.startsWith("broadcast")) {
      server.broadcast(text);
    } else if (text.startsWith("burst ")) {
      const [, id, n] = text.split(" ");
      void burst(id, Number(n));
    } else if (text === "who") {
      ctx.send(`id ${ctx.id}`).catch(fail);
    }
  },
});
server.on("nodeUp", (e) => console.log(`UP ${e.node}`));
server.on(
  "nodeDown",
  (e) => console.error(`wse node ${nodeId}: node ${e.node} down (${e.reason})`),
);
server.on("error", (e) => fail(e.error));
const { port } = await server.listen({ port: 0, hostname: "127.0.0.1" });
await server.ready;
console.log(`PORT ${port}`);
// Runs until the benchmark closes our stdin (or dies).
for await (const _ of Deno.stdin.readable) { /* ignore */ }
Deno.exit(0);
