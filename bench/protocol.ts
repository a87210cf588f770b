/**
 * `deno task bench protocol [--quick]`: our RFC 6455 transport against `npm:ws` (on Deno) and
 * Deno's native WebSocket, server and client in separate processes, compression off.
 *
 * - **push**: the client sends N binary messages as fast as its own send path allows, each with
 *   its own back-pressure signal and an 8 MiB high-water mark (our awaitable `send`; ws's send
 *   callback; the native `bufferedAmount`, polled with `setTimeout(0)`), then `"end"`; the server
 *   counts and answers with the count. Rate = N / (first send → answer).
 * - **rtt**: serial echo round trips (send, await the echo, repeat).
 *
 * Each library talks to its own server: wse ↔ wse, ws ↔ ws (both npm:ws in Deno), native
 * `WebSocket` ↔ `Deno.serve` + `Deno.upgradeWebSocket`. All configurations run back to back in
 * each set; the reported rate is the median of the sets. Last line: the ratios as JSON.
 */
import { WebSocket as WsWebSocket, WebSocketServer } from "ws";
import { connect } from "../src/transport/tcp_client.ts";
import { serve } from "../src/transport/tcp_server.ts";
import type { WebSocketConnection } from "../src/transport/tcp_connection.ts";
import { median, percentile, type Row, writeReport } from "./lib/report.ts";

type Lib = "wse" | "ws" | "deno";
const LIBS: Lib[] = ["wse", "ws", "deno"];
const LABEL: Record<Lib, string> = {
  wse: "wse (ours)",
  ws: "npm:ws on Deno",
  deno: "Deno native WebSocket",
};
const HWM = 8 << 20;

// ---------------------------------------------------------------- server process

/** Server side: echo everything; in push mode count binary messages until "end". */
async function serverMain(lib: Lib): Promise<void> {
  let port = 0;
  let stop: () => Promise<void>;
  if (lib === "wse") {
    const server = serve({
      port: 0,
      hostname: "127.0.0.1",
      compression: false,
      maxPayload: 64 << 20,
      onConnection: (ws) => void wseServe(ws),
    });
    port = server.port;
    stop = () => server.close();
  } else if (lib === "ws") {
    const wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      perMessageDeflate: false,
      maxPayload: 64 << 20,
    });
    await new Promise<void>((r) => wss.on("listening", () => r()));
    port = (wss.address() as { port: number }).port;
    wss.on("connection", (ws: WsWebSocket) => {
      let push = false;
      let count = 0;
      ws.on("message", (data: Uint8Array, isBinary: boolean) => {
        if (isBinary) {
          if (push) count++;
          else ws.send(data, { binary: true });
          return;
        }
        const s = data.toString();
        if (s === "push") push = true;
        else if (s === "end") {
          ws.send(String(count));
          count = 0;
          push = false;
        } else ws.send(s);
      });
    });
    stop = () => new Promise((r) => wss.close(() => r()));
  } else {
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.binaryType = "arraybuffer";
      let push = false;
      let count = 0;
      socket.onmessage = (e) => {
        if (typeof e.data !== "string") {
          if (push) count++;
          else socket.send(e.data);
        } else if (e.data === "push") push = true;
        else if (e.data === "end") {
          socket.send(String(count));
          count = 0;
          push = false;
        } else socket.send(e.data);
      };
      return response;
    });
    port = server.addr.port;
    stop = () => server.shutdown();
  }
  console.log(`PORT ${port}`);
  // Runs until the parent closes our stdin.
  for await (const _ of Deno.stdin.readable) { /* ignore */ }
  await stop();
  Deno.exit(0);
}

async function wseServe(ws: WebSocketConnection): Promise<void> {
  let push = false;
  let count = 0;
  try {
    while (true) {
      const m = ws.poll();
      if (!m) {
        if (ws.isClosed) return;
        await ws.readable();
        continue;
      }
      if (m.type === "binary") {
        if (push) count++;
        else await ws.send(m.data);
      } else if (m.data === "push") push = true;
      else if (m.data === "end") {
        await ws.send(String(count));
        count = 0;
        push = false;
      } else await ws.send(m.data);
    }
  } catch {
    // client went away
  }
}

// ---------------------------------------------------------------- clients

interface Client {
  /** Sends `n` binary messages of `payload` as fast as the library's send path allows. */
  push(payload: Uint8Array, n: number): Promise<number>;
  /** `n` serial round trips (or until `capMs`); returns per-round-trip µs. */
  rtt(payload: Uint8Array, n: number, capMs: number): Promise<number[]>;
  close(): Promise<void>;
}

