/**
 * `deno task bench dispatch [--quick]`: how fast messages get from a socket to `onMessage`.
 *
 * One run, side by side, 64 B and 16 KiB binary messages, a no-op and a 1 ms CPU handler:
 * (a) the raw `WebSocket` receive rate with a no-op handler on the main thread (the limit);
 * (b) wse, `onMessage` on the main thread; (c) wse with 1, 2 and N workers (SharedArrayBuffer ring);
 * (d) `npm:ws` + `npm:piscina`, one task per message; (e) the same workers fed by one
 * `postMessage` per message. Plus the added latency from the socket to handler start at
 * 10,000 msg/s through the pool.
 *
 * The sender is a separate process (`dispatch_sender.ts`): a raw TCP server writing prebuilt frames,
 * up to 1000 per write. (b) and (c) go through `WebSocketEngine` (whatwg adapter, the same
 * `WebSocket` as (a)). (c') feeds the pool straight from a `WebSocket`, without the engine.
 * Our own transport runs beside them: (a') its raw receive rate with a no-op handler, and (b'),
 * (c'') the engine inline and with N workers on `wseAdapter()`, (c*) the engine with 2 workers and
 * no adapter option (what a user gets: our transport on Deno). Many connections: (f) 1,000 of our
 * connections (200 with --quick) pumped into one pool of 2 workers (sticky, as the server does),
 * (f') the same inline, (g) one connection through the same path. The ratios say which is which:
 * `pool_vs_raw_noop_64` is like for like (the whatwg adapter ÷ the same raw socket),
 * `pool_default_vs_runtime_raw_64` the engine with default options ÷ the runtime's raw `WebSocket`,
 * `pool_own_vs_own_raw_64` (= `pool_own_vs_own_raw_noop_64`) the pool on our transport ÷ our own raw
 * connection, `pool_1000conns_vs_1conn_64` (f) ÷ (g), `recv_16k_own_vs_native` (a') ÷ (a) at 16 KiB.
 *
 * Tracing cost, the engine with 2 workers on its default transport, 64 B no-op, three variants
 * interleaved round by round (the machine is noisy; each round runs all three, in a rotating
 * order): (t0) telemetry disabled (`telemetry: false`: no instrumentation runs), (t1) the default,
 * instrumentation compiled in and no SDK registered, (t2) an SDK registered (batch processor,
 * discarding exporter) on the main thread and in the workers, `messageSampling: 0.01`. Each
 * round gives a ratio of throughputs, t1 ÷ t0 and t2 ÷ t0; the keys are the relative slowdown,
 * one minus the median of those ratios: `tracing_off_overhead` = 1 − median(t1 ÷ t0) (target
 * ≤ 0.03), `tracing_sampled_1pct_overhead` = 1 − median(t2 ÷ t0) (target ≤ 0.10). A negative
 * value means the variant ran faster than the disabled one in most rounds: noise. Beside them,
 * the main thread's instrumentation alone, without sockets or workers: the pump's raw path fed
 * 64 B payloads in a loop into a dispatcher that takes them and does nothing, in the same three
 * variants (best of several interleaved repetitions). `tracing_off_ns_per_msg` and
 * `tracing_sampled_1pct_ns_per_msg` are what (t1) and (t2) add per message there, in ns; the
 * workers' `process` spans (1 % of messages in (t2)) are not in it.
 *
 * Diagnostic flags: `--latency-only` (only the latency runs), `--direct-only` (only (a) and (c')),
 * `--many-only` (only (a), (a'), (f) and (g)), `--tracing-only` (only the tracing rounds and the per-message figures, written to
 * `bench/results/dispatch-tracing.*`).
 * The machine's load average at start and end goes into the results' notes: on a shared 2-core
 * machine other processes skew every figure.
 */

