/**
 * The chaos suite: the client engine against a server that is killed and restarted, drops TCP
 * without a close, stalls mid-frame, sends garbage and closes with every code, about once a
 * second, for `CHAOS_SECONDS` (default 60) — on every adapter (whatwg, ws, wse), with and
 * without workers, all six at once.
 *
 * Each direction carries a sequence-numbered stream. The server streams `s:<n>` (numbered across
 * connections); the client sends `c:<n>` with `engine.send()` every few ms, with the offline
 * send buffer on, and keeps what the server has not acknowledged. The server's first message on
 * every connection is `resume <n>`, the last `c:` it recorded; `onOpen` (which runs before the
 * engine sends its offline queue) re-sends what a dropped socket lost: the messages after `n`
 * that are no longer in the engine's queue. That is the recipe of docs/reliability.md.
 *
 * Asserted: every `c:` message arrives exactly once, in order; the `s:` stream each session
 * dispatches is consecutive, increasing across sessions, with gaps only where a disconnect was
 * reported (`onClose`); `stop()` resolves within its budget and hands back nothing (everything
 * was sent); no unhandled rejection; sanitizers on (no leaked socket, timer or worker). Printed:
 * reconnects, messages each way, gaps, time to reconnect (p50/p99).
 *
 * `chaos_test.ts` runs this file in a process of its own (it shares nothing, memory included,
 * with the tests that run beside it). Run it directly, or replay a schedule:
 * `CHAOS_SEED=<n> deno test -A tests/chaos/chaos_suite.ts` (`CHAOS_SECONDS` sets the length).
 *
 * @module
 */

import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import type { WebSocketAdapter, WireMessage } from "../../src/transport/types.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import { type ChaosServer, FAULTS, startChaosServer } from "./chaos_server.ts";

const SECONDS = Number(Deno.env.get("CHAOS_SECONDS") ?? 60);
const SEED = Number(Deno.env.get("CHAOS_SEED") ?? Math.floor(Math.random() * 2 ** 31));
const SEND_EVERY_MS = 5;
const STREAM_EVERY_MS = 4;
const STOP_MS = 2000;
/** How long the healed network gets to deliver everything before the test gives up. */
const SETTLE_MS = 20_000;

/** mulberry32: a small seeded PRNG, so a schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const text = (m: WireMessage) => (m.type === "text" ? m.data : new TextDecoder().decode(m.data));
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(predicate: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Combo {
  adapter: "whatwg" | "ws" | "wse";
  workers: boolean;
}

interface SessionRec {
  sid: string;
  /** `s:` numbers dispatched, in dispatch order. */
  got: number[];
  /** Whether `onClose` reported this session's end. */
  closed: boolean;
}

/** Where each session's dispatched `s:` numbers go (workers report through a channel). */
const sessions = new Map<string, SessionRec>();

const ADAPTERS: Record<Combo["adapter"], () => WebSocketAdapter> = {
  whatwg: () => whatwgAdapter(),
  ws: () => wsAdapter(),
  wse: () => wseAdapter(),
};

