// The cluster on Node and Bun: two server nodes sharing a real redis-server (started with
// startRedisServer from the package's test kit) through ioredis.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createServer, RedisBroker } from "@wse/engine/server";
import { startRedisServer } from "@wse/engine/testing";
import { client, TIMEOUT, until } from "./helpers.mjs";

async function startNode(redis, nodeId) {
  const broker = await RedisBroker.connect({ url: redis.url, reconnectMaxDelayMs: 200 });
  const server = createServer({
    nodeId,
    checkOrigin: "*",
    cluster: { broker, heartbeatMs: 200, requestTimeoutMs: 3000 },
    onConnect: (ctx) => ctx.send(`id ${ctx.id}`),
    onMessage: async (m, ctx) => {
      const [cmd, arg] = m.data.split(" ");
      if (cmd === "sub") {
        await ctx.subscribe(arg);
        await ctx.send(`subscribed ${arg}`);
      }
    },
  });
  const { port } = await server.listen();
  await server.ready;
  return {
    server,
    url: `ws://127.0.0.1:${port}/`,
    async stop() {
      await server.stop();
      await broker.close();
    },
  };
}

test(
  "cluster: send by id, broadcast, publish, count across two nodes; a node leaves",
  TIMEOUT,
  async () => {
    const redis = await startRedisServer();
    const nodes = [];
    const clients = [];
    try {
      const a = await startNode(redis, "a");
      nodes.push(a);
      const b = await startNode(redis, "b");
      nodes.push(b);
      await until(() => a.server.nodes.length === 1 && b.server.nodes.length === 1, "a and b meet");
      const ca = await client(a.url);
      const cb = await client(b.url);
      clients.push(ca, cb);
      const ida = (await ca.next()).slice(3);
      const idb = (await cb.next()).slice(3);
      assert.match(idb, /^b\./);
      // a unicast from node a reaches a client held by node b, and back
      await a.server.send(idb, "hello from a");
      assert.equal(await cb.next(), "hello from a");
      await b.server.send(ida, "hello from b");
      assert.equal(await ca.next(), "hello from b");
      // a broadcast and a topic reach both nodes' clients
      a.server.broadcast("to all");
      assert.equal(await ca.next(), "to all");
      assert.equal(await cb.next(), "to all");
      for (const c of [ca, cb]) {
        await c.ws.send("sub room");
        assert.equal(await c.next(), "subscribed room");
      }
      b.server.publish("room", "news");
      assert.equal(await ca.next(), "news");
      assert.equal(await cb.next(), "news");
      const count = await a.server.countAll();
      assert.equal(count.total, 2);
      assert.deepEqual(count.byNode, { a: 1, b: 1 });
      // node b stops: node a sees it go, and its ids are refused by name
      const downs = [];
      a.server.on("nodeDown", (e) => downs.push(e.node));
      await cb.ws.close();
      clients.pop();
      await nodes.pop().stop();
      await until(() => downs.includes("b"), "node a to see b down");
      await assert.rejects(() => a.server.send(idb, "x"), { name: "NodeUnavailableError" });
    } finally {
      for (const c of clients) await c.ws.close();
      for (const n of nodes) await n.stop();
      await redis.stop();
    }
  },
);