import WS from "ws";
import { Piscina } from "piscina";
import { median, percentile, type Row, writeReport } from "./lib/report.ts";
import { WebSocketEngine } from "../src/engine/engine.ts";
import { whatwgAdapter } from "../src/transport/whatwg_adapter.ts";
import { wseAdapter } from "../src/transport/tcp_adapter.ts";
import { connect } from "../src/transport/tcp_client.ts";
import type { AdapterConnection, WebSocketAdapter } from "../src/transport/types.ts";
import { PoolDispatcher } from "../src/dispatch/pool.ts";
import { InlineDispatcher } from "../src/dispatch/inline.ts";
import { pump } from "../src/dispatch/pump.ts";
import type { WebSocketConnection } from "../src/transport/tcp_connection.ts";
import { closeReports, handle, onMessage } from "./dispatch_handler.ts";
import { within } from "../src/util/async.ts";
import { sdkProvider } from "./lib/otel_sdk.ts";
import { Telemetry, type TelemetryOptions } from "../src/telemetry/telemetry.ts";
import type { CloseInfo, MessageSink } from "../src/transport/types.ts";
import type { DispatchConnection } from "../src/dispatch/types.ts";

const HANDLER = new URL("./dispatch_handler.ts", import.meta.url);
const TRACED_HANDLER = new URL("./dispatch_traced_handler.ts", import.meta.url);
const CORES = navigator.hardwareConcurrency || 2;

interface Job {
  n: number;
  size: number;
  cpu: number;
  rate?: number;
}

let port = 0;
const url = (j: Job) =>
  `ws://127.0.0.1:${port}/?n=${j.n}&size=${j.size}&cpu=${j.cpu}&rate=${j.rate ?? 0}`;

interface Done {
  starts: number[];
  seqs: number[];
  /** When the handler finished the final message, on this thread's `performance.now()` clock. */
  end: number;
}

/**
 * Resolves on the handler's final report; collects latency
 * batches from every worker.
 */
function finalReport(timeoutMs: number): { promise: Promise<Done>; cancel(): void } {
  const bc = new BroadcastChannel("wse-bench-dispatch");
  const acc: Done = { starts: [], seqs: [], end: 0 };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<Done>((resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error("benchmark run timed out")),
      timeoutMs,
    );
    bc.onmessage = (e) => {
      acc.starts.push(...e.data.starts);
      acc.seqs.push(...e.data.seqs);
      if (e.data.done) {
        acc.end = e.data.at - performance.timeOrigin;
        clearTimeout(timer);
        // stragglers from other workers
        setTimeout(() => {
          bc.close();
          resolve(acc);
        }, 50);
      }
    };
  }).finally(() => clearTimeout(timer));
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      bc.close();
    },
  };
}

/** (a): the runtime's WebSocket, no-op handler on the main thread. */
async function raw(j: Job): Promise<number> {
  const ws = new WebSocket(url(j));
  ws.binaryType = "arraybuffer";
  let t0 = 0;
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => t0 = performance.now();
    ws.onerror = () => reject(new Error("raw websocket error"));
    ws.onmessage = () => {
      if (++count === j.n) resolve();
    };
  });
  const rate = j.n / ((performance.now() - t0) / 1000);
  await closeWs(ws);
  return rate;
}

/** (a'): our own RFC 6455 client, no-op handler on the main thread (drained synchronously). */
async function rawOwn(j: Job): Promise<number> {
  const ws = await connect(url(j), { compression: false });
  const t0 = performance.now();
  let count = 0;
  await new Promise<void>((resolve) => {
    const drain = () => {
      while (ws.poll()) if (++count === j.n) return resolve();
    };
    ws.onReadable(drain);
    drain();
  });
  const rate = j.n / ((performance.now() - t0) / 1000);
  ws.onReadable(undefined);
  await ws.close(1000, "", 2000);
  return rate;
}

function closeWs(ws: WebSocket): Promise<void> {
  return new Promise((r) => {
    ws.onclose = () => r();
    ws.close();
  });
}

/** An adapter that also stamps each message's arrival (for latency) on the socket itself. */
function stampingAdapter(recv?: Float64Array): WebSocketAdapter {
  const base = whatwgAdapter();
  return {
    name: base.name,
    async dial(u, options): Promise<AdapterConnection> {
      const conn = await base.dial(u, options);
      if (recv) {
        (conn.underlying as WebSocket).addEventListener("message", (e: MessageEvent) => {
          const seq = new DataView(e.data as ArrayBuffer).getUint32(0);
          recv[seq] = performance.timeOrigin + performance.now();
        });
      }
      return conn;
    },
  };
}