async function runCombo(combo: Combo, index: number): Promise<string> {
  const name = `${combo.adapter}${combo.workers ? "+workers" : ""}`;
  const random = prng(SEED + index);
  const server: ChaosServer = startChaosServer({
    faultEveryMs: 1000,
    streamEveryMs: STREAM_EVERY_MS,
    firstCode: index * 4,
    random,
  });
  const own: SessionRec[] = [];
  const logged: string[] = [];
  const readErrors = new Map<string, number>();
  /** `c:` messages the server has not acknowledged yet, oldest first. */
  const outbox = new Map<number, string>();
  let produced = 0;
  let resent = 0;
  const results = { sent: 0, buffered: 0, rejected: 0, droppedByBuffer: 0 };
  const reconnectMs: number[] = [];
  let lastClose: number | undefined;

  const engine: WebSocketEngine = new WebSocketEngine({
    url: server.url,
    adapter: ADAPTERS[combo.adapter](),
    reconnect: { baseDelayMs: 20, maxDelayMs: 250 },
    openTimeoutMs: 2000,
    stopTimeoutMs: STOP_MS,
    // The WHATWG WebSocket cannot ping: its stalls last until the server's next fault.
    heartbeat: combo.adapter === "whatwg" ? undefined : { intervalMs: 200, timeoutMs: 400 },
    sendBuffer: {
      maxMessages: 100_000,
      maxBytes: 16 << 20,
      onDrop: () => void results.droppedByBuffer++,
    },
    logger: (message, error) => void logged.push(`${message} ${error ?? ""}`),
    workers: combo.workers
      ? {
        module: new URL("./handler.ts", import.meta.url),
        // Small: the suite shares its process with tests that measure memory.
        count: 1,
        ringBytes: 64 * 1024,
        orderingKey: () => 0, // one lane: dispatched in arrival order
      }
      : undefined,
    client: {
      async onOpen(ctx) {
        // The server's first message says what it has; re-send what a dropped socket lost.
        const lease = await ctx.pause();
        let hello: WireMessage;
        try {
          hello = await lease.read({ timeoutMs: 1000 });
        } finally {
          lease.resume();
        }
        const m = /^resume (\d+)$/.exec(text(hello));
        if (!m) throw new Error(`expected resume, got ${text(hello).slice(0, 20)}`);
        const acked = Number(m[1]);
        for (const k of outbox.keys()) {
          if (k > acked) break;
          outbox.delete(k);
        }
        const queued = engine.sendBuffer!.messages();
        const firstQueued = queued.length > 0 ? Number((queued[0] as string).slice(2)) : Infinity;
        for (const [k, data] of [...outbox]) {
          if (k >= firstQueued) break;
          await ctx.send(data);
          resent++;
        }
        const rec: SessionRec = { sid: ctx.sessionId, got: [], closed: false };
        sessions.set(ctx.sessionId, rec);
        own.push(rec);
        if (lastClose !== undefined) reconnectMs.push(performance.now() - lastClose);
      },
      onMessage: combo.workers ? undefined : (message, ctx) => {
        const t = text(message);
        if (t.startsWith("s:")) sessions.get(ctx.sessionId)?.got.push(Number(t.slice(2)));
      },
      onClose(_peer, ctx) {
        const rec = sessions.get(ctx.sessionId);
        if (rec) rec.closed = true;
        lastClose = performance.now();
      },
      onReadError(error) {
        const key = error instanceof Error ? error.name : String(error);
        readErrors.set(key, (readErrors.get(key) ?? 0) + 1);
      },
      onRestartError() {},
      onCloseError() {},
    },
  });

  // A fault may hit before the first connection (the schedule starts with the server): start()
  // never retries by design, so the suite does, a bounded number of times.
  for (let attempt = 1;; attempt++) {
    try {
      await engine.start();
      break;
    } catch (error) {
      if (attempt >= 20) throw error;
      await delay(50);
    }
  }
  const producing = (async () => {
    const end = performance.now() + SECONDS * 1000;
    // Bounded by time.
    while (performance.now() < end) {
      const n = ++produced;
      const data = `c:${n}`;
      outbox.set(n, data);
      try {
        const r = await engine.send(data);
        results[r]++;
      } catch {
        results.rejected++; // not queued: it stays in the outbox and is re-sent on the next open
      }
      await delay(SEND_EVERY_MS);
    }
  })();
  await producing;

  // The network heals: the engine must come back and deliver everything.
  await server.heal();
  await engine.waitFor("open", { timeoutMs: SETTLE_MS });
  await until(
    () => server.received.at(-1) === produced && engine.sendBuffer!.length === 0,
    `${name}: the server to receive c:${produced} (it has c:${server.received.at(-1)})`,
    SETTLE_MS,
  );
  const t0 = performance.now();
  const unsent = await engine.stop();
  const stopMs = performance.now() - t0;
  await server.close();

  // ---- client → server: exactly once, in order ----
  assert.deepEqual(unsent, [], `${name}: stop() handed back messages that were delivered`);
  assert.equal(server.received.length, produced, `${name}: duplicates or losses`);
  for (let i = 0; i < produced; i++) {
    assert.equal(server.received[i], i + 1, `${name}: c:${i + 1} out of order or missing`);
  }
  assert.equal(results.droppedByBuffer, 0, `${name}: the offline buffer dropped messages`);
  assert.ok(stopMs < STOP_MS + 1000, `${name}: stop() took ${stopMs.toFixed(0)} ms`);
  assert.equal(engine.state, "stopped");

  return JSON.stringify({
    name,
    own,
    produced,
    results,
    resent,
    reconnectMs,
    streamed: server.streamed,
    connections: server.connections,
    faults: server.faults,
    codes: server.codes.length,
    readErrors: Object.fromEntries(readErrors),
    logged: logged.length,
  });
}

