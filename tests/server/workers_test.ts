// The server with its handlers in a worker pool: sticky assignment, and every operation from a
// worker's context.
import assert from "node:assert/strict";
import { createServer } from "../../src/server/server.ts";
import { client, rawStatus, SAN, until, upgradeRequest } from "./helpers.ts";

const HANDLERS = new URL("./fixtures/handlers.ts", import.meta.url);

Deno.test({
  name: "server workers: sticky — each connection handled by one worker, spread round-robin",
  ...SAN,
  fn: async () => {
    const server = createServer({ workers: { module: HANDLERS, count: 2 } });
    const { port } = await server.listen();
    await server.ready;
    try {
      const cs = [];
      for (let i = 0; i < 6; i++) cs.push(await client(`ws://127.0.0.1:${port}/`));
      const hellos = await Promise.all(cs.map((c) => c.next()));
      const workerOf = hellos.map((h) => h.split(" from ")[1]);
      assert.equal(new Set(workerOf).size, 2, "both workers have connections");
      for (let i = 2; i < 6; i++) assert.equal(workerOf[i], workerOf[i - 2], "round-robin");
      for (let k = 0; k < 20; k++) for (const c of cs) c.ws.send(`m${k}`);
      for (let i = 0; i < cs.length; i++) {
        for (let k = 0; k < 20; k++) {
          // in order, counted by the worker's own per-connection state, always the same worker
          assert.equal(await cs[i].next(), `m${k} #${k + 1} by ${workerOf[i]}`);
        }
      }
      for (const c of cs) await c.close();
      await until(() => server.count === 0, "all closed");
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "server workers: send by id, publish, count, inspect, close — from a worker",
  ...SAN,
  fn: async () => {
    const server = createServer({ workers: { module: HANDLERS, count: 2 } });
    const { port } = await server.listen();
    await server.ready;
    try {
      const a = await client(`ws://127.0.0.1:${port}/`);
      const b = await client(`ws://127.0.0.1:${port}/`);
      const idA = (await a.next()).split(" ")[1];
      const idB = (await b.next()).split(" ")[1];
      a.ws.send(`to ${idB}`);
      assert.equal(await b.next(), `from ${idA}`);
      a.ws.send("to-gone");
      assert.match(
        await a.next(),
        /^true nobody\.AAAAAAAAAAAAAAAA UnknownConnectionError: no open connection with id "nobody/,
      );
      b.ws.send("publish x");
      assert.equal(await a.next(), "published x");
      assert.equal(await b.next(), "published x");
      a.ws.send("count");
      assert.equal(await a.next(), "count 2");
      a.ws.send("inspect");
      assert.equal(await a.next(), "inspect true all");
      b.ws.send("bye");
      const closed = await b.closed;
      assert.equal(closed.code, 4000);
      assert.equal(closed.reason, "bye from a worker");
      await a.close();
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "server: connect() holds an outbound link in the same model; broadcasts skip it",
  ...SAN,
  fn: async () => {
    const upstream = createServer({
      onMessage: (m, ctx) => ctx.send(`upstream got ${m.data}`),
    });
    const { port } = await upstream.listen();
    await upstream.ready;
    const events: string[] = [];
    const server = createServer({
      onConnect: (_ctx, info) => void events.push(`connect ${info.direction} ${info.url}`),
      onMessage: (m) => void events.push(`message ${m.data}`),
      onDisconnect: (info) => void events.push(`disconnect ${info.code}`),
    });
    await server.ready;
    try {
      const id = await server.connect(`ws://127.0.0.1:${port}/svc`);
      assert.equal((await server.inspect(id)).direction, "outbound");
      await server.send(id, "hi");
      await until(() => events.includes("message upstream got hi"), "the answer");
      assert.equal(server.broadcast("to clients"), 0, "an outbound link is not a client");
      await server.close(id, 1000, "done");
      await until(() => events.some((e) => e.startsWith("disconnect")), "the end");
      assert.deepEqual(events, [
        `connect outbound ws://127.0.0.1:${port}/svc`,
        "message upstream got hi",
        "disconnect 1000",
      ]);
    } finally {
      await server.stop();
      await upstream.stop();
    }
  },
});

Deno.test({
  name: "server: 503 until its workers are up",
  ...SAN,
  fn: async () => {
    const slow = new URL("./fixtures/slow_module.ts", import.meta.url);
    const server = createServer({ workers: { module: slow, count: 1 } });
    try {
      const { port } = await server.listen(); // bound at once; the module still loads
      assert.equal(server.state, "starting");
      assert.equal(await rawStatus(port, upgradeRequest(port)), 503);
      await server.ready;
      const c = await client(`ws://127.0.0.1:${port}/`);
      await c.close();
    } finally {
      await server.stop();
    }
  },
});