/** (b) and (c): through the engine; `workers` 0 = inline. */
async function engine(
  j: Job,
  workers: number,
  recv?: Float64Array,
  adapter: "whatwg" | "own" | "default" = "whatwg",
  tracing: { telemetry?: TelemetryOptions | false; module?: URL } = {},
): Promise<[number, Done]> {
  const report = finalReport(120_000);
  let t0 = 0;
  const e = new WebSocketEngine({
    url: url(j),
    adapter: adapter === "own"
      ? wseAdapter({ compression: false })
      : adapter === "whatwg"
      ? stampingAdapter(recv)
      : undefined, // the default: our own transport where Deno.connect exists
    reconnect: false,
    maxQueuedBytes: 1 << 30,
    client: {
      onOpen: () => {
        t0 = performance.now();
      },
      onMessage: workers ? undefined : (m) => {
        if (m.type === "binary") handle(m.data);
      },
    },
    workers: workers
      ? { module: tracing.module ?? HANDLER, count: workers, ringBytes: 4 << 20 }
      : undefined,
    telemetry: tracing.telemetry,
  });
  try {
    await e.start();
    const done = await report.promise;
    const rate = j.n / ((done.end - t0) / 1000);
    return [rate, done];
  } finally {
    report.cancel();
    await e.stop();
  }
}

/** (c, diagnostic): the pool fed straight from the runtime's WebSocket, no engine in between. */
async function direct(j: Job, workers: number): Promise<number> {
  const pool = new PoolDispatcher({ module: HANDLER, count: workers, ringBytes: 4 << 20 }, {
    order: "none",
  });
  await pool.init();
  const conn = pool.open({
    id: "bench",
    send: () => Promise.resolve(),
    call: () => undefined,
    reportError: (e) => console.error(e),
  });
  const report = finalReport(120_000);
  const ws = new WebSocket(url(j));
  ws.binaryType = "arraybuffer";
  let t0 = 0;
  const backlog: Uint8Array[] = [];
  let draining = false;
  const drain = async () => {
    draining = true;
    for (let i = 0; i < 1e9 && backlog.length; i++) {
      if (conn.push({ type: "binary", data: backlog[0] })) backlog.shift();
      else await conn.writable();
    }
    draining = false;
  };
  ws.onopen = () => t0 = performance.now();
  ws.onmessage = (e) => {
    const data = new Uint8Array(e.data);
    if (backlog.length || !conn.push({ type: "binary", data })) {
      backlog.push(data);
      if (!draining) drain();
    }
  };
  try {
    const { end } = await report.promise;
    return j.n / ((end - t0) / 1000);
  } finally {
    report.cancel();
    await closeWs(ws);
    await pool.close(1000);
  }
}

/**
 * (f) and (g): `connections` connections of our own transport, their messages received through one
 * dispatcher straight from the dispatch layer (no engine): a pool of 2 workers (sticky, as the
 * server assigns) or handlers inline. Every connection opens first; then each asks for its share.
 */
async function manyConnections(
  j: Job,
  connections: number,
  mode: "pool" | "inline",
): Promise<number> {
  const per = Math.ceil(j.n / connections);
  const d = mode === "pool"
    ? new PoolDispatcher({ module: HANDLER, count: 2, ringBytes: 4 << 20, assign: "sticky" })
    : new InlineDispatcher({ onMessage });
  await d.init();
  const conns: WebSocketConnection[] = [];
  const pumps: Promise<unknown>[] = [];
  // Each connection's handler says "done" through its context after the final message.
  let left = connections;
  let finished!: () => void;
  const allDone = new Promise<void>((resolve) => (finished = resolve));
  const host = (id: string) => ({
    id,
    send: () => {
      if (--left === 0) finished();
      return Promise.resolve();
    },
    call: () => undefined,
    reportError: (e: unknown) => console.error(e),
  });
  try {
    for (let i = 0; i < connections; i += 100) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(100, connections - i) },
          () => connect(url({ ...j, n: per }) + "&wait=1", { compression: false }),
        ),
      );
      for (const ws of batch) {
        conns.push(ws);
        pumps.push(pump(ws, d.open(host(`c${conns.length}`))).done);
      }
    }
    const t0 = performance.now();
    for (const ws of conns) void ws.send("go");
    await within(allDone, { timeoutMs: 120_000, what: `${left} of ${connections} connections` });
    return (per * connections) / ((performance.now() - t0) / 1000);
  } finally {
    await Promise.all(conns.map((ws) => ws.close(1000, "", 2000)));
    await Promise.all(pumps);
    await d.close(1000);
  }
}

