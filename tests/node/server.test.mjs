// The server on Node and Bun: listening itself (node:net), on a node:http server's upgrade event,
// handlers in two worker threads; our transport's serve() and handleNodeUpgrade(); and the clear
// errors of what only Deno has.
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { test } from "node:test";
import { NotSupportedError } from "@wse/engine";
import { createServer } from "@wse/engine/server";
import { handleNodeUpgrade } from "@wse/engine/transport";
import { startEchoServer } from "@wse/engine/testing";
import { client, TIMEOUT, until } from "./helpers.mjs";

function chatServer() {
  return createServer({
    checkOrigin: "*",
    onConnect: (ctx) => ctx.send(`id ${ctx.id}`),
    onMessage: async (m, ctx) => {
      const [cmd, arg] = m.data.split(" ");
      if (cmd === "to") await ctx.server.send(arg, `from ${ctx.id}`);
      else if (cmd === "all") ctx.server.broadcast(`all ${arg}`);
      else await ctx.send(`echo ${m.data}`);
    },
  });
}

/** Checks one server's operations through two clients of `url`. */
async function exercise(server, url) {
  const a = await client(url);
  const b = await client(url);
  try {
    const ida = (await a.next()).slice(3);
    const idb = (await b.next()).slice(3);
    assert.equal(server.count, 2);
    await a.ws.send("hi");
    assert.equal(await a.next(), "echo hi");
    await a.ws.send(`to ${idb}`);
    assert.equal(await b.next(), `from ${ida}`);
    await b.ws.send("all news");
    assert.equal(await a.next(), "all news");
    assert.equal(await b.next(), "all news");
    await server.send(ida, "from the app");
    assert.equal(await a.next(), "from the app");
    await server.close(idb, 4001, "bye");
    const closed = await b.ws.closed;
    assert.equal(closed.code, 4001);
    assert.equal(closed.reason, "bye");
    await until(() => server.count === 1, "the closed connection to leave");
  } finally {
    await a.ws.close();
    await b.ws.close();
  }
}

test("server: listen() on node:net — ids, send, broadcast, close", TIMEOUT, async () => {
  const server = chatServer();
  try {
    const { port } = await server.listen({ port: 0 });
    await server.ready;
    await exercise(server, `ws://127.0.0.1:${port}/`);
    // Node binds asynchronously: a taken port rejects listen().
    await assert.rejects(() => server.listen({ port }), { code: "EADDRINUSE" });
  } finally {
    await server.stop();
  }
});

test(
  "server: handleNodeUpgrade on a node:http server that also answers HTTP",
  TIMEOUT,
  async () => {
    const server = chatServer();
    const http = createHttpServer((_req, res) => res.end("plain HTTP here"));
    http.on("upgrade", (req, socket, head) => void server.handleNodeUpgrade(req, socket, head));
    await new Promise((r) => http.listen(0, "127.0.0.1", r));
    const { port } = http.address();
    try {
      await server.ready;
      assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "plain HTTP here");
      await exercise(server, `ws://127.0.0.1:${port}/`);
    } finally {
      await server.stop();
      await new Promise((r) => http.close(r));
    }
  },
);

test("server: handlers in two worker threads, a connection sticks to one", TIMEOUT, async () => {
  const server = createServer({
    checkOrigin: "*",
    workers: { module: new URL("./fixtures/server_worker.mjs", import.meta.url), count: 2 },
  });
  const clients = [];
  try {
    const { port } = await server.listen();
    await server.ready;
    for (let i = 0; i < 4; i++) clients.push(await client(`ws://127.0.0.1:${port}/`));
    const hellos = await Promise.all(clients.map((c) => c.next()));
    const ids = hellos.map((h) => h.split(" ")[1]);
    const workerOf = hellos.map((h) => h.split(" ")[3]);
    assert.deepEqual([...new Set(workerOf)].sort(), ["w1", "w2"], "round-robin over both");
    assert.equal(new Set(hellos.map((h) => h.split(" ")[6])).size, 2, "two threads");
    for (const [i, c] of clients.entries()) {
      for (let k = 1; k <= 3; k++) {
        await c.ws.send(`m${k}`);
        assert.equal(await c.next(), `m${k} #${k} by ${workerOf[i]}`);
      }
    }
    await clients[0].ws.send(`to ${ids[3]}`);
    assert.equal(await clients[3].next(), `from ${ids[0]}`);
  } finally {
    for (const c of clients) await c.ws.close();
    await server.stop();
  }
});

test("transport: handleNodeUpgrade() gives our WebSocketConnection", TIMEOUT, async () => {
  const http = createHttpServer();
  const handled = [];
  http.on("upgrade", async (req, socket, head) => {
    const ws = await handleNodeUpgrade(req, socket, head, { protocols: ["chat.v1"] });
    if (!ws) return;
    handled.push(ws);
    for await (const m of ws) await ws.send(`node:http ${m.data}`);
  });
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  try {
    const c = await client(`ws://127.0.0.1:${http.address().port}/`, { protocols: ["chat.v1"] });
    assert.equal(c.ws.protocol, "chat.v1");
    await c.ws.send("x");
    assert.equal(await c.next(), "node:http x");
    await c.ws.close();
    await handled[0].closed;
  } finally {
    await new Promise((r) => http.close(r));
  }
});

test("what only Deno has fails with the runtime's name and the alternative", TIMEOUT, async () => {
  const server = chatServer();
  try {
    await server.ready; // before it, upgrades get 503
    const request = new Request("http://127.0.0.1/", {
      headers: { upgrade: "websocket", connection: "upgrade" },
    });
    await assert.rejects(() => server.handler(request), (e) => {
      assert.ok(e instanceof NotSupportedError);
      assert.match(e.message, /is Deno-only: on (Node|Bun) \d+\.\d+\.\d+ .*handleNodeUpgrade/);
      return true;
    });
  } finally {
    await server.stop();
  }
  assert.throws(() => startEchoServer(), (e) => {
    assert.ok(e instanceof NotSupportedError);
    assert.match(e.message, /Deno-only: on (Node|Bun) .*serve\(\)/);
    return true;
  });
});