/** Checks one combo's server → client stream and prints its counts. */
function report(json: string, sessionsById: Map<string, SessionRec>): void {
  const r = JSON.parse(json);
  let previous = 0;
  let previousClosed = true;
  let gaps = 0;
  let lost = 0;
  let dispatched = 0;
  for (const { sid } of r.own as SessionRec[]) {
    const s = sessionsById.get(sid)!;
    const got = s.got;
    dispatched += got.length;
    for (let i = 1; i < got.length; i++) {
      assert.equal(
        got[i],
        got[i - 1] + 1,
        `${r.name}: s:${got[i - 1]} then s:${got[i]} in a session`,
      );
    }
    if (got.length > 0) {
      assert.ok(
        got[0] > previous,
        `${r.name}: s:${got[0]} after s:${previous} (duplicate/reorder)`,
      );
      if (got[0] !== previous + 1) {
        assert.ok(
          previousClosed,
          `${r.name}: a gap before s:${got[0]} with no reported disconnect`,
        );
        gaps++;
        lost += got[0] - previous - 1;
      }
      previous = got.at(-1)!;
    }
    previousClosed = s.closed;
  }
  const faults = FAULTS.map((f) => `${f} ${r.faults[f]}`).join(", ");
  console.log(
    `[${r.name}] ${r.reconnectMs.length} reconnects (p50 ${
      percentile(r.reconnectMs, 50).toFixed(0)
    } ms, p99 ${percentile(r.reconnectMs, 99).toFixed(0)} ms) over ${r.connections} connections; ` +
      `server→client ${dispatched} dispatched of ${r.streamed} streamed, ${gaps} gaps ` +
      `(${lost} lost, all at reported disconnects); client→server ${r.produced} exactly once ` +
      `(${r.results.sent} sent, ${r.results.buffered} buffered, ${r.results.rejected} rejected ` +
      `mid-drop, ${r.resent} re-sent on open); faults: ${faults} (${r.codes} close codes); ` +
      `read errors ${JSON.stringify(r.readErrors)}; ${r.logged} lines logged`,
  );
  assert.ok(r.reconnectMs.length >= SECONDS / 4, `${r.name}: too few reconnects to mean much`);
}

Deno.test({
  name: `chaos: ${SECONDS} s of faults on every adapter, with and without workers (seed ${SEED})`,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: PromiseRejectionEvent) => {
      unhandled.push(e.reason);
      e.preventDefault();
    };
    globalThis.addEventListener("unhandledrejection", onUnhandled);
    const channel = new BroadcastChannel("wse-chaos");
    channel.onmessage = (e: MessageEvent<{ sid: string; n: number }>) => {
      sessions.get(e.data.sid)?.got.push(e.data.n);
    };
    const combos: Combo[] = [];
    for (const adapter of ["whatwg", "ws", "wse"] as const) {
      for (const workers of [false, true]) combos.push({ adapter, workers });
    }
    try {
      console.log(`chaos seed ${SEED} (CHAOS_SEED=${SEED} replays the schedules)`);
      const results = await Promise.allSettled(combos.map((c, i) => runCombo(c, i)));
      await delay(100); // the last reports from the workers' channel
      const failures = results.filter((r) => r.status === "rejected");
      for (const r of results) if (r.status === "fulfilled") report(r.value, sessions);
      if (failures.length > 0) throw (failures[0] as PromiseRejectedResult).reason;
      assert.deepEqual(unhandled, [], "unhandled rejections");
    } finally {
      channel.close();
      globalThis.removeEventListener("unhandledrejection", onUnhandled);
      sessions.clear();
    }
  },
});