/** (d): npm:ws + piscina, one task per message. */
async function piscina(j: Job, pool: Piscina): Promise<number> {
  const ws = new WS(url(j));
  let t0 = 0, done = 0;
  await new Promise<void>((resolve, reject) => {
    ws.on("open", () => t0 = performance.now());
    ws.on("error", reject);
    ws.on("message", (data: Uint8Array) => {
      pool.run(data).then(() => {
        if (++done === j.n) resolve();
      }, reject);
    });
  });
  const rate = j.n / ((performance.now() - t0) / 1000);
  await new Promise<void>((r) => {
    ws.once("close", () => r());
    ws.close();
  });
  return rate;
}

/** (e): the same handler in N workers, one postMessage per message, round-robin. */
async function postMessagePool(j: Job, workers: Worker[]): Promise<number> {
  const report = finalReport(120_000);
  const ws = new WebSocket(url(j));
  ws.binaryType = "arraybuffer";
  let t0 = 0, i = 0;
  ws.onopen = () => t0 = performance.now();
  ws.onmessage = (e) => workers[i++ % workers.length].postMessage(e.data, [e.data]);
  try {
    const { end } = await report.promise;
    return j.n / ((end - t0) / 1000);
  } finally {
    report.cancel();
    await closeWs(ws);
  }
}

async function spawnPm(count: number): Promise<Worker[]> {
  const ws = Array.from(
    { length: count },
    () => new Worker(new URL("./dispatch_pm_worker.ts", import.meta.url), { type: "module" }),
  );
  await new Promise((r) => setTimeout(r, 300)); // module load
  return ws;
}

/** The tracing variants, in the order of the header's (t0), (t1), (t2). */
const TRACING_VARIANTS = ["(t0) telemetry disabled", "(t1) no SDK", "(t2) SDK, 1 % sampled"];

/**
 * (t0), (t1), (t2) interleaved: `rounds` rounds, each running the three variants once in a
 * rotating order. Returns each variant's rates and each round's ratios to (t0).
 */
async function tracingRounds(n: number, rounds: number): Promise<{
  rates: number[][];
  offRatios: number[];
  sampledRatios: number[];
  sampledSpans: number;
}> {
  const sdk = sdkProvider();
  const job: Job = { n, size: 64, cpu: 0 };
  const variants: { telemetry?: TelemetryOptions | false; module?: URL }[] = [
    { telemetry: false },
    {},
    { telemetry: { tracerProvider: sdk.provider, messageSampling: 0.01 }, module: TRACED_HANDLER },
  ];
  const rates: number[][] = [[], [], []];
  const offRatios: number[] = [], sampledRatios: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const got: number[] = [];
      for (let k = 0; k < 3; k++) {
        const v = (r + k) % 3;
        got[v] = (await engine(job, 2, undefined, "default", variants[v]))[0];
        rates[v].push(got[v]);
      }
      offRatios.push(got[1] / got[0]);
      sampledRatios.push(got[2] / got[0]);
      console.error(
        `  tracing round ${r + 1}/${rounds}: ` +
          got.map((x, i) => `${TRACING_VARIANTS[i].slice(0, 4)} ${Math.round(x)}`).join(", "),
      );
    }
    await sdk.provider.forceFlush();
  } finally {
    await sdk.provider.shutdown();
  }
  return { rates, offRatios, sampledRatios, sampledSpans: sdk.exporter.count };
}

/**
 * The main thread's per-message instrumentation in the three tracing variants, in ns: the pump's
 * raw path (as our transport feeds it) into a dispatcher that takes every payload and does
 * nothing. The best of `reps` interleaved repetitions of `n` messages each.
 */
