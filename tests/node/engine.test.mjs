// The client engine on Node and Bun: the default adapter (our transport on node:net), npm:ws,
// TLS on node:tls, reconnects, and onMessage in a pool of two worker threads.
import assert from "node:assert/strict";
import { test } from "node:test";
import { threadId } from "node:worker_threads";
import { NotSupportedError, WebSocketEngine, whatwgAdapter, wsAdapter } from "@wse/engine";
import { serve } from "@wse/engine/transport";
import { client, testCertificates, TIMEOUT, until } from "./helpers.mjs";

/** A server on our transport, echoing unless `echo` is false; `peers` holds its connections. */
async function echoServer(options = {}, echo = true) {
  const peers = [];
  const requests = [];
  const server = serve({
    port: 0,
    ...options,
    onConnection: async (ws, request) => {
      peers.push(ws);
      requests.push(request);
      if (echo) { for await (const m of ws) await ws.send(m.data); }
    },
  });
  await server.listening;
  const url = `${options.tls ? "wss" : "ws"}://localhost:${server.port}/`;
  return { server, peers, requests, url };
}

/** An engine that records what its main-thread onMessage got. */
function recordingEngine(url, extra = {}) {
  const got = [];
  const opens = [];
  const engine = new WebSocketEngine({
    url,
    reconnect: { baseDelayMs: 10, maxDelayMs: 50 },
    ...extra,
    client: {
      onOpen: (ctx) => void opens.push(ctx),
      onMessage: (m) => void got.push(m.data),
      ...extra.client,
    },
  });
  return { engine, got, opens };
}

for (const [name, adapter] of [["default (our transport)", undefined], ["npm:ws", wsAdapter()]]) {
  test(`engine, ${name} adapter: open, send, receive, ping, stop`, TIMEOUT, async () => {
    const { server, url } = await echoServer();
    const { engine, got } = recordingEngine(url, { adapter });
    try {
      await engine.start();
      assert.equal(engine.state, "open");
      for (let i = 0; i < 50; i++) await engine.send(`m${i}`);
      await until(() => got.length === 50, "50 echoes");
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `m${i}`));
      // The WHATWG WebSocket cannot ping: a round trip proves this is not it.
      assert.ok((await engine.ping()) >= 0);
    } finally {
      await engine.stop();
      await server.close();
    }
  });
}

test(
  "engine, WHATWG adapter: the runtime's WebSocket, or a clear error without one",
  TIMEOUT,
  async () => {
    const { server, url } = await echoServer();
    const { engine, got } = recordingEngine(url, { adapter: whatwgAdapter() });
    try {
      if (typeof globalThis.WebSocket !== "function") {
        // Node 20 has no global WebSocket (a client since Node 22)
        await assert.rejects(() => engine.start(), (e) => {
          assert.ok(e.cause instanceof NotSupportedError, String(e.cause));
          assert.match(
            e.cause.message,
            /^Node \d+\.\d+\.\d+ has no global WebSocket: use wseAdapter/,
          );
          return true;
        });
        return;
      }
      await engine.start();
      await engine.send("via the runtime's WebSocket");
      await until(() => got.length === 1, "the echo");
      assert.equal(got[0], "via the runtime's WebSocket");
    } finally {
      await engine.stop();
      await server.close();
    }
  },
);

test("our transport: permessage-deflate (node:zlib) both ends", TIMEOUT, async () => {
  const { server, url } = await echoServer({ compression: true });
  try {
    const c = await client(url); // offers permessage-deflate by default
    assert.match(c.ws.extensions, /permessage-deflate/);
    const big = "compressible ".repeat(10_000);
    await c.ws.send(big);
    assert.equal(await c.next(), big);
    assert.ok(c.ws.stats.bytesIn < big.length / 10, JSON.stringify(c.ws.stats));
    await c.ws.close();
  } finally {
    await server.close();
  }
});

test("engine: reconnects when the server drops the connection", TIMEOUT, async () => {
  const { server, peers, url } = await echoServer();
  const { engine, got, opens } = recordingEngine(url);
  try {
    await engine.start();
    await until(() => peers.length === 1, "the first connection");
    peers[0].terminate(); // no close frame: the engine sees 1006 and dials again
    await until(() => opens.length === 2 && engine.state === "open", "a second session");
    await engine.send("after");
    await until(() => got.includes("after"), "the echo on the new connection");
  } finally {
    await engine.stop();
    await server.close();
  }
});

test("engine over wss:// (node:tls both ends, a test CA)", TIMEOUT, async () => {
  const { ca, cert, key } = testCertificates();
  const { server, url } = await echoServer({ tls: { cert, key } });
  try {
    const c = await client(url, { caCerts: [ca] });
    await c.ws.send("secret");
    assert.equal(await c.next(), "secret");
    await c.ws.close();
    // without the CA the certificate is refused
    await assert.rejects(() => client(url), { name: "DialError" });
  } finally {
    await server.close();
  }
});

test(
  "engine with a pool of two worker threads: both handle messages, pause, death",
  TIMEOUT,
  async () => {
    const { server, peers, url } = await echoServer({}, false);
    const errors = [];
    const { engine } = recordingEngine(url, {
      workers: { module: new URL("./fixtures/echo_worker.mjs", import.meta.url), count: 2 },
      client: { onMessage: undefined, onReadError: (e) => void errors.push(e) },
    });
    try {
      await engine.start();
      await until(() => peers.length === 1, "the connection");
      const peer = peers[0];
      const replies = [];
      void (async () => {
        for await (const m of peer) replies.push(m.data);
      })();
      const next = async (prefix) => {
        await until(() => replies.some((r) => r.startsWith(prefix)), `a reply "${prefix}..."`);
        return replies.splice(replies.findIndex((r) => r.startsWith(prefix)), 1)[0];
      };
      // Many messages: both workers take some, each on its own thread (not the main one).
      for (let i = 0; i < 200; i++) await peer.send(`m${i}`);
      await until(() => replies.length === 200, "200 answers");
      const workers = new Set(replies.map((r) => r.split(" ")[3]));
      const threads = new Set(replies.map((r) => Number(r.split(" ")[6])));
      assert.deepEqual([...workers].sort(), ["w1", "w2"]);
      assert.equal(threads.size, 2);
      assert.ok(!threads.has(threadId), "not on the main thread");
      replies.length = 0;
      // The pause button: a worker holds the read lock; the next message goes to its lease.
      await peer.send("pause");
      const holder = (await next("holding by ")).slice("holding by ".length);
      await peer.send("after");
      assert.equal(await next("lease of "), `lease of ${holder} read after`);
      assert.ok(!replies.some((r) => r.startsWith("done after")));
      // A worker that throws, and one that exits, are replaced; messages still flow.
      for (
        const [kill, reason] of [["throw", /boom in a worker/], ["exit", /exited with code 3/]]
      ) {
        await peer.send(kill);
        await until(() => errors.some((e) => reason.test(e.message)), `the death of "${kill}"`);
        assert.ok(errors.every((e) => e.name === "WorkerDiedError"), String(errors));
        await peer.send(`alive after ${kill}`);
        await next(`done alive after ${kill} by `);
      }
    } finally {
      await engine.stop();
      await server.close();
    }
  },
);