/** Serial echo round trips until `n` or `capMs`: microseconds per round trip. */
async function roundTrips(
  send: () => unknown,
  next: () => Promise<unknown>,
  n: number,
  capMs: number,
): Promise<number[]> {
  const out: number[] = [];
  const end = performance.now() + capMs;
  for (let i = 0; i < n && performance.now() < end; i++) {
    const t = performance.now();
    await send();
    await next();
    out.push((performance.now() - t) * 1000);
  }
  return out;
}

async function wseClient(url: string): Promise<Client> {
  const ws = await connect(url, {
    compression: false,
    maxPayload: 64 << 20,
    writeHighWaterMark: HWM,
    writeLowWaterMark: HWM / 4,
  });
  const next = async () => {
    while (true) {
      const m = ws.poll();
      if (m) return m;
      if (ws.isClosed) throw new Error("closed");
      await ws.readable();
    }
  };
  return {
    async push(payload, n) {
      await ws.send("push");
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await ws.send(payload);
      await ws.send("end");
      const m = await next();
      const dt = performance.now() - t0;
      if (m.type !== "text" || Number(m.data) !== n) throw new Error(`wse push got ${m.data}`);
      return dt;
    },
    rtt: (payload, n, capMs) => roundTrips(() => ws.send(payload), next, n, capMs),
    async close() {
      await ws.close(1000, "", 2000);
    },
  };
}

/** A queue over an event-style socket's messages. */
function inbox() {
  const q: unknown[] = [];
  let wake: (() => void) | undefined;
  return {
    push(v: unknown) {
      q.push(v);
      const w = wake;
      wake = undefined;
      w?.();
    },
    async next(): Promise<unknown> {
      while (q.length === 0) await new Promise<void>((r) => (wake = r));
      return q.shift();
    },
  };
}

async function wsClient(url: string): Promise<Client> {
  const ws = new WsWebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
  const box = inbox();
  ws.on(
    "message",
    (data: Uint8Array, isBinary: boolean) => box.push(isBinary ? data : data.toString()),
  );
  await new Promise<void>((res, rej) => {
    ws.once("open", () => res());
    ws.once("error", rej);
  });
  return {
    async push(payload, n) {
      ws.send("push");
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        if (ws.bufferedAmount > HWM) {
          await new Promise<void>((r) => ws.send(payload, () => r()));
        } else ws.send(payload);
      }
      ws.send("end");
      const m = await box.next();
      const dt = performance.now() - t0;
      if (Number(m) !== n) throw new Error(`ws push got ${m}`);
      return dt;
    },
    rtt: (payload, n, capMs) => roundTrips(() => ws.send(payload), () => box.next(), n, capMs),
    close() {
      return new Promise<void>((r) => {
        ws.once("close", () => r());
        ws.close(1000);
      });
    },
  };
}

async function denoClient(url: string): Promise<Client> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const box = inbox();
  ws.onmessage = (e) => box.push(e.data);
  await new Promise<void>((res, rej) => {
    ws.onopen = () => res();
    ws.onerror = () => rej(new Error("native WebSocket failed to connect"));
  });
  return {
    async push(payload, n) {
      ws.send("push");
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        while (ws.bufferedAmount > HWM) await new Promise((r) => setTimeout(r, 0));
        ws.send(payload);
      }
      ws.send("end");
      const m = await box.next();
      const dt = performance.now() - t0;
      if (Number(m) !== n) throw new Error(`native push got ${m}`);
      return dt;
    },
    rtt: (payload, n, capMs) => roundTrips(() => ws.send(payload), () => box.next(), n, capMs),
    close() {
      return new Promise<void>((r) => {
        ws.onclose = () => r();
        ws.close(1000);
      });
    },
  };
}

const CLIENTS: Record<Lib, (url: string) => Promise<Client>> = {
  wse: wseClient,
  ws: wsClient,
  deno: denoClient,
};

// ---------------------------------------------------------------- runner

interface ServerProc {
  url: string;
  stop(): Promise<void>;
}

async function startServer(lib: Lib): Promise<ServerProc> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--serve", lib],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${lib} server exited before listening`);
    buf += value;
  }
  const port = Number(/PORT (\d+)/.exec(buf)?.[1]);
  return {
    url: `ws://127.0.0.1:${port}/`,
    async stop() {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    },
  };
}

const SIZES = [
  { label: "64 B", bytes: 64 },
  { label: "16 KiB", bytes: 16 * 1024 },
  { label: "1 MiB", bytes: 1 << 20 },
];

