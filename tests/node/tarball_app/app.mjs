// An application that installed @wse/engine from its tarball: a server, a client and a pool of two
// workers, each checked; prints "pass <check>" or "fail <check>: <error>" per check.
import assert from "node:assert/strict";
import { WebSocketEngine } from "@wse/engine";
import { createServer } from "@wse/engine/server";
import { connect } from "@wse/engine/transport";

const checks = {
  async server() {
    const server = createServer({
      checkOrigin: "*",
      onMessage: (m, ctx) => ctx.send(`re ${m.data}`),
    });
    try {
      const { port } = await server.listen();
      await server.ready;
      const ws = await connect(`ws://127.0.0.1:${port}/`);
      await ws.send("ping");
      for await (const m of ws) {
        assert.equal(m.data, "re ping");
        break;
      }
      await ws.close();
    } finally {
      await server.stop();
    }
  },
  async client() {
    const got = [];
    const server = createServer({ checkOrigin: "*", onMessage: (m, ctx) => ctx.send(m.data) });
    const { port } = await server.listen();
    await server.ready;
    const engine = new WebSocketEngine({
      url: `ws://127.0.0.1:${port}/`,
      client: { onMessage: (m) => void got.push(m.data) },
    });
    try {
      await engine.start();
      for (let i = 0; i < 10; i++) await engine.send(`m${i}`);
      await until(() => got.length === 10, "10 echoes");
      assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `m${i}`));
    } finally {
      await engine.stop();
      await server.stop();
    }
  },
  async pool() {
    const got = [];
    let peer;
    const server = createServer({
      checkOrigin: "*",
      onConnect: (ctx) => void (peer = ctx.id),
      onMessage: (m) => void got.push(m.data),
    });
    const { port } = await server.listen();
    await server.ready;
    const engine = new WebSocketEngine({
      url: `ws://127.0.0.1:${port}/`,
      workers: { module: new URL("./handler.mjs", import.meta.url), count: 2 },
      client: {},
    });
    try {
      await engine.start();
      await until(() => peer !== undefined, "the connection");
      for (let i = 0; i < 100; i++) await server.send(peer, `m${i}`);
      await until(() => got.length === 100, "100 answers from the workers");
      const workers = new Set(got.map((s) => s.split(" ").at(-1)));
      assert.deepEqual([...workers].sort(), ["w1", "w2"]);
    } finally {
      await engine.stop();
      await server.stop();
    }
  },
};

async function until(cond, what) {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const guard = setTimeout(() => {
  console.log("fail app: still running after 60 s");
  process.exit(1);
}, 60_000);
let failed = 0;
for (const [name, check] of Object.entries(checks)) {
  try {
    await check();
    console.log(`pass ${name}`);
  } catch (e) {
    failed++;
    console.log(`fail ${name}: ${e?.stack ?? e}`);
  }
}
clearTimeout(guard);
process.exitCode = failed ? 1 : 0;
