/**
 * The engine's raw path: an adapter connection that offers `setSink` hands each payload straight
 * to the pool (no message object). No shipped adapter offers it yet, so the adapter here adds it
 * over a real `wseAdapter()` connection, keeping the contract of `AdapterConnection.setSink`:
 * a refused payload is held, with everything after it, until the sink is writable again, and
 * `closed` settles only once everything was handed over.
 */

import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { UndeliveredError } from "../../src/engine/errors.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import type {
  AdapterConnection,
  CloseInfo,
  MessageSink,
  OutgoingData,
  WebSocketAdapter,
  WireMessage,
} from "../../src/transport/types.ts";
import { deferred } from "../../src/util/async.ts";
import { startEchoServer } from "../../src/testing/echo_server.ts";
import { SAN, waitFor } from "../dispatch/helpers.ts";

const encoder = new TextEncoder();

class SinkConnection implements AdapterConnection {
  readonly #inner: AdapterConnection;
  readonly #closed = deferred<CloseInfo>();
  #sink?: MessageSink;
  #held?: WireMessage;
  #waiting = false;
  #end?: CloseInfo;
  #listener?: () => void;

  constructor(inner: AdapterConnection) {
    this.#inner = inner;
    inner.onReadable(() => this.#pump());
    inner.closed.then((info) => {
      this.#end = info;
      this.#pump();
    });
  }

  #pump(): void {
    if (!this.#sink) return this.#listener?.();
    // Bounded: every turn hands over one queued message, or stops.
    while (!this.#waiting) {
      const m = this.#held ?? this.#inner.poll();
      this.#held = undefined;
      if (m === undefined) {
        if (this.#end) this.#closed.resolve(this.#end);
        return;
      }
      const payload = m.type === "text" ? encoder.encode(m.data) : m.data;
      if (!this.#sink.deliver(m.type === "text", payload)) {
        this.#held = m;
        this.#waiting = true;
        const sink = this.#sink;
        sink.writable().then(() => {
          this.#waiting = false;
          this.#pump();
        });
      }
    }
  }

  setSink(sink: MessageSink | undefined): void {
    this.#sink = sink;
    this.#pump();
  }
  get handshake() {
    return this.#inner.handshake;
  }
  get underlying() {
    return this.#inner.underlying;
  }
  poll(): WireMessage | undefined {
    if (this.#sink) return undefined;
    const m = this.#held ?? this.#inner.poll();
    this.#held = undefined;
    if (m === undefined && this.#end) this.#closed.resolve(this.#end);
    return m;
  }
  readable(): Promise<void> {
    return this.#inner.readable();
  }
  onReadable(listener: (() => void) | undefined): void {
    this.#listener = listener;
  }
  get closed(): Promise<CloseInfo> {
    return this.#closed.promise;
  }
  get isClosed(): boolean {
    return this.#inner.isClosed;
  }
  send(data: OutgoingData): Promise<void> {
    return this.#inner.send(data);
  }
  get bufferedAmount(): number {
    return this.#inner.bufferedAmount;
  }
  ping(timeoutMs: number): Promise<number> {
    return this.#inner.ping(timeoutMs);
  }
  close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo> {
    return this.#inner.close(code, reason, timeoutMs);
  }
  terminate(): void {
    this.#inner.terminate();
  }
}

function sinkAdapter(): WebSocketAdapter {
  const inner = wseAdapter();
  return {
    name: "wse+sink",
    dial: async (url, options) => new SinkConnection(await inner.dial(url, options)),
  };
}

Deno.test({
  name: "raw path: messages reach the workers through the sink",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: sinkAdapter(),
      sendBuffer: true,
      workers: { module: new URL("./fixtures/engine_handler.ts", import.meta.url), count: 1 },
      client: {},
    });
    try {
      await engine.start();
      for (let i = 0; i < 20; i++) await engine.send(`job:${i}`);
      const done = () => server.received.filter((d) => String(d).startsWith("done:"));
      await waitFor(() => done().length === 20, "20 answers from the worker");
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});

Deno.test({
  name: "raw path: a held read lock at a drop cannot wedge the session (UndeliveredError)",
  ...SAN,
  fn: async () => {
    const server = startEchoServer();
    const errors: unknown[] = [];
    let opens = 0;
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: sinkAdapter(),
      stopTimeoutMs: 200,
      reconnect: { baseDelayMs: 5, maxDelayMs: 20 },
      workers: {
        module: new URL("./fixtures/engine_handler.ts", import.meta.url),
        count: 1,
        ringBytes: 4096,
      },
      client: {
        onOpen: () => void opens++,
        onReadError: (e) => void errors.push(e),
      },
    });
    try {
      await engine.start();
      const lease = await engine.pause(); // the pool's lock: nothing is taken from the ring
      for (let i = 0; i < 100; i++) server.broadcast("x".repeat(200)); // 20 KB: the ring is full
      await new Promise((r) => setTimeout(r, 100));
      await server.kill();
      await engine.waitFor("reconnecting", { timeoutMs: 5000 });
      const undelivered = errors.find((e) => e instanceof UndeliveredError) as UndeliveredError;
      assert.ok(undelivered, `reported: ${errors.map(String).join(", ")}`);
      assert.ok(undelivered.count > 0 && undelivered.count < 100, String(undelivered.count));
      lease.resume();
      await server.restart();
      await waitFor(() => opens === 2, "reconnected");
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});
