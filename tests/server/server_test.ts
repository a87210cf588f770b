// The server's behavioural suite, run on each way it is reached (own listener, Deno.serve,
// node:http upgrade) with real clients on 127.0.0.1.
import assert from "node:assert/strict";
import type { DisconnectInfo } from "../../src/server/context.ts";
import { SendBufferError, UnknownConnectionError } from "../../src/server/errors.ts";
import { createServer } from "../../src/server/server.ts";
import { MOUNTS, withServer } from "./mounts.ts";
import { client, rawStatus, SAN, until, upgradeRequest } from "./helpers.ts";

for (const m of MOUNTS) {
  const test = (name: string, fn: () => Promise<void>, skip?: string) => {
    if (skip) {
      Deno.test({ name: `[${m.name}] ${name}`, ignore: true, fn });
      console.warn(`skipped: [${m.name}] ${name}: ${skip}`);
      return;
    }
    Deno.test({ name: `[${m.name}] ${name}`, ...SAN, fn });
  };

  test("ids, connect info, echo through the handlers, inspect, count", async () => {
    const connects: { id: string; url: string }[] = [];
    await withServer(m, {
      onConnect: (ctx, info) => void connects.push({ id: ctx.id, url: info.url }),
      onMessage: (msg, ctx) => ctx.send(`${ctx.id}:${msg.data}`),
    }, async (server, at) => {
      const a = await client(at.url, { path: "/room/1?x=2" });
      const b = await client(at.url);
      await until(() => server.count === 2 && connects.length === 2, "two connections");
      const [ida, idb] = connects.map((c) => c.id);
      assert.match(ida, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}$/, "node.random96");
      assert.notEqual(ida, idb);
      assert.equal(connects[0].url, "/room/1?x=2");
      assert.deepEqual(new Set(server.ids()), new Set([ida, idb]));
      a.ws.send("hello");
      assert.equal(await a.next(), `${ida}:hello`);
      const info = await server.inspect(ida);
      assert.equal(info.messagesIn, 1);
      assert.equal(info.messagesOut, 1);
      assert.equal(info.direction, "inbound");
      assert.equal(info.headers["sec-websocket-version"], "13");
      await a.close();
      await b.close();
      await until(() => server.count === 0, "both gone");
      await assert.rejects(server.inspect(ida), UnknownConnectionError);
    });
  });

  test("send by id from anywhere; an unknown or closed id rejects naming it", async () => {
    const ids: string[] = [];
    await withServer(m, { onConnect: (ctx) => void ids.push(ctx.id) }, async (server, at) => {
      const a = await client(at.url);
      await until(() => ids.length === 1, "connect");
      await server.send(ids[0], "pushed");
      await server.send(ids[0], new Uint8Array([1, 2, 3]));
      assert.equal(await a.next(), "pushed");
      assert.equal(await a.next(), "bin:3");
      await a.close();
      await until(() => server.count === 0, "closed");
      const err = await server.send(ids[0], "late").catch((e) => e);
      assert.ok(err instanceof UnknownConnectionError);
      assert.equal(err.id, ids[0]);
      assert.match(err.message, new RegExp(ids[0].replace(".", "\\.")));
      await assert.rejects(server.send("nobody.AAAAAAAAAAAAAAAA", "x"), UnknownConnectionError);
    });
  });

  test("broadcast (except) and topics: publish, unsubscribe, membership dropped on disconnect", async () => {
    const ids: string[] = [];
    await withServer(m, {
      onConnect: async (ctx) => {
        ids.push(ctx.id);
        await ctx.subscribe("room");
      },
      onMessage: async (msg, ctx) => {
        if (msg.data === "leave") await ctx.unsubscribe("room");
        else await ctx.server.publish("room", `${msg.data}`, { except: ctx.id });
      },
    }, async (server, at) => {
      const cs = [await client(at.url), await client(at.url), await client(at.url)];
      await until(() => server.subscribers("room") === 3, "three subscribers");
      assert.equal(server.broadcast("to all", { except: ids[0] }), 2);
      assert.equal(await cs[1].next(), "to all");
      assert.equal(await cs[2].next(), "to all");
      cs[0].ws.send("from 0");
      assert.equal(await cs[1].next(), "from 0");
      assert.equal(await cs[2].next(), "from 0");
      cs[2].ws.send("leave");
      await until(() => server.subscribers("room") === 2, "one left");
      assert.deepEqual((await server.inspect(ids[2])).topics, []);
      assert.equal(server.publish("room", "after leave"), 2);
      assert.equal(await cs[0].next(), "after leave");
      assert.equal(await cs[1].next(), "after leave");
      await cs[1].close();
      await until(() => server.subscribers("room") === 1, "a disconnect leaves its topics");
      assert.equal(server.publish("nobody-here", "x"), 0);
      await cs[0].close();
      await cs[2].close();
      assert.deepEqual(cs[2].received, ["to all", "from 0"], "no publish after unsubscribing");
    });
  });

  test("exactly one disconnect per connect, whatever ends it", async () => {
    const handled: DisconnectInfo[] = [];
    const evented: DisconnectInfo[] = [];
    const ids: string[] = [];
    const server = createServer({
      onConnect: (ctx) => void ids.push(ctx.id),
      onDisconnect: (info) => void handled.push(info),
    });
    server.on("disconnect", (e) => evented.push(e));
    const at = await m.mount(server);
    try {
      await server.ready;
      const cs = await Promise.all([1, 2, 3, 4, 5].map(() => client(at.url)));
      await until(() => ids.length === 5, "five connects");
      await cs[0].close(4001, "client says bye"); // the peer
      await server.close(ids[1], 4002, "server says bye"); // close(id)
      await server.terminate(ids[2]); // terminate(id)
      await until(() => handled.length === 3, "three handled");
      // the server stops with two still open
      await server.stop({ timeoutMs: 2000 });
      assert.equal(handled.length, 5);
      assert.equal(evented.length, 5);
      assert.deepEqual(new Set(handled.map((h) => h.id)), new Set(ids));
      assert.deepEqual(new Set(evented.map((h) => h.id)), new Set(ids));
      const by = (id: string) => handled.find((h) => h.id === id)!;
      assert.equal(by(ids[0]).code, 4001);
      assert.equal(by(ids[1]).code, 4002);
      assert.equal(by(ids[2]).code, 1006);
      if (!m.lacks.closeCodes) assert.equal(by(ids[3]).code, 1001);
      for (const c of cs) await c.closed;
    } finally {
      await server.stop();
      await at.close();
    }
  });

  test("cross-origin gets 403; same origin and non-browser clients pass; an allow-list", async () => {
    await withServer(m, { onMessage: () => {} }, async (_server, at) => {
      const status = await rawStatus(
        at.port,
        upgradeRequest(at.port, { Origin: "https://evil.example" }),
      );
      assert.equal(status, 403);
      const same = await client(at.url, { headers: { Origin: `http://127.0.0.1:${at.port}` } });
      const none = await client(at.url);
      await same.close();
      await none.close();
    });
    await withServer(m, {
      onMessage: () => {},
      checkOrigin: ["https://app.example"],
    }, async (_server, at) => {
      const ok = await client(at.url, { headers: { Origin: "https://app.example" } });
      await ok.close();
      const status = await rawStatus(
        at.port,
        upgradeRequest(at.port, { Origin: "https://x.example" }),
      );
      assert.equal(status, 403);
    });
  });

  test("a message over maxPayload closes the connection (1009 where the transport is ours)", async () => {
    await withServer(m, { onMessage: () => {}, maxPayload: 1000 }, async (_server, at) => {
      const a = await client(at.url);
      a.ws.send("x".repeat(2000));
      const closed = await a.closed;
      if (m.lacks.closeCodes) assert.equal(closed.reason, "message too big");
      else assert.equal(closed.code, 1009);
    });
  });

  test("the connection limit answers 503", async () => {
    await withServer(m, { onMessage: () => {}, maxConnections: 2 }, async (server, at) => {
      const a = await client(at.url);
      const b = await client(at.url);
      await until(() => server.count === 2, "two");
      assert.equal(await rawStatus(at.port, upgradeRequest(at.port)), 503);
      await a.close();
      await until(() => server.count === 1, "one left");
      const c = await client(at.url);
      await b.close();
      await c.close();
    });
  });

  test("503 while it drains", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    await withServer(m, {
      onMessage: () => {},
      onDisconnect: () => gate, // the drain waits for this handler
    }, async (server, at) => {
      const a = await client(at.url);
      await until(() => server.count === 1, "connected");
      const stopping = server.stop({ timeoutMs: 5000 });
      await until(() => server.state === "draining", "draining");
      assert.equal(await rawStatus(at.port, upgradeRequest(at.port)), 503);
      release();
      await stopping;
      await a.closed;
      assert.equal(server.state, "stopped");
    });
  });

  test("the slow-consumer policy: close (1008) or drop, always reported", async () => {
    for (const policy of ["close", "drop"] as const) {
      const drops: number[] = [];
      const ids: string[] = [];
      await withServer(m, {
        onConnect: (ctx) => void ids.push(ctx.id),
        sendBuffer: { limit: 256 * 1024, policy },
      }, async (server, at) => {
        server.on("drop", (e) => drops.push(e.bytes));
        // A client that never reads: a raw socket after the handshake.
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: at.port });
        await conn.write(new TextEncoder().encode(upgradeRequest(at.port)));
        await until(() => ids.length === 1, "connected");
        const big = new Uint8Array(128 * 1024);
        let refused: unknown;
        for (let i = 0; i < 2000 && !refused; i++) {
          refused = await server.send(ids[0], big).then(() => undefined, (e) => e);
        }
        assert.ok(refused instanceof SendBufferError, String(refused));
        assert.equal(refused.policy, policy);
        if (policy === "drop") {
          assert.ok(drops.length >= 1);
          assert.equal((await server.inspect(ids[0])).dropped, drops.length);
          assert.ok(server.has(ids[0]), "still open");
        } else {
          // closing: further sends are refused by id
          await assert.rejects(server.send(ids[0], "x"), UnknownConnectionError);
        }
        conn.close();
        await until(() => server.count === 0, "gone");
      });
    }
  });

  test(
    "a slow-loris handshake is closed after handshakeTimeoutMs",
    async () => {
      await withServer(m, { onMessage: () => {}, handshakeTimeoutMs: 200 }, async (_s, at) => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: at.port });
        await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n"));
        const t0 = performance.now();
        const n = await conn.read(new Uint8Array(64)).catch(() => null);
        assert.equal(n, null, "the server hung up");
        assert.ok(performance.now() - t0 < 5000);
        conn.close();
      });
    },
    m.lacks.slowLoris,
  );

  test("a flood from one client does not starve the others", async () => {
    const ids: string[] = [];
    let flood = 0; // messages handled from the flooder (the first connection)
    await withServer(m, {
      onConnect: (ctx) => void ids.push(ctx.id),
      onMessage: (msg, ctx) => {
        if (ctx.id === ids[0]) flood++;
        return msg.data === "ping" ? ctx.send("pong") : undefined;
      },
    }, async (_server, at) => {
      // The flooder is another process writing frames as fast as the socket takes them.
      const flooder = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-net",
          new URL("./fixtures/flood.ts", import.meta.url).pathname,
          String(at.port),
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const out = flooder.stdout.getReader();
      try {
        await out.read(); // "flooding"
        await until(() => flood > 1000, "a flood");
        const other = await client(at.url);
        const before = flood;
        for (let i = 0; i < 10; i++) {
          other.ws.send("ping");
          assert.equal(await other.next(), "pong");
        }
        const during = flood - before;
        assert.ok(during > 0, "the flood went on while the other client was answered");
        console.log(`  [${m.name}] ${during} flood messages handled during 10 round trips`);
        await other.close();
      } finally {
        try {
          flooder.kill();
        } catch { /* the server may have closed it already (a runtime socket cannot pause) */ }
        await out.cancel();
        await flooder.status;
      }
    });
  });

  test("a burst of 2,000 connects is accepted", async () => {
    await withServer(m, { onMessage: () => {} }, async (server, at) => {
      const opened = await Promise.allSettled(
        Array.from({ length: 2000 }, () => client(at.url)),
      );
      const failed = opened.filter((r) => r.status === "rejected");
      assert.equal(failed.length, 0, String((failed[0] as PromiseRejectedResult)?.reason));
      await until(() => server.count === 2000, "2000 open", 20_000);
      for (const r of opened) if (r.status === "fulfilled") r.value.ws.close();
      await until(() => server.count === 0, "all closed", 20_000);
      await Promise.all(opened.map((r) => r.status === "fulfilled" && r.value.closed));
    });
  });

  test("plain HTTP goes to fetch; without it, 426", async () => {
    await withServer(m, {
      onMessage: () => {},
      fetch: (req) => new Response(`page for ${new URL(req.url).pathname}`),
    }, async (_server, at) => {
      const res = await fetch(`http://127.0.0.1:${at.port}/index.html`);
      const body = await res.text();
      if (m.name === "node") assert.equal(body, "plain HTTP"); // node:http answers these itself
      else assert.equal(body, "page for /index.html");
    });
  });
}

Deno.test({
  name: "server: invalid options are named errors",
  fn() {
    assert.throws(() => createServer({}), /a server needs handlers/);
    assert.throws(
      () => createServer({ onMessage: () => {}, workers: { module: "./x.ts" } }),
      /cannot be combined/,
    );
    assert.throws(
      () => createServer({ onMessage: () => {}, keepAlive: { intervalMs: -1 } }),
      /keepAlive\.intervalMs/,
    );
    assert.throws(
      () => createServer({ onMessage: () => {}, checkOrigin: ["not an origin"] }),
      /checkOrigin/,
    );
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => createServer({ onMessage: () => {}, maxConection: 3 } as any),
      /maxConection: is not a server option/,
    );
    assert.throws(
      () => createServer({ onMessage: () => {}, sendBuffer: { policy: "ignore" as "drop" } }),
      /sendBuffer\.policy/,
    );
  },
});
