/**
 * `deno task example:tracing`: a wse server and a client engine whose `onMessage` runs in a pool
 * of two workers, both traced with OpenTelemetry on the app's own provider. The client asks the
 * server for a few jobs; each job message is traced from the client's socket (`receive`, main
 * thread) into a worker (`process`) and the app's own spans under it. The example prints the
 * server's trace and each job's trace as an indented tree, and draws one job's trace as a
 * waterfall (`examples/tracing/trace.svg`).
 *
 * With `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://localhost:4318`, a collector, Jaeger,
 * Tempo), it also exports every span there over OTLP/HTTP (JSON), with
 * `npm:@opentelemetry/exporter-trace-otlp-http`. The workers hand their finished spans to the
 * main thread, which exports them all in one batch: one exporter per process, nothing to flush in
 * a worker before it is terminated. (`OTEL_DENO=true` is the other way, with no code at all; see
 * `docs/tracing.md`.)
 *
 * @module
 */

import { context } from "@opentelemetry/api";
import { BasicTracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { WebSocketEngine } from "@wse/engine";
import { createServer } from "@wse/engine/server";
import { SPANS_CHANNEL } from "./handler.ts";
import { ms, type PlainSpan, recorder, toReadable } from "./spans.ts";
import { traceTree } from "./tree.ts";
import { waterfallSvg } from "./waterfall.ts";

/** How long the workers may take to hand back every job's spans. */
const WAIT_MS = 15_000;

/** Options of {@linkcode main}. */
export interface TracingExampleOptions {
  /** Where the lines go. Default `console.log`. */
  print?: (line: string) => void;
  /** How many jobs the server sends. Default 4. */
  jobs?: number;
  /** Where the waterfall SVG goes. Default `examples/tracing/trace.svg`. */
  svgPath?: string;
  /** The OTLP/HTTP endpoint to export to. Default `OTEL_EXPORTER_OTLP_ENDPOINT`, if set. */
  otlpEndpoint?: string;
}

/** What the example made: every span (from every thread) and the picture's path. */
export interface TracingExampleResult {
  spans: PlainSpan[];
  svgPath: string;
  exported: number;
}

/** Runs the example; resolves once everything it started is stopped. */
export async function main(options: TracingExampleOptions = {}): Promise<TracingExampleResult> {
  const print = options.print ?? console.log;
  const jobs = options.jobs ?? 4;
  const svgPath = options.svgPath ?? new URL("./trace.svg", import.meta.url).pathname;
  const endpoint = options.otlpEndpoint ?? Deno.env.get("OTEL_EXPORTER_OTLP_ENDPOINT");

  // The main thread's provider: it keeps every finished span. Deno's context manager keeps the
  // active span across awaits (so a callback's sends nest under it).
  context.setGlobalContextManager(Deno.telemetry.contextManager);
  const spans: PlainSpan[] = [];
  let resource: ReadableSpan["resource"] | undefined;
  const keep = recorder((span, sdkSpan) => {
    spans.push(span);
    resource ??= sdkSpan.resource;
  }, () => "main");
  const provider = new BasicTracerProvider({ spanProcessors: [keep] });

  // The workers' spans arrive here.
  let processed = 0;
  let allIn!: () => void;
  const workersDone = new Promise<void>((r) => (allIn = r));
  const bc = new BroadcastChannel(SPANS_CHANNEL);
  bc.onmessage = (e: MessageEvent<PlainSpan>) => {
    spans.push(e.data);
    if (e.data.name === "process" && ++processed === jobs) allIn();
  };

  const server = createServer({
    telemetry: { tracerProvider: provider },
    onMessage: async (m, ctx) => {
      if (m.type !== "text" || !m.data.startsWith("jobs ")) return;
      const n = Number(m.data.slice(5));
      for (let job = 1; job <= n; job++) {
        // spaced out, so each job finds an idle worker: the trace shows the hand-off itself
        if (job > 1) await new Promise((r) => setTimeout(r, 20));
        await ctx.send(JSON.stringify({ job, text: `job number ${job} `.repeat(job * 4) }));
      }
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let client: WebSocketEngine | undefined;
  try {
    const { port } = await server.listen({ hostname: "127.0.0.1", port: 0 });
    print(`server listening on 127.0.0.1:${port}; client with a pool of 2 workers`);
    client = new WebSocketEngine({
      url: `ws://127.0.0.1:${port}/jobs`,
      reconnect: false,
      telemetry: { tracerProvider: provider },
      workers: { module: new URL("./handler.ts", import.meta.url), count: 2 },
      client: { onOpen: (ctx) => ctx.send(`jobs ${jobs}`) },
    });
    await client.start();
    await Promise.race([
      workersDone,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the workers did not handle ${jobs} jobs in ${WAIT_MS} ms`)),
          WAIT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await client?.stop();
    await server.stop();
    bc.close();
  }

  const traces = new Map<string, PlainSpan[]>();
  for (const s of spans) traces.set(s.traceId, [...(traces.get(s.traceId) ?? []), s]);
  // the message traces: those that start at a socket (a receive span with no parent)
  const rootOf = (t: PlainSpan[]) => t.find((s) => !s.parentSpanId);
  const messageTraces = [...traces.values()]
    .filter((t) => rootOf(t)?.name.startsWith("receive"))
    .sort((a, b) => ms(rootOf(a)!.startTime) - ms(rootOf(b)!.startTime));
  for (const t of messageTraces) {
    const root = rootOf(t)!;
    const side = root.scope === "wse.server" ? "server" : "client";
    print("");
    print(`${side}: trace ${root.traceId}`);
    for (const line of traceTree(t)) print(`  ${line}`);
  }

  // the last job's trace (the workers are awake by then), socket to worker, as a picture
  const job = messageTraces.findLast((t) => t.some((s) => s.scope === "wse.worker"));
  if (job) {
    await Deno.writeTextFile(
      svgPath,
      waterfallSvg(job, `One message from the client's socket to a worker (the last of ${jobs})`),
    );
    print("");
    print(`waterfall of the last job's trace: ${svgPath}`);
  }

  let exported = 0;
  if (endpoint && resource) {
    const exporter = new OTLPTraceExporter({ url: `${endpoint.replace(/\/$/, "")}/v1/traces` });
    const batch = spans.map((p) => toReadable(p, resource!));
    const result = await new Promise<{ code: number; error?: Error }>((r) =>
      exporter.export(batch, r)
    );
    await exporter.shutdown();
    if (result.code !== 0) throw result.error ?? new Error("the OTLP export failed");
    exported = batch.length;
    print(`exported ${exported} spans to ${endpoint} (OTLP/HTTP, JSON)`);
  }
  await provider.shutdown();
  context.disable();
  return { spans, svgPath, exported };
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`tracing example: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