async function instrumentationCost(n: number, reps: number): Promise<number[]> {
  const sdk = sdkProvider();
  const payload = new Uint8Array(64);
  const target = {
    id: "bench",
    push: () => true,
    deliver: () => true,
    writable: () => Promise.resolve(),
    pause: () => Promise.reject(new Error("not in this benchmark")),
    end() {},
  } as DispatchConnection;
  const observe = (options?: TelemetryOptions) => ({
    telemetry: new Telemetry("wse.bench", options),
    destination: "/bench",
    clientId: "bench",
  });
  const variants = [
    undefined,
    observe(),
    observe({ tracerProvider: sdk.provider, messageSampling: 0.01 }),
  ];
  const best = [Infinity, Infinity, Infinity];
  try {
    for (let r = 0; r < reps; r++) {
      for (let k = 0; k < 3; k++) {
        const v = (r + k) % 3;
        let sink: MessageSink | undefined;
        const p = pump(
          {
            poll: () => undefined,
            onReadable() {},
            setSink: (s) => void (sink = s),
            closed: new Promise<CloseInfo>(() => {}), // never closes: the loop below is the stream
            isClosed: false,
          },
          target,
          { observe: variants[v] },
        );
        const t0 = performance.now();
        for (let i = 0; i < n; i++) sink!.deliver(false, payload);
        best[v] = Math.min(best[v], ((performance.now() - t0) * 1e6) / n);
        p.stop();
        await new Promise((resolve) => setTimeout(resolve, 0)); // let the SDK's batch go
      }
    }
    await sdk.provider.forceFlush();
  } finally {
    await sdk.provider.shutdown();
  }
  return best;
}

