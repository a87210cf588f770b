import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { SAN, waitFor } from "../dispatch/helpers.ts";

Deno.test({
  name: "engine + workers option: onMessage runs in the pool, sends reach the socket",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const engine = new WebSocketEngine({
      url: server.url,
      reconnect: false,
      workers: { module: new URL("./fixtures/engine_handler.ts", import.meta.url), count: 2 },
      client: {
        onOpen: async (ctx) => {
          for (let i = 0; i < 20; i++) await ctx.send(`job:${i}`);
        },
      },
    });
    try {
      await engine.start();
      const sid = engine.sessionId!;
      const done = () =>
        server.received.filter((d) => typeof d === "string" && d.startsWith("done:"));
      await waitFor(() => done().length === 20, "20 answers from the workers");
      for (let i = 0; i < 20; i++) {
        assert.ok(done().some((d) => (d as string).startsWith(`done:job:${i}:${sid}:w`)));
      }
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});

Deno.test({
  name: "engine + workers option: a module without onMessage fails start() clearly",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const engine = new WebSocketEngine({
      url: server.url,
      reconnect: false,
      workers: { module: new URL("../dispatch/fixtures/no_handler.ts", import.meta.url), count: 1 },
      client: {},
    });
    try {
      await assert.rejects(() => engine.start(), (e: Error) => {
        const text = `${e.message} ${(e.cause as Error)?.message ?? ""}`;
        assert.match(text, /does not export a function onMessage/);
        return true;
      });
      assert.throws(
        () =>
          new WebSocketEngine({
            url: server.url,
            client: {},
            workers: { module: "./x.ts", count: 0 },
          }),
        /workers\.count/,
      );
    } finally {
      await engine.stop().catch(() => {});
      await server.close();
    }
  },
});

Deno.test({
  name: "engine + workers option: a throwing handler reaches onReadError with its worker's id",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const reported: { message: string; workerId: string; sessionId: string }[] = [];
    const engine = new WebSocketEngine({
      url: server.url,
      reconnect: false,
      workers: { module: new URL("./fixtures/engine_handler.ts", import.meta.url), count: 1 },
      client: {
        onOpen: (ctx) => ctx.send("throw:boom"), // echoed back, then thrown in the worker
        onReadError: (error, ctx) => {
          reported.push({
            message: (error as Error).message,
            workerId: ctx.workerId,
            sessionId: ctx.sessionId,
          });
        },
      },
    });
    try {
      await engine.start();
      await waitFor(() => reported.length === 1, "the handler's error reported");
      assert.match(reported[0].message, /throw:boom/);
      assert.notEqual(reported[0].workerId, "main");
      assert.match(reported[0].workerId, /^w/);
      assert.equal(reported[0].sessionId, engine.sessionId);
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});
