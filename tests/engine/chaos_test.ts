/**
 * Engine lifecycle regressions: races between stop(), start() and the callbacks, each a
 * deterministic case with the sanitizers on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineStartError } from "../../src/engine/errors.ts";
import type { AdapterConnection, WebSocketAdapter } from "../../src/transport/types.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { startEchoServer, until } from "./kit.ts";

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Resolves after `n` microtask turns (no timer). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

Deno.test({
  name: "regression: stop() right after a restart stops the new run, not the previous stop's",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // The first run's dispatcher is still closing (a handler in flight) when its state already
    // reads "stopped"; a start() then succeeds, and the next stop() used to return the first
    // run's pending stop promise: it resolved with the new run still open.
    const server = startEchoServer();
    let release!: () => void;
    const busy = new Promise<void>((r) => (release = r));
    let handling = false;
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: whatwgAdapter(),
      stopTimeoutMs: 300,
      client: {
        onMessage: async () => {
          handling = true;
          await busy;
        },
      },
    });
    try {
      await engine.start();
      await engine.send("x");
      await until(() => handling, "the handler runs");
      const first = engine.stop();
      await until(() => engine.state === "stopped", "the first run stopped");
      await engine.start();
      assert.equal(engine.state, "open");
      const second = engine.stop();
      assert.notEqual(second, first);
      await second;
      assert.equal(engine.state, "stopped");
      assert.equal(engine.isStarted, false);
      release();
      await first;
    } finally {
      release();
      await engine.stop();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "regression: stop() in the turns after onOpen returns waits for the close; state stays stopping",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // stop() called a few microtask turns after onOpen returned, before the session was
    // activated: on start() it awaited a stale task and resolved before the session's close
    // handshake; on a reconnect the activation overwrote "stopping" with "open".
    const server = startEchoServer();
    try {
      for (const path of ["start", "reconnect"] as const) {
        for (let k = 0; k < 8; k++) {
          let opens = 0;
          let stopping: Promise<void> | undefined;
          const states: string[] = [];
          const unsettled = new Set<AdapterConnection>();
          const inner = wsAdapter();
          const adapter: WebSocketAdapter = {
            name: "observed",
            async dial(url, options) {
              const conn = await inner.dial(url, options);
              unsettled.add(conn);
              const close = conn.close.bind(conn);
              const terminate = conn.terminate.bind(conn);
              conn.close = (...args) => close(...args).finally(() => unsettled.delete(conn));
              conn.terminate = () => (unsettled.delete(conn), terminate());
              return conn;
            },
          };
          const engine: WebSocketEngine = new WebSocketEngine({
            url: server.url,
            adapter,
            stopTimeoutMs: 300,
            reconnect: { baseDelayMs: 1, maxDelayMs: 2 },
            client: {
              onOpen() {
                if (++opens === (path === "start" ? 1 : 2)) {
                  void turns(k).then(async () => {
                    stopping = engine.stop();
                    for (let i = 0; i < 8; i++, await Promise.resolve()) states.push(engine.state);
                  });
                }
              },
            },
          });
          await engine.start().catch((e) => assert.ok(e instanceof EngineStartError));
          if (path === "reconnect") server.closeAll(1000, "again");
          await until(() => stopping !== undefined, "stop() called");
          await stopping;
          const what = `${path}, stop ${k} turns after onOpen`;
          assert.equal(engine.state, "stopped", what);
          const open = [...unsettled].filter((c) => !c.isClosed).length;
          assert.equal(open, 0, `${what}: stop() resolved before the close`);
          assert.ok(states.every((s) => s === "stopping" || s === "stopped"), `${what}: ${states}`);
        }
      }
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "regression: a handler that outlives stop() and throws does not reach the next run",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // onReadError used the engine's current run: the late error of a stopped run's handler was
    // reported during the next run, with a context whose exit() stopped that next run.
    const server = startEchoServer();
    const readErrors: string[] = [];
    let handling = false;
    let done!: () => void;
    const thrown = new Promise<void>((r) => (done = r));
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: whatwgAdapter(),
      stopTimeoutMs: 50,
      client: {
        onMessage: async () => {
          handling = true;
          await delay(150);
          done();
          throw new Error("late");
        },
        onReadError: (_e, ctx) => {
          readErrors.push(ctx.sessionId);
          ctx.exit();
        },
      },
    });
    try {
      await engine.start();
      await engine.send("x");
      await until(() => handling, "the handler runs");
      await engine.stop(); // the handler outlives the 50 ms budget
      await engine.start();
      await thrown;
      await delay(20);
      assert.deepEqual(readErrors, []);
      assert.equal(engine.state, "open");
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});