/** Exported entry point (`bench/main.ts`). */
export async function main(flags: string[]): Promise<void> {
  const load0 = Deno.loadavg();
  const quick = flags.includes("--quick");
  const sets = quick ? 1 : 3;
  const sender = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./dispatch_sender.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = sender.stdout.pipeThrough(new TextDecoderStream()).getReader();
  port = Number((await reader.read()).value!.trim());

  const piscinaPool = new Piscina({
    filename: new URL("./dispatch_piscina_worker.ts", import.meta.url).href,
    minThreads: CORES,
    maxThreads: CORES,
  });
  const pm = await spawnPm(CORES);
  const workerCounts = [...new Set([1, 2, CORES])];
  const results = new Map<string, { group: string; name: string; rates: number[] }>();
  const add = (group: string, name: string, rate: number) => {
    const k = `${group}/${name}`;
    if (!results.has(k)) results.set(k, { group, name, rates: [] });
    results.get(k)!.rates.push(rate);
  };

  const scale = quick ? 1 : 3;
  const groups = [
    { group: "no-op 64 B", size: 64, cpu: 0, fast: 200_000 * scale, slow: 20_000 * scale },
    { group: "no-op 16 KiB", size: 16384, cpu: 0, fast: 20_000 * scale, slow: 8_000 * scale },
    { group: "1 ms CPU 64 B", size: 64, cpu: 1, fast: 1_000 * scale, slow: 1_000 * scale },
    { group: "1 ms CPU 16 KiB", size: 16384, cpu: 1, fast: 1_000 * scale, slow: 1_000 * scale },
  ];
  const latency = { pool: [] as number[], inline: [] as number[] };
  const tracingOnly = flags.includes("--tracing-only");
  let tracing: Awaited<ReturnType<typeof tracingRounds>> | undefined;
  let perMessage = [NaN, NaN, NaN];
  try {
    for (let s = 0; s < (tracingOnly ? 0 : sets); s++) {
      for (const g of flags.includes("--latency-only") ? [] : groups) {
        const job = (n: number): Job => ({ n, size: g.size, cpu: g.cpu });
        if (g.cpu === 0) {
          add(g.group, "(a) raw WebSocket, no-op", await raw(job(g.fast)));
          add(g.group, "(a') raw wse connection, no-op", await rawOwn(job(g.fast)));
        }
        if (flags.includes("--direct-only")) {
          if (g.cpu === 0) add(g.group, "direct", await direct(job(g.fast), CORES));
          continue;
        }
        if (flags.includes("--many-only")) {
          if (g.cpu !== 0 || g.size !== 64) continue;
          const conns = quick ? 200 : 1000;
          for (const [n, mode] of [[conns, "pool"], [conns, "inline"], [1, "pool"]] as const) {
            add(g.group, `${n} → ${mode}`, await manyConnections(job(g.fast), n, mode));
          }
          continue;
        }
        add(g.group, "(b) wse inline (main thread)", (await engine(job(g.fast), 0))[0]);
        for (const w of workerCounts) {
          add(g.group, `(c) wse ${w} worker${w > 1 ? "s" : ""}`, (await engine(job(g.fast), w))[0]);
        }
        // The same engine on our own transport (wseAdapter): it parses faster than the runtime's
        // WebSocket and stops reading the socket when the ring is full.
        add(
          g.group,
          "(b') wse inline, own transport",
          (await engine(job(g.fast), 0, undefined, "own"))[0],
        );
        add(
          g.group,
          `(c'') wse ${CORES} workers, own transport`,
          (await engine(job(g.fast), CORES, undefined, "own"))[0],
        );
        if (g.cpu === 0) {
          add(
            g.group,
            "(c*) wse 2 workers, default options",
            (await engine(job(g.fast), 2, undefined, "default"))[0],
          );
        }
        if (g.cpu === 0 && g.size === 64) {
          // Many connections through one dispatcher (the server's situation), no engine.
          const conns = quick ? 200 : 1000;
          add(
            g.group,
            `(f) ${conns} connections → pool of 2 workers`,
            await manyConnections(job(g.fast), conns, "pool"),
          );
          add(
            g.group,
            `(f') ${conns} connections → inline`,
            await manyConnections(job(g.fast), conns, "inline"),
          );
          add(
            g.group,
            "(g) 1 connection → pool of 2 workers",
            await manyConnections(job(g.fast), 1, "pool"),
          );
        }
        if (g.cpu === 0) {
          add(g.group, `(c') pool ${CORES} workers, no engine`, await direct(job(g.fast), CORES));
        }
        add(g.group, `(d) ws + piscina ${CORES} threads`, await piscina(job(g.slow), piscinaPool));
        add(g.group, `(e) postMessage ${CORES} workers`, await postMessagePool(job(g.slow), pm));
        console.error(`  set ${s + 1}/${sets}: ${g.group} done`);
      }
      // added latency at 10,000 msg/s: through the pool, and inline for comparison
      const n = quick ? 10_000 : 30_000;
      for (const [key, workers] of [["pool", CORES], ["inline", 0]] as const) {
        const recv = new Float64Array(n);
        const [, done] = await engine({ n, size: 64, cpu: 0, rate: 10_000 }, workers, recv);
        const added = done.seqs.map((seq, i) => done.starts[i] - recv[seq]).filter((x) =>
          Number.isFinite(x) && x > -1
        );
        latency[key].push(...added.slice(Math.floor(added.length / 10))); // skip warm-up
      }
    }
    tracing = await tracingRounds(200_000, quick ? 5 : 15);
    perMessage = await instrumentationCost(1_000_000, quick ? 5 : 9);
  } finally {
    closeReports(); // the inline runs' channel (this thread's copy of the handler module)
    for (const w of pm) w.terminate();
    await piscinaPool.destroy();
    sender.kill();
    await reader.cancel();
    await sender.status;
  }

  const tracingRows: Row[] = TRACING_VARIANTS.map((name, i) => ({
    group: "tracing cost: 2 workers, default transport, no-op 64 B",
    name,
    rate: median(tracing!.rates[i]),
  }));
  const tracingKeys = {
    // The relative slowdown, 1 − median over rounds of (variant ÷ telemetry disabled).
    tracing_off_overhead: 1 - median(tracing!.offRatios),
    tracing_sampled_1pct_overhead: 1 - median(tracing!.sampledRatios),
    tracing_off_ns_per_msg: perMessage[1] - perMessage[0],
    tracing_sampled_1pct_ns_per_msg: perMessage[2] - perMessage[0],
  };
  const tracingNotes = {
    tracing:
      "(t0)/(t1)/(t2) interleaved, rotating order each round; overhead = 1 − median over rounds of (variant ÷ (t0))",
    tracing_rounds: tracing!.offRatios.length,
    tracing_off_ratios: tracing!.offRatios.map((x) => +x.toFixed(3)),
    tracing_sampled_ratios: tracing!.sampledRatios.map((x) => +x.toFixed(3)),
    // main-thread spans (receive) the SDK got in the sampled runs: about 1 % of its messages
    tracing_sampled_main_spans: tracing!.sampledSpans,
    tracing_pump_ns_per_msg: perMessage.map((x) => +x.toFixed(1)),
  };
  if (tracingOnly) {
    // its own results file: the whole run's stay as they are
    await writeReport("dispatch-tracing", "Tracing cost (msg/s)", tracingRows, tracingKeys, {
      quick,
      ...tracingNotes,
      loadavg_start: load0,
      loadavg_end: Deno.loadavg(),
      cores: CORES,
    });
    return;
  }
  const rows: Row[] = [...results.values()].map((r) => ({
    group: r.group,
    name: r.name,
    rate: median(r.rates),
  }));
  rows.push(...tracingRows);
  const rate = (group: string, prefix: string) =>
    rows.find((r) => r.group === group && r.name.startsWith(prefix))?.rate ?? NaN;
  const N = `(c) wse ${CORES} worker${CORES > 1 ? "s" : ""}`;
  const p99 = percentile(latency.pool, 99);
  for (
    const [key, name] of [["pool", `(c) wse ${CORES} workers`], [
      "inline",
      "(b) wse inline",
    ]] as const
  ) {
    const l = latency[key];
    rows.push({
      group: "added latency at 10,000 msg/s, p99 (ms)",
      name,
      rate: percentile(l, 99),
      unit: "ms",
      extra: {
        p50: percentile(l, 50),
        p99: percentile(l, 99),
        max: Math.max(...l),
        samples: l.length,
      },
    });
  }
  const ratios = {
    // Like for like: the engine's default adapter (the runtime's WebSocket) against that socket.
    pool_vs_raw_noop_64: rate("no-op 64 B", N) / rate("no-op 64 B", "(a)"),
    // The pool reading through our own transport, against the runtime's raw WebSocket ...
    pool_own_vs_raw_noop_64: rate("no-op 64 B", "(c'')") / rate("no-op 64 B", "(a)"),
    // ... and against our own raw connection (the fastest receive path we have).
    pool_own_vs_own_raw_noop_64: rate("no-op 64 B", "(c'')") / rate("no-op 64 B", "(a')"),
    pool_vs_piscina_noop_64: rate("no-op 64 B", N) / rate("no-op 64 B", "(d)"),
    cpu_2workers_vs_inline: rate("1 ms CPU 64 B", "(c) wse 2 workers") /
      rate("1 ms CPU 64 B", "(b)"),
    p99_added_latency_ms: p99,
    // The engine as a user gets it (no adapter option: our transport), 2 workers ÷ the runtime's
    // raw WebSocket.
    pool_default_vs_runtime_raw_64: rate("no-op 64 B", "(c*)") / rate("no-op 64 B", "(a)"),
    pool_own_vs_own_raw_64: rate("no-op 64 B", "(c'')") / rate("no-op 64 B", "(a')"),
    pool_1000conns_vs_1conn_64: rate("no-op 64 B", "(f)") / rate("no-op 64 B", "(g)"),
    recv_16k_own_vs_native: rate("no-op 16 KiB", "(a')") / rate("no-op 16 KiB", "(a)"),
    ...tracingKeys,
  };
  await writeReport("dispatch", "Socket → onMessage dispatch (msg/s)", rows, ratios, {
    sets,
    quick,
    sender: "separate process, raw TCP, prebuilt frames, up to 1000 per write",
    through:
      "WebSocketEngine with the workers option: (b)/(c) on the whatwg adapter, (b')/(c'') on wseAdapter (our transport), (c*) with no adapter option (our transport by default); (c') feeds PoolDispatcher straight from a WebSocket; (f)/(f')/(g) open many (or one) of our connections and pump them into one dispatcher, no engine",
    ...tracingNotes,
    loadavg_start: load0,
    loadavg_end: Deno.loadavg(),
    cores: CORES,
  });
}

if (import.meta.main) await main(Deno.args);
