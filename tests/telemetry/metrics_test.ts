// The metrics wse records, read back from the SDK's MeterProvider with a reader this test
// collects on demand.
import assert from "node:assert/strict";
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import { memory } from "./memory_exporter.ts";
import { createServer } from "../../src/server/server.ts";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { client, until } from "../server/helpers.ts";

const SAN = { sanitizeOps: true, sanitizeResources: true } as const;

/** A reader that collects when asked (no timer). */
class OnDemandReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Collects, and finds a metric's data points by name. */
async function collect(reader: MetricReader) {
  const { resourceMetrics } = await reader.collect();
  return (name: string) => points(resourceMetrics, name);
}

function points(rm: ResourceMetrics, name: string): DataPoint<number | Histogram>[] {
  for (const sm of rm.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name === name) return m.dataPoints as DataPoint<number | Histogram>[];
    }
  }
  return [];
}

function sum(ps: DataPoint<number | Histogram>[], attrs: Record<string, string> = {}): number {
  return ps.filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + (typeof p.value === "number" ? p.value : p.value.count), 0);
}

Deno.test({
  name:
    "metrics: the server counts connections, messages, bytes, dispatch latency and refused upgrades",
  ...SAN,
  fn: async () => {
    const reader = new OnDemandReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const m = memory();
    const handled: string[] = [];
    const server = createServer({
      checkOrigin: ["https://app.example"],
      // the dispatch latency rides with the trace context: it needs a tracer provider too
      telemetry: { tracerProvider: m.provider, meterProvider },
      onMessage: async (msg, ctx) => {
        handled.push(String(msg.data));
        await ctx.send(`got ${msg.data}`);
      },
    });
    const { port } = await server.listen();
    await server.ready;
    const c = await client(`ws://127.0.0.1:${port}/`);
    try {
      c.ws.send("one");
      c.ws.send("three");
      assert.equal(await c.next(), "got one");
      assert.equal(await c.next(), "got three");
      await assert.rejects(
        client(`ws://127.0.0.1:${port}/`, { headers: { origin: "https://evil.example" } }),
      );
      const get = await collect(reader);
      assert.equal(sum(get("wse.connections")), 1);
      assert.equal(sum(get("messaging.client.consumed.messages")), 2);
      assert.equal(sum(get("wse.bytes.received")), 8);
      assert.equal(sum(get("messaging.client.sent.messages")), 2);
      assert.equal(sum(get("wse.bytes.sent")), 16);
      assert.equal(sum(get("wse.dispatch.latency")), 2, "one latency sample per handled message");
      assert.equal(sum(get("wse.upgrades.refused"), { cause: "origin" }), 1);
    } finally {
      await c.close();
      await server.stop();
    }
    const get = await collect(reader);
    assert.equal(sum(get("wse.connections")), 0);
    await meterProvider.shutdown();
    await m.provider.shutdown();
  },
});

Deno.test({
  name: "metrics: the engine counts reconnect attempts by outcome",
  ...SAN,
  fn: async () => {
    const reader = new OnDemandReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const server = startEchoServer();
    const engine = new WebSocketEngine({
      url: server.url,
      telemetry: { meterProvider },
      reconnect: { baseDelayMs: 20, maxDelayMs: 40 },
      client: { onRestartError: () => {} },
    });
    let failed = 0;
    try {
      await engine.start();
      await server.kill();
      // at least one attempt fails against the dead port before the server is back
      await until(() => engine.state === "reconnecting", "reconnecting");
      for (let i = 0; i < 200 && failed === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const get = await collect(reader);
        failed = sum(get("wse.reconnects")) - sum(get("wse.reconnects"), { outcome: "ok" });
      }
      await server.restart();
      await until(() => engine.state === "open", "reconnected");
      const get = await collect(reader);
      assert.ok(failed >= 1, "a failed attempt is counted");
      assert.equal(sum(get("wse.reconnects"), { outcome: "ok" }), 1);
      assert.equal(sum(get("wse.connections")), 1);
    } finally {
      await engine.stop();
      await server.close();
      await meterProvider.shutdown();
    }
  },
});
