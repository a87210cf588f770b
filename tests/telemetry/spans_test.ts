// The spans wse makes, read back from the SDK's in-memory exporter.
import assert from "node:assert/strict";
import { SpanKind } from "@opentelemetry/api";
import { memory } from "./memory_exporter.ts";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { createServer } from "../../src/server/server.ts";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { until } from "../server/helpers.ts";
import { within } from "../../src/util/async.ts";
import { useContextManager } from "./context_manager.ts";

useContextManager(); // so the handlers' own spans nest under the message's

const SAN = { sanitizeOps: true, sanitizeResources: true } as const;

interface Reported {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
}

Deno.test({
  name:
    "tracing: a message handled in a worker — receive (main) → process (worker) → the app's span",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const m = memory();
    const reported = new Promise<Reported[]>((resolve) => {
      const bc = new BroadcastChannel("wse-telemetry-test");
      bc.onmessage = (e) => {
        bc.close();
        resolve(e.data);
      };
    });
    const engine = new WebSocketEngine({
      url: server.url,
      reconnect: false,
      telemetry: { tracerProvider: m.provider },
      workers: { module: new URL("./fixtures/traced_worker.ts", import.meta.url), count: 1 },
      client: {
        onOpen: async (ctx) => {
          await ctx.send("hello"); // echoed back: one traced message
          await new Promise((r) => setTimeout(r, 50));
          await ctx.send("report");
        },
      },
    });
    try {
      await engine.start();
      const worker = await within(reported, { timeoutMs: 10_000, what: "the worker's spans" });
      await until(() => m.named("receive").length >= 2, "receive spans");
      const receive = m.named("receive")[0];
      assert.equal(receive.kind, SpanKind.CLIENT);
      assert.match(receive.name, /^receive 127\.0\.0\.1:\d+\/$/);
      assert.equal(receive.attributes["messaging.system"], "websocket");
      assert.equal(receive.attributes["messaging.operation.type"], "receive");
      assert.equal(receive.attributes["messaging.message.body.size"], 5);
      assert.equal(receive.attributes["messaging.client.id"], engine.sessionId);
      const process = worker.find((s) =>
        s.name === "process" && s.traceId === receive.spanContext().traceId
      )!;
      assert.ok(process, "the worker's process span is in the receive span's trace");
      assert.equal(process.kind, SpanKind.CONSUMER);
      assert.equal(process.parentSpanId, receive.spanContext().spanId);
      assert.equal(process.attributes["messaging.operation.name"], "process");
      assert.match(String(process.attributes["wse.worker.id"]), /^w\d+$/);
      const app = worker.find((s) => s.name === "app work" && s.parentSpanId === process.spanId);
      assert.ok(app, "the app's own span nests under process");
      // the send and the lifecycle
      assert.ok(m.named("send").some((s) => s.kind === SpanKind.PRODUCER));
      assert.equal(m.named("start").length, 1);
      assert.ok(m.named("callback onOpen").length === 1);
    } finally {
      await engine.stop();
      await server.close();
      await m.provider.shutdown();
    }
    const session = m.named("session")[0];
    assert.ok(session, "the session span ends with the session");
    assert.equal(session.attributes["wse.close.code"], 1001);
    assert.equal(m.named("stop").length, 1);
  },
});

Deno.test({
  name: "tracing: a reconnect — a failed attempt, then one that succeeds, each a span",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const m = memory();
    const engine = new WebSocketEngine({
      url: server.url,
      telemetry: { tracerProvider: m.provider },
      reconnect: { baseDelayMs: 20, maxDelayMs: 40 },
      client: { onRestartError: () => {} },
    });
    try {
      await engine.start();
      await server.kill();
      await until(() => m.named("reconnect").length >= 1, "a failed attempt");
      await server.restart();
      await until(() => engine.state === "open", "reconnected");
      const attempts = m.named("reconnect");
      const failed = attempts[0];
      assert.equal(failed.status.code, 2);
      assert.ok(failed.attributes["error.type"]);
      assert.equal(failed.attributes["wse.reconnect.retry_count"], 0);
      assert.equal(typeof failed.attributes["wse.reconnect.delay_ms"], "number");
      await until(() => m.named("reconnect").some((s) => s.status.code !== 2), "the good attempt");
      const sessions = m.named("session");
      assert.equal(sessions.length, 1, "the first session ended (the second is still open)");
      assert.equal(sessions[0].attributes["wse.close.code"], 1006);
    } finally {
      await engine.stop();
      await server.close();
      await m.provider.shutdown();
    }
  },
});

Deno.test({
  name: "tracing: the server — upgrade, connection, a message (receive → process), a broadcast",
  ...SAN,
  fn: async () => {
    const m = memory();
    const server = createServer({
      telemetry: { tracerProvider: m.provider },
      onMessage: (msg) => void server.broadcast(`all: ${msg.data}`),
    });
    const { port } = await server.listen();
    await server.ready;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat?x=1`);
    try {
      await new Promise((r) => (ws.onopen = r));
      const got = new Promise((r) => (ws.onmessage = r));
      ws.send("hi");
      await got;
      const upgrade = m.named("upgrade")[0];
      assert.equal(upgrade.name, "upgrade /chat");
      assert.equal(upgrade.attributes["wse.upgrade.result"], "accepted");
      const receive = m.named("receive /chat")[0];
      const process = m.spans().find((s) => s.name === "process")!;
      assert.equal(process.parentSpanContext?.spanId, receive.spanContext().spanId);
      const broadcast = m.named("broadcast")[0];
      assert.equal(broadcast.kind, SpanKind.PRODUCER);
      assert.equal(broadcast.attributes["wse.receivers"], 1);
      // the broadcast ran inside the handler: the same trace
      assert.equal(broadcast.spanContext().traceId, receive.spanContext().traceId);
      assert.equal(broadcast.parentSpanContext?.spanId, process.spanContext().spanId);
    } finally {
      ws.close();
      await server.stop();
    }
    const connection = m.named("connection /chat")[0];
    assert.ok(connection);
    assert.ok(typeof connection.attributes["wse.close.code"] === "number");
    await m.provider.shutdown();
  },
});

Deno.test({
  name: "tracing: a send from a worker's handler continues the message's trace on the main thread",
  ...SAN,
  fn: async () => {
    const m = memory();
    const server = createServer({
      telemetry: { tracerProvider: m.provider },
      workers: { module: new URL("./fixtures/echo_worker.ts", import.meta.url), count: 1 },
    });
    const { port } = await server.listen();
    await server.ready;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
    try {
      await new Promise((r) => (ws.onopen = r));
      const got = new Promise<MessageEvent>((r) => (ws.onmessage = r));
      ws.send("hi");
      assert.equal((await got).data, "echo hi");
      await until(() => m.spans().some((s) => s.name.startsWith("send ")), "the send span");
      const receive = m.named("receive /echo")[0];
      const send = m.spans().find((s) => s.name.startsWith("send "))!;
      // the worker has no SDK of its own: its handler's context is the receive span's
      assert.equal(send.spanContext().traceId, receive.spanContext().traceId);
      assert.equal(send.parentSpanContext?.spanId, receive.spanContext().spanId);
    } finally {
      ws.close();
      await server.stop();
    }
    await m.provider.shutdown();
  },
});
