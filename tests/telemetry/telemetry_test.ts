import assert from "node:assert/strict";
import { SpanKind, trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { MemoryExporter } from "./memory_exporter.ts";
import { carrierOf, contextOf, Telemetry } from "../../src/telemetry/telemetry.ts";

function provider(ratio = 1) {
  const exporter = new MemoryExporter();
  const p = new BasicTracerProvider({
    sampler: new TraceIdRatioBasedSampler(ratio),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  return { exporter, provider: p };
}

Deno.test("telemetry: without a provider nothing is traced and no span is made", () => {
  const t = new Telemetry("wse.test");
  assert.equal(t.tracing, false);
  assert.equal(t.start("receive x", SpanKind.CLIENT), undefined);
  assert.equal(t.run("x", SpanKind.INTERNAL, {}, () => 41 + 1), 42);
  assert.equal(Telemetry.off.tracing, false);
});

Deno.test("telemetry: a given provider records; carriers only for sampled spans", async () => {
  const { exporter, provider: p } = provider();
  const t = new Telemetry("wse.test", { tracerProvider: p });
  assert.equal(t.tracing, true);
  const span = t.start("receive ws://x", SpanKind.CLIENT, { "messaging.system": "websocket" })!;
  const carrier = carrierOf(span)!;
  assert.match(carrier.traceparent!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  // a child made "elsewhere" from the carrier
  const child = t.start("process ws://x", SpanKind.CONSUMER, {}, contextOf(carrier));
  child!.end();
  span.end();
  const [c, r] = exporter.spans;
  assert.equal(c.name, "process ws://x");
  assert.equal(c.spanContext().traceId, r.spanContext().traceId);
  assert.equal(c.parentSpanContext?.spanId, r.spanContext().spanId);
  // run(): the result passes through, a rejection is recorded on the span
  await assert.rejects(
    t.run("callback onOpen", SpanKind.INTERNAL, {}, () => Promise.reject(new RangeError("no"))),
    RangeError,
  );
  const failed = exporter.spans.at(-1)!;
  assert.equal(failed.attributes["error.type"], "RangeError");
  assert.equal(failed.status.code, 2);
  await p.shutdown();
});

Deno.test("telemetry: unsampled spans carry nothing", async () => {
  const { provider: p } = provider(0);
  const t = new Telemetry("wse.test", { tracerProvider: p });
  const span = t.start("receive x", SpanKind.CLIENT)!;
  assert.equal(carrierOf(span), undefined);
  span.end();
  await p.shutdown();
});

Deno.test("telemetry: contextOf refuses malformed traceparents", () => {
  for (
    const bad of [
      undefined,
      "",
      "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
      "00-xyz7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
    ]
  ) assert.equal(contextOf({ traceparent: bad }), undefined, String(bad));
  const ok = contextOf({
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    tracestate: "vendor=1",
  })!;
  const sc = trace.getSpanContext(ok)!;
  assert.equal(sc.isRemote, true);
  assert.equal(sc.traceState?.get("vendor"), "1");
});

Deno.test("telemetry: a global provider registered later is picked up", () => {
  const t = new Telemetry("wse.test");
  assert.equal(t.tracing, false);
  const { provider: p } = provider();
  trace.setGlobalTracerProvider(p);
  try {
    let seen = false;
    for (let i = 0; i < 2048 && !seen; i++) seen = t.tracing; // re-checked every 1024 asks
    assert.equal(seen, true);
  } finally {
    trace.disable();
  }
});

Deno.test("telemetry: messageSampling traces that share of messages, decided per message", async () => {
  const { provider: p } = provider();
  const count = (rate: number, n: number) => {
    const t = new Telemetry("wse.test", { tracerProvider: p, messageSampling: rate });
    let traced = 0;
    for (let i = 0; i < n; i++) if (t.sampleMessage()) traced++;
    return traced;
  };
  assert.equal(count(1, 1000), 1000);
  assert.equal(count(0, 100_000), 0);
  // binomial(100 000, 0.1): mean 10 000, standard deviation about 95
  const tenth = count(0.1, 100_000);
  assert.ok(tenth > 9_000 && tenth < 11_000, `${tenth} of 100 000 at 0.1`);
  const hundredth = count(0.01, 100_000);
  assert.ok(hundredth > 700 && hundredth < 1_300, `${hundredth} of 100 000 at 0.01`);
  // and not in a fixed pattern: the gaps between traced messages vary
  const t = new Telemetry("wse.test", { tracerProvider: p, messageSampling: 0.05 });
  const gaps = new Set<number>();
  for (let i = 0, last = 0; i < 10_000; i++) {
    if (t.sampleMessage()) {
      gaps.add(i - last);
      last = i;
    }
  }
  assert.ok(gaps.size > 10, `${gaps.size} distinct gaps`);
  await p.shutdown();
});
