// Deno's built-in OpenTelemetry with no code change: a child `deno run` with OTEL_DENO=true runs
// a client with a pool of two workers (it registers no provider anywhere), exporting over
// OTLP/HTTP (http/json) to a receiver this test runs on loopback. The worker's `process` span
// must arrive with the main thread's `receive` span as its parent.
import assert from "node:assert/strict";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { attr, startOtlpReceiver } from "./otlp_receiver.ts";

const CHILD = new URL("./fixtures/otel_deno_client.ts", import.meta.url).pathname;
const MESSAGES = 4;
const CHILD_BUDGET_MS = 30_000;

Deno.test({
  name:
    "tracing: OTEL_DENO=true — a worker's process span reaches an OTLP receiver, parent receive",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const echo = startEchoServer();
    const receiver = startOtlpReceiver();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CHILD, echo.url, String(MESSAGES)],
      env: {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "wse-otel-deno-test",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // bounded: the child is killed if it is not done in time
    const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_BUDGET_MS);
    try {
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `the child failed:\n${text}`);
      assert.match(text, new RegExp(`handled ${MESSAGES}`));
    } finally {
      clearTimeout(timer);
      await receiver.close(); // the child has exited: it flushed its exporter before
      await echo.close();
    }

    assert.ok(receiver.contentTypes.every((t) => t === "application/json"));
    const got = receiver.spans;
    const receives = got.filter((r) =>
      r.scope === "wse.engine" && r.span.name.startsWith("receive")
    );
    const processes = got.filter((r) => r.scope === "wse.worker" && r.span.name === "process");
    assert.equal(receives.length, MESSAGES, `receive spans: ${got.map((r) => r.span.name)}`);
    assert.equal(processes.length, MESSAGES, "one process span per message, from the workers");
    for (const p of processes) {
      const parent = receives.find((r) => r.span.spanId === p.span.parentSpanId);
      assert.ok(parent, `process ${p.span.spanId} has a receive span as its parent`);
      assert.equal(p.span.traceId, parent.span.traceId);
      assert.equal(p.span.kind, 5, "SPAN_KIND_CONSUMER");
      assert.equal(parent.span.kind, 3, "SPAN_KIND_CLIENT");
      assert.match(String(attr(p.span, "wse.worker.id")), /^w\d+$/);
      assert.equal(attr(p.span, "messaging.operation.name"), "process");
      assert.equal(p.service, "wse-otel-deno-test");
      // the app's span in the worker nests under process, with no setup in the worker module
      const app = got.find((r) => r.scope === "app" && r.span.parentSpanId === p.span.spanId);
      assert.ok(app, "the worker's own span is a child of its process span");
      assert.equal(app.span.traceId, p.span.traceId);
    }
  },
});
