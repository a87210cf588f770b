/**
 * Engine lifecycle regressions: races between stop(), start() and the callbacks, each a
 * deterministic case with the sanitizers on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { startEchoServer, until } from "./kit.ts";

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
