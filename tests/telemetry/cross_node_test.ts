// A send that crosses nodes is one trace: a client's message on node a is handled there, the
// handler sends to a connection held by node b, and node b's delivery continues a's trace (the
// context travels in the broker envelope). Both nodes run in this process on a real
// redis-server, and share one in-memory provider so the test sees every span.
import assert from "node:assert/strict";
import { SpanKind } from "@opentelemetry/api";
import { memory } from "./memory_exporter.ts";
import { createServer, type Server } from "../../src/server/server.ts";
import { RedisBroker } from "../../src/server/cluster/redis_broker.ts";
import { redisServerInstalled, startRedisServer } from "../../src/testing/redis_server.ts";
import { type Client, client, until } from "../server/helpers.ts";
import { useContextManager } from "./context_manager.ts";

useContextManager(); // so the handler's send nests under the message's process span

const installed = await redisServerInstalled();
if (!installed) {
  console.warn(
    "SKIPPED: the cross-node trace test needs redis-server (apt-get install redis-server)",
  );
}

type Recorder = ReturnType<typeof memory>;

async function node(
  redisUrl: string,
  nodeId: string,
  m: Recorder,
): Promise<{ server: Server; port: number; ids: string[]; stop(): Promise<void> }> {
  const broker = await RedisBroker.connect({ url: redisUrl, reconnectMaxDelayMs: 200 });
  const ids: string[] = [];
  const server = createServer({
    nodeId,
    checkOrigin: "*",
    cluster: { broker, heartbeatMs: 200, requestTimeoutMs: 3000 },
    telemetry: { tracerProvider: m.provider },
    // "to <id> <text>": a send from the handler, to whichever node holds <id>
    onMessage: async (msg, ctx) => {
      if (msg.type !== "text") return;
      const [cmd, id, text] = msg.data.split(" ");
      if (cmd === "to") await ctx.server.send(id, text);
    },
  });
  server.on("connect", (info) => ids.push(info.id));
  const { port } = await server.listen();
  await server.ready;
  return {
    server,
    port,
    ids,
    async stop() {
      await server.stop();
      await broker.close();
    },
  };
}

Deno.test({
  name:
    "tracing: a send from node a to a connection on node b is one trace (a's send → b's deliver)",
  ignore: !installed,
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const m = memory();
    const redis = await startRedisServer();
    const a = await node(redis.url, "a", m);
    const b = await node(redis.url, "b", m);
    const clients: Client[] = [];
    try {
      await until(() => a.server.nodes.length === 1 && b.server.nodes.length === 1, "a sees b");
      const onA = await client(`ws://127.0.0.1:${a.port}/`, { path: "/room" });
      const onB = await client(`ws://127.0.0.1:${b.port}/`, { path: "/room" });
      clients.push(onA, onB);
      await until(() => b.ids.length === 1, "b's connection id");
      const idb = b.ids[0];
      assert.match(idb, /^b\./);

      onA.ws.send(`to ${idb} hello`);
      assert.equal(await onB.next(), "hello");
      // a's send span ends once b acknowledged the delivery, after b's deliver span
      await until(() => m.named("deliver").length === 1, "b's deliver span");
      // two sends: a's (published to b), and b's own write of it, under b's deliver span
      await until(() => m.named("send").length === 2, "the send spans");
      await until(() => m.named("process").length === 1, "a's process span");

      const spans = m.spans();
      const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
      const deliver = m.named("deliver")[0];
      assert.equal(deliver.name, `deliver ${idb}`);
      assert.equal(deliver.kind, SpanKind.CONSUMER);
      assert.equal(deliver.attributes["wse.node"], "b");
      assert.equal(deliver.attributes["messaging.client.id"], idb);
      assert.equal(deliver.attributes["messaging.operation.name"], "deliver");

      const send = byId.get(deliver.parentSpanContext!.spanId)!;
      assert.ok(send, "b's deliver span has a parent among the recorded spans");
      assert.equal(send.name, `send ${idb}`, "its parent is a's send span");
      assert.equal(send.kind, SpanKind.PRODUCER);
      assert.equal(send.instrumentationScope.name, "wse.server");

      // up the chain on a: send ← process ← receive, all in the same trace
      const process = byId.get(send.parentSpanContext!.spanId)!;
      assert.equal(process.name, "process");
      const receive = byId.get(process.parentSpanContext!.spanId)!;
      assert.equal(receive.name, "receive /room");
      assert.equal(receive.parentSpanContext, undefined, "the trace starts at a's socket");
      // down the chain on b: deliver → b's send (the write to b's socket)
      const write = m.named("send").find((s) => s !== send)!;
      assert.equal(write.parentSpanContext?.spanId, deliver.spanContext().spanId);
      const trace = receive.spanContext().traceId;
      for (const s of [process, send, deliver, write]) {
        assert.equal(s.spanContext().traceId, trace);
      }
      // a's receive is a's client's message; b holds idb: the send's connection is b's
      assert.equal(send.attributes["messaging.client.id"], idb);
      assert.notEqual(receive.attributes["messaging.client.id"], idb);
    } finally {
      for (const c of clients) if (c.ws.readyState === WebSocket.OPEN) await c.close();
      await a.stop();
      await b.stop();
      await redis.stop();
      await m.provider.shutdown();
    }
  },
});
