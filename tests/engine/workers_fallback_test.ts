// Where workers cannot share memory (a browser page that is not cross-origin isolated), the pool
// refuses and says why, and the engine runs the worker module inline only when asked to. Deno
// has shared memory, so these tests make the page's `crossOriginIsolated === false` for the
// duration of a construction; tests/browser/ runs the same in a real non-isolated page.
import assert from "node:assert/strict";
import { PoolDispatcher } from "../../src/dispatch/pool.ts";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineOptionError } from "../../src/engine/errors.ts";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { NotSupportedError } from "../../src/transport/types.ts";
import { SAN, waitFor } from "../dispatch/helpers.ts";

const HANDLER = new URL("./fixtures/engine_handler.ts", import.meta.url);

/** Runs `fn` as if on a page that is not cross-origin isolated. */
function notIsolated<T>(fn: () => T): T {
  Object.defineProperty(globalThis, "crossOriginIsolated", { value: false, configurable: true });
  try {
    return fn();
  } finally {
    delete (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  }
}

Deno.test("not isolated: the pool and the engine refuse, naming the headers and the fallback", () => {
  assert.throws(
    () => notIsolated(() => new PoolDispatcher({ module: HANDLER, count: 1 })),
    (e: Error) => {
      assert.ok(e instanceof NotSupportedError);
      assert.match(e.message, /crossOriginIsolated is false/);
      assert.match(e.message, /Cross-Origin-Opener-Policy: same-origin/);
      assert.match(e.message, /Cross-Origin-Embedder-Policy: require-corp/);
      return true;
    },
  );
  const options = { url: "ws://127.0.0.1:1/", client: {}, workers: { module: HANDLER } };
  assert.throws(
    () => notIsolated(() => new WebSocketEngine(options)),
    (e: Error) => {
      assert.ok(e instanceof EngineOptionError);
      assert.equal(e.field, "workers");
      assert.match(e.message, /crossOriginIsolated is false/);
      assert.match(e.message, /workers\.fallback to "inline"/);
      return true;
    },
  );
  assert.throws(
    () =>
      new WebSocketEngine({
        ...options,
        // @ts-expect-error: not a fallback
        workers: { module: HANDLER, fallback: "main" },
      }),
    (e: Error) => e instanceof EngineOptionError && e.field === "workers.fallback",
  );
});

for (const isolated of [false, true]) {
  Deno.test({
    name: `fallback "inline", ${isolated ? "isolated: the pool runs" : "not isolated: main runs"}`,
    ...SAN,
    fn: async () => {
      const server = startEchoServer();
      const build = () =>
        new WebSocketEngine({
          url: server.url,
          reconnect: false,
          workers: { module: HANDLER, count: 2, fallback: "inline" },
          client: {
            onOpen: async (ctx) => {
              for (let i = 0; i < 10; i++) await ctx.send(`job:${i}`);
            },
          },
        });
      const engine = isolated ? build() : notIsolated(build);
      try {
        await engine.start();
        const done = () =>
          server.received.filter((d): d is string => typeof d === "string" && /^done:/.test(d));
        await waitFor(() => done().length === 10, "10 answers");
        const who = new Set(done().map((d) => d.slice(d.lastIndexOf(":") + 1)));
        if (isolated) { for (const w of who) assert.match(w, /^w\d+$/); }
        else assert.deepEqual(who, new Set(["main"]));
      } finally {
        await engine.stop();
        await server.close();
      }
    },
  });
}