/** Entry point called by `bench/main.ts`. */
export async function main(flags: string[]): Promise<void> {
  const quick = flags.includes("--quick");
  const sets = quick ? 5 : 7;
  const pushN: Record<number, number> = quick
    ? { 64: 100_000, 16384: 10_000, [1 << 20]: 100 }
    : { 64: 300_000, 16384: 30_000, [1 << 20]: 500 };
  const rttN: Record<number, number> = quick
    ? { 64: 3000, 16384: 2000, [1 << 20]: 50 }
    : { 64: 10_000, 16384: 6000, [1 << 20]: 200 };
  const capMs = quick ? 500 : 2000;

  const servers = {} as Record<Lib, ServerProc>;
  const clients = {} as Record<Lib, Client>;
  for (const lib of LIBS) {
    servers[lib] = await startServer(lib);
    clients[lib] = await CLIENTS[lib](servers[lib].url);
  }
  const pushRates: Record<string, number[]> = {};
  const rttRates: Record<string, number[]> = {};
  const rttSamples: Record<string, number[]> = {};
  try {
    // warm-up
    for (const lib of LIBS) {
      await clients[lib].push(new Uint8Array(64), 2000);
      await clients[lib].rtt(new Uint8Array(16384), 50, 300);
    }
    for (let s = 0; s < sets; s++) {
      for (const size of SIZES) {
        const payload = new Uint8Array(size.bytes).fill(7);
        // Rotate the order each set so no library always runs first (or right after a GC-heavy one).
        const order = LIBS.map((_, i) => LIBS[(i + s) % LIBS.length]);
        for (const lib of order) {
          const n = pushN[size.bytes];
          const ms = await clients[lib].push(payload, n);
          (pushRates[`${lib} push ${size.label}`] ??= []).push(n / (ms / 1000));
          const us = await clients[lib].rtt(payload, rttN[size.bytes], capMs);
          const total = us.reduce((a, b) => a + b, 0);
          (rttRates[`${lib} rtt ${size.label}`] ??= []).push(us.length / (total / 1e6));
          (rttSamples[`${lib} rtt ${size.label}`] ??= []).push(...us);
        }
      }
    }
  } finally {
    for (const lib of LIBS) {
      await clients[lib].close().catch(() => {});
      await servers[lib].stop().catch(() => {});
    }
  }

  const rows: Row[] = [];
  for (const size of SIZES) {
    for (const lib of LIBS) {
      const rates = pushRates[`${lib} push ${size.label}`];
      rows.push({
        group: `one-way push ${size.label} (msg/s)`,
        name: LABEL[lib],
        rate: median(rates),
        extra: { MBps: median(rates) * size.bytes / 1e6, sets: rates.length },
      });
    }
    for (const lib of LIBS) {
      const key = `${lib} rtt ${size.label}`;
      const samples = rttSamples[key];
      rows.push({
        group: `echo round trips ${size.label} (round trips/s)`,
        name: LABEL[lib],
        rate: median(rttRates[key]),
        extra: { p50_us: percentile(samples, 50), p99_us: percentile(samples, 99) },
      });
    }
  }
  const rate = (group: string, lib: Lib) =>
    rows.find((r) => r.group.startsWith(group) && r.name === LABEL[lib])!.rate;
  const ratios = {
    push_64_vs_ws: rate("one-way push 64 B", "wse") / rate("one-way push 64 B", "ws"),
    rtt_16k_vs_ws: rate("echo round trips 16 KiB", "wse") / rate("echo round trips 16 KiB", "ws"),
    rtt_16k_vs_deno_native: rate("echo round trips 16 KiB", "wse") /
      rate("echo round trips 16 KiB", "deno"),
  };
  await writeReport(
    "protocol",
    "wse RFC 6455 transport vs npm:ws and Deno's native WebSocket (loopback, separate processes)",
    rows,
    ratios,
    {
      quick,
      sets,
      method:
        "each library against its own server (wse↔wse, ws↔ws, native↔Deno.serve), compression off; push = client sends N binary messages through its own send path with an 8 MiB buffered high-water mark (each library's own signal: our awaitable send, ws send callback, native bufferedAmount polled with setTimeout 0), server answers the count; rtt = serial echo; medians of back-to-back sets",
      pushCounts: pushN,
      rttCounts: rttN,
      rttCapMs: capMs,
    },
  );
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--serve");
  if (i >= 0) await serverMain(Deno.args[i + 1] as Lib);
  else await main(Deno.args);
}
