/**
 * `PoolDispatcher`: runs handlers in a pool of workers (Web Workers; `worker_threads` on Node)
 * fed through SharedArrayBuffer rings, for any number of connections at once.
 *
 * The main thread (which owns the sockets) is the only writer of the rings. Workers take the read
 * lock (an Atomics mutex in shared memory), claim one record, release the lock and run the handler
 * on a borrowed view of the bytes. The pause button is the same lock. Two assignments:
 * - `shared`: one ring for the pool; any free worker takes the next record; a connection's
 *   messages keep their order (ordering lanes), or the order of an `orderingKey`, or none;
 * - `sticky`: one ring per worker; a connection belongs to one worker for its life, chosen
 *   round-robin when it opens, so per-connection state can live in that worker.
 * Handlers' sends and calls come back over batched `postMessage`, in order per worker.
 *
 * @module
 */

import { runtime } from "../platform/runtime.ts";
import type { WorkerHandle } from "../platform/types.ts";
import {
  ConnectionClosedError,
  NotSupportedError,
  type OutgoingData,
  type WireMessage,
} from "../transport/types.ts";
import { type Deferred, deferred, within } from "../util/async.ts";
import { Lease } from "./lease.ts";
import {
  C,
  CONN_WORDS,
  CS_DISCARD,
  decode,
  K_BINARY,
  K_CLOSE,
  K_OPEN,
  laneOf,
  LANES,
  lockAsync,
  MAIN_TOKEN,
  MAX_ID_BYTES,
  MAX_WORKERS,
  R,
  release,
  ST_DONE,
  T_DROPPED,
  T_STATE,
  takeFor,
  unlock,
  W_ASLEEP,
  W_INFLIGHT,
  WORKER_STRIDE,
  writeConnection,
} from "./ring.ts";
import { RingWriter, type WriterStats } from "./ring_writer.ts";
import { withCarrier } from "../telemetry/telemetry.ts";
import { sharedMemoryProblem } from "./shared_memory.ts";
import type {
  ConnectionHost,
  DispatchConnection,
  Dispatcher,
  EndOptions,
  PauseLease,
  TraceCarrier,
} from "./types.ts";
import { type FromWorker, type InitMessage, type Op, toWireError, type ToWorker } from "./wire.ts";

/**
 * Options of the worker pool.
 *
 * @example
 * ```ts
 * import type { PoolOptions } from "./pool.ts";
 * const workers: PoolOptions = {
 *   module: new URL("./handler.ts", import.meta.url),
 *   count: 2,
 *   orderingKey: (m) => (m.type === "text" ? m.data.slice(0, 8) : 0),
 * };
 * ```
 */
export interface PoolOptions {
  /**
   * The worker module: exports `onMessage(message, ctx)`, and may export `onConnect(ctx, info)`,
   * `onDisconnect(info, ctx)` and `onReadError(error, info)`. Pass a `URL` resolved against your
   * own module (`new URL("./handler.ts", import.meta.url)`); a string is parsed as a URL, or else
   * as a path relative to the current working directory.
   */
  module: string | URL;
  /** Number of workers (1..64). Default: the number of CPUs. */
  count?: number;
  /**
   * `"shared"`: any free worker takes the next message. `"sticky"`: each connection is handled by
   * one worker for its whole life, chosen round-robin when it opens. Default as the owner says
   * (the client engine: shared; the server: sticky).
   */
  assign?: "shared" | "sticky";
  /**
   * Shared mode: messages with the same key are handled in arrival order, one at a time; different
   * keys in parallel. Runs on the main thread. Keys hash to 1024 lanes (a collision only costs
   * parallelism, never order). Without it, the owner's default applies (the client engine: no
   * order; the server: each connection's messages in order).
   */
  orderingKey?: (message: WireMessage) => string | number;
  /**
   * Shared-memory ring capacity in bytes, split evenly across the rings (one in shared mode, one
   * per worker in sticky mode); messages over half a ring take the side channel. Default 4 MiB.
   */
  ringBytes?: number;
  /** Largest message the side channel can grow to. Default 256 MiB. */
  maxMessageBytes?: number;
  /** Budget for the workers to load the module in `init()`. Default 30 s. */
  initTimeoutMs?: number;
  /**
   * Advanced: under a flood (over 50k msg/s for 5 ms) a ring is published to the workers once
   * per this many messages (and at the end of the burst), so workers wake and take them in
   * batches; otherwise every message is published at once. Default 1024.
   */
  publishBatch?: number;
}

/**
 * What the pool's owner (engine, server) adds to {@linkcode PoolOptions}.
 *
 * @example
 * ```ts
 * import type { PoolSetup } from "./pool.ts";
 * const setup: PoolSetup = { order: "connection", assign: "sticky" };
 * ```
 */
export interface PoolSetup {
  /** Module exporting `context(base)`, which shapes the context handlers get in a worker. */
  context?: URL;
  /** Default assignment when the options do not say. Default `"shared"`. */
  assign?: "shared" | "sticky";
  /** Shared mode without `orderingKey`: `"connection"` keeps each connection's order (default). */
  order?: "connection" | "none";
  /**
   * Records (messages, opens, closes) one connection may have in a ring before its `push`
   * refuses while the others go on, so a flooding connection cannot fill a ring for everyone.
   * Default: no limit beyond the ring.
   */
  maxQueuedPerConnection?: number;
}

/**
 * Checks {@linkcode PoolOptions}: returns the first problem (a field suffix such as `".count"`,
 * the rule, the value), or undefined when they are valid.
 *
 * @example
 * ```ts
 * import { poolOptionsProblem } from "./pool.ts";
 * console.log(poolOptionsProblem({ module: "./h.ts", count: 0 })?.rule);
 * ```
 */
export function poolOptionsProblem(
  options: PoolOptions,
): { field: string; rule: string; value: unknown } | undefined {
  if (typeof options !== "object" || options === null) {
    return { field: "", rule: "must be an object { module, count?, ... }", value: options };
  }
  if (!(typeof options.module === "string" || options.module instanceof URL)) {
    return { field: ".module", rule: "must be a URL or a string", value: options.module };
  }
  const c = options.count;
  if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > MAX_WORKERS)) {
    return { field: ".count", rule: `must be an integer in 1..${MAX_WORKERS}`, value: c };
  }
  const a = options.assign;
  if (a !== undefined && a !== "shared" && a !== "sticky") {
    return { field: ".assign", rule: 'must be "shared" or "sticky"', value: a };
  }
  const r = options.ringBytes;
  if (r !== undefined && !(typeof r === "number" && r >= 256 && r <= 2 ** 30)) {
    return { field: ".ringBytes", rule: "must be a number of bytes in 256..2^30", value: r };
  }
  const k = options.orderingKey;
  if (k !== undefined && typeof k !== "function") {
    return { field: ".orderingKey", rule: "must be a function (message) => key", value: k };
  }
  if (k !== undefined && a === "sticky") {
    return {
      field: ".orderingKey",
      rule: 'applies to assign "shared" only (a sticky connection is handled in order)',
      value: k,
    };
  }
  const m = options.maxMessageBytes;
  if (m !== undefined && !(typeof m === "number" && m > 0)) {
    return { field: ".maxMessageBytes", rule: "must be a number > 0", value: m };
  }
  for (const name of ["initTimeoutMs", "publishBatch"] as const) {
    const v = options[name];
    if (v !== undefined && !(typeof v === "number" && v > 0)) {
      return { field: `.${name}`, rule: "must be a number > 0", value: v };
    }
  }
  return undefined;
}

/**
 * A worker died (uncaught error, `close()`) with a message in flight, or while idle.
 *
 * @example
 * ```ts
 * import { WorkerDiedError } from "./pool.ts";
 * const e = new WorkerDiedError("w1", "uncaught Error: boom");
 * console.log(e.workerId, e.inFlight); // "w1" undefined
 * ```
 */
export class WorkerDiedError extends Error {
  /** Always `"WorkerDiedError"`. */
  override name = "WorkerDiedError";
  /** The worker that died. */
  readonly workerId: string;
  /** The message it was handling, if any (a copy). */
  readonly inFlight?: WireMessage;
  /** `reason` says how it died; `inFlight` is a copy of the message it was handling. */
  constructor(workerId: string, reason: string, inFlight?: WireMessage, cause?: unknown) {
    super(
      `worker ${workerId} died (${reason})${inFlight ? " while handling a message" : ""}`,
      { cause },
    );
    this.workerId = workerId;
    this.inFlight = inFlight;
  }
}

interface Slot {
  index: number;
  id: string;
  token: number;
  worker: WorkerHandle;
  writer: RingWriter;
  alive: boolean;
  ready: Deferred<void>;
  stopped: Deferred<void>;
  acks: [number, ReturnType<typeof toWireError> | null, unknown][];
  ackScheduled: boolean;
}

const WORKER_URL = new URL("./worker.ts", import.meta.url);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Connection-table slots the table starts with, and the most it can grow to. */
const TABLE_START = 1024;
const TABLE_MAX = 1 << 20;
/** Ended connections whose late errors are still routed to their host. */
const RECENT = 256;

/**
 * The URL of a worker module given as {@linkcode PoolOptions.module}: a `URL` as is, a string
 * parsed as a URL, or else taken as a path relative to the current working directory.
 *
 * @example
 * ```ts
 * import { resolveModule } from "./pool.ts";
 * console.log(resolveModule("file:///app/handler.ts").pathname); // "/app/handler.ts"
 * ```
 */
export function resolveModule(module: string | URL): URL {
  if (module instanceof URL) return module;
  try {
    return new URL(module);
  } catch {
    return runtime.pathUrl(module);
  }
}

/** A record's trace bytes: `traceparent`, `tracestate` and the arrival time, one per line. */
function encodeTrace(trace: TraceCarrier | undefined): Uint8Array | undefined {
  if (!trace?.traceparent) return undefined;
  return encoder.encode(
    `${trace.traceparent}\n${trace.tracestate ?? ""}\n${trace.receivedAt ?? ""}`,
  );
}

function encodeInfo(info: unknown): Uint8Array {
  return info === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(info));
}

/** One connection in the pool. */
class PoolConnection implements DispatchConnection {
  readonly host: ConnectionHost;
  readonly slot: number;
  readonly gen: number;
  readonly writer: RingWriter;
  /** The connection's lane in shared mode with per-connection order, else -1. */
  readonly lane: number;
  readonly #pool: PoolDispatcher;
  ended = false;
  /** Its records in the ring, not yet reclaimed. */
  pending = 0;
  /** Main-thread leases on this connection: they end with it. */
  readonly leases = new Set<Lease>();
  readonly deliver: (text: boolean, payload: Uint8Array, trace?: TraceCarrier) => boolean;

  constructor(
    pool: PoolDispatcher,
    host: ConnectionHost,
    slot: number,
    gen: number,
    writer: RingWriter,
    lane: number,
  ) {
    this.#pool = pool;
    this.host = host;
    this.slot = slot;
    this.gen = gen;
    this.writer = writer;
    this.lane = lane;
    this.deliver = (text, payload, trace) => pool.write(this, text, payload, trace);
  }
  get id(): string {
    return this.host.id;
  }
  push(message: WireMessage, trace?: TraceCarrier): boolean {
    return this.#pool.write(this, message.type === "text", message.data, trace, message);
  }
  writable(): Promise<void> {
    return this.#pool.writableFor(this);
  }
  pause(signal?: AbortSignal): Promise<PauseLease> {
    return this.#pool.pauseFor(this, signal);
  }
  end(options: EndOptions = {}): void {
    this.#pool.endConnection(this, options);
  }
}

/**
 * A {@linkcode Dispatcher} that runs handlers in a pool of Web Workers fed through
 * SharedArrayBuffer rings, with no `postMessage` per message.
 *
 * @example
 * ```ts ignore
 * import { PoolDispatcher } from "./pool.ts";
 * const pool = new PoolDispatcher({ module: new URL("./handler.ts", import.meta.url), count: 2 });
 * await pool.init();
 * const c = pool.open(host); // a ConnectionHost from the engine or the server
 * c.push({ type: "text", data: "job 1" });
 * c.end();
 * await pool.close(1000);
 * ```
 */
export class PoolDispatcher implements Dispatcher {
  readonly #moduleUrl: URL;
  readonly #contextUrl?: URL;
  readonly #count: number;
  readonly #sticky: boolean;
  readonly #perConnection: boolean;
  readonly #key?: (message: WireMessage) => string | number;
  readonly #initTimeoutMs: number;
  readonly #writers: RingWriter[] = [];
  readonly #table: SharedArrayBuffer;
  readonly #table32: Int32Array;
  /** Live connections by slot; their generations; free slots. */
  readonly #conns: (PoolConnection | undefined)[] = [];
  readonly #gens: number[] = [];
  readonly #free: number[] = [];
  readonly #recent = new Map<string, ConnectionHost>();
  /** Open/close records waiting for room, per writer (messages then wait behind them). */
  readonly #pending = new Map<RingWriter, (() => boolean)[]>();
  #slots: Slot[] = [];
  #nextToken = MAIN_TOKEN + 1;
  #nextWorker = 1;
  #nextSticky = 0;
  #closing = false;
  #closed = false;
  #abandoned = 0;
  #initialized = false;
  readonly #maxPer: number;

  /**
   * Creates the shared memory; workers start in {@linkcode PoolDispatcher.init}. Throws
   * `NotSupportedError` saying why where memory cannot be shared (a browser page that is not
   * cross-origin isolated).
   */
  constructor(options: PoolOptions, setup: PoolSetup = {}) {
    const problem = poolOptionsProblem(options);
    if (problem) {
      throw new RangeError(`workers${problem.field} ${problem.rule}, got ${String(problem.value)}`);
    }
    const unshared = sharedMemoryProblem();
    if (unshared) throw new NotSupportedError(unshared);
    this.#moduleUrl = resolveModule(options.module);
    this.#contextUrl = setup.context;
    this.#count = Math.min(MAX_WORKERS, options.count ?? runtime.cpuCount);
    this.#sticky = (options.assign ?? setup.assign ?? "shared") === "sticky";
    this.#key = options.orderingKey;
    this.#perConnection = !this.#sticky && !this.#key && (setup.order ?? "connection") ===
        "connection";
    this.#initTimeoutMs = options.initTimeoutMs ?? 30_000;
    const rings = this.#sticky ? this.#count : 1;
    const ringBytes = Math.max(4096, Math.floor((options.ringBytes ?? 4 << 20) / rings));
    const maxSide = options.maxMessageBytes ?? 256 << 20;
    this.#maxPer = setup.maxQueuedPerConnection ?? Infinity;
    const onReclaim = this.#maxPer === Infinity ? undefined : (slot: number, gen: number) => {
      const c = this.#conns[slot];
      if (c && c.gen === gen) c.pending--;
    };
    const all = Array.from({ length: this.#count }, (_, i) => i);
    for (let i = 0; i < rings; i++) {
      // a channel's readers: every worker in shared mode, its own worker in sticky mode
      const readers = this.#sticky ? [i] : all;
      this.#writers.push(
        new RingWriter(ringBytes, maxSide, options.publishBatch ?? 1024, readers, onReclaim),
      );
    }
    this.#table = new SharedArrayBuffer(TABLE_START * CONN_WORDS * 4, {
      maxByteLength: TABLE_MAX * CONN_WORDS * 4,
    });
    this.#table32 = new Int32Array(this.#table);
  }

  /** Ring capacity in bytes (of each ring). */
  get ringBytes(): number {
    return this.#writers[0].capacity;
  }

  /** Bytes of the rings currently held by unhandled or in-flight records. */
  get usedBytes(): number {
    return this.#writers.reduce((n, w) => n + w.usedBytes, 0);
  }

  /** Bytes held by the side channels (each grows to the largest oversize message it carried). */
  get sideBytes(): number {
    return this.#writers.reduce((n, w) => n + w.side.byteLength, 0);
  }

  /** Counters of the main thread's side, summed over the rings. */
  get stats(): WriterStats & { connections: number } {
    const s = { pushes: 0, publishes: 0, wakes: 0, floodWindows: 0, connections: 0 };
    for (const w of this.#writers) {
      s.pushes += w.stats.pushes;
      s.publishes += w.stats.publishes;
      s.wakes += w.stats.wakes;
      s.floodWindows += w.stats.floodWindows;
    }
    s.connections = this.#conns.filter((c) => c).length;
    return s;
  }

  /** The ids of the live workers, in worker-index order. */
  get workerIds(): string[] {
    return this.#slots.filter((s) => s.alive).map((s) => s.id);
  }

  /** Spawns the workers and waits until each has loaded the module and found `onMessage`. */
  async init(): Promise<void> {
    if (this.#initialized) return;
    this.#initialized = true;
    for (let i = 0; i < this.#count; i++) this.#spawn(i);
    try {
      await within(Promise.all(this.#slots.map((s) => s.ready.promise)), {
        timeoutMs: this.#initTimeoutMs,
        what: "loading the worker module",
      });
    } catch (e) {
      this.#closing = this.#closed = true;
      for (const w of this.#writers) w.close();
      for (const s of this.#slots) s.worker.terminate();
      this.#slots = [];
      throw e;
    }
  }

  // ---- connections ----

  /** A connection opens; its `onConnect` (if the module has one) runs before its messages. */
  open(host: ConnectionHost, info?: unknown): DispatchConnection {
    if (encoder.encode(host.id).length > MAX_ID_BYTES) {
      throw new RangeError(`a connection id is at most ${MAX_ID_BYTES} bytes, got "${host.id}"`);
    }
    const slot = this.#free.pop() ?? this.#conns.length;
    if ((slot + 1) * CONN_WORDS * 4 > this.#table.byteLength) {
      if ((slot + 1) * CONN_WORDS * 4 > this.#table.maxByteLength) {
        throw new RangeError(`the pool serves at most ${TABLE_MAX} connections at once`);
      }
      this.#table.grow(Math.min(this.#table.maxByteLength, this.#table.byteLength * 2));
    }
    const gen = this.#gens[slot] = ((this.#gens[slot] ?? 0) + 1) | 0;
    writeConnection(this.#table32, slot, gen, host.id);
    const writer = this.#sticky
      ? this.#writers[this.#nextSticky++ % this.#writers.length]
      : this.#writers[0];
    const lane = this.#perConnection ? slot % LANES : -1;
    const conn = new PoolConnection(this, host, slot, gen, writer, lane);
    this.#conns[slot] = conn;
    if (this.#closing) conn.ended = true;
    else this.#control(conn, K_OPEN, info);
    return conn;
  }

  /** Writes an open or close record, or queues it until the ring has room. */
  #control(conn: PoolConnection, kind: number, info: unknown): void {
    const bytes = encodeInfo(info);
    const w = conn.writer;
    const write = () => {
      if (!w.write(kind, conn.slot, conn.gen, conn.lane, bytes)) return false;
      conn.pending++;
      return true;
    };
    const pending = this.#pending.get(w);
    if (!pending && write()) return;
    if (pending) pending.push(write);
    else {
      this.#pending.set(w, [write]);
      void this.#drainPending(w);
    }
  }

  async #drainPending(w: RingWriter): Promise<void> {
    const pending = this.#pending.get(w)!;
    // Bounded: every turn writes a record or waits for room; closing ends it.
    while (pending.length && !this.#closing) {
      if (pending[0]()) pending.shift();
      else await w.writable();
    }
    this.#pending.delete(w);
  }

  /** Copies one message of `conn` into its ring. */
  write(
    conn: PoolConnection,
    text: boolean,
    data: string | Uint8Array,
    trace?: TraceCarrier,
    message?: WireMessage,
  ): boolean {
    if (this.#closing) {
      this.#abandoned++;
      return true;
    }
    if (conn.ended) return true;
    const w = conn.writer;
    // an open/close record waits for room first
    if (this.#pending.size !== 0 && this.#pending.has(w)) return false;
    let lane = conn.lane;
    if (this.#key) {
      message ??= text
        ? { type: "text", data: typeof data === "string" ? data : decoder.decode(data) }
        : { type: "binary", data: data as Uint8Array };
      lane = laneOf(this.#key(message));
    }
    const size = typeof data === "string" ? data.length : data.length;
    if (
      size > w.maxSideBytes &&
      (typeof data !== "string" || encoder.encode(data).length > w.maxSideBytes)
    ) {
      // not silent: reported to the owner, which routes it to its error callback
      conn.host.reportError(
        new RangeError(
          `a message of ${size} bytes exceeds workers.maxMessageBytes (${w.maxSideBytes}); it was not dispatched`,
        ),
        { workerId: "main" },
      );
      return true;
    }
    if (conn.pending >= this.#maxPer) {
      w.reclaim(); // counts its handled records
      if (conn.pending >= this.#maxPer) return false;
    }
    if (!w.write(text ? 0 : K_BINARY, conn.slot, conn.gen, lane, data, encodeTrace(trace))) {
      return false;
    }
    conn.pending++;
    return true;
  }

  /** Resolves when the connection's ring may take a message again. */
  async writableFor(conn: PoolConnection): Promise<void> {
    const w = conn.writer;
    // Bounded: each turn waits for room in the ring, or for one of the connection's own records
    // to be handled; closing ends it.
    while (this.#pending.has(w) && !this.#closing) await w.writable();
    while (conn.pending >= this.#maxPer && !this.#closing && !conn.ended) await w.freed();
    await w.writable();
  }

  /** Ends a connection: a close record follows its messages; main-thread leases on it end. */
  endConnection(conn: PoolConnection, options: EndOptions): void {
    if (conn.ended) return;
    conn.ended = true;
    if (options.discard) Atomics.store(this.#table32, conn.slot * CONN_WORDS + T_STATE, CS_DISCARD);
    for (const lease of conn.leases) {
      lease.revoke(new ConnectionClosedError("the connection ended"));
    }
    conn.leases.clear();
    if (!this.#closing) this.#control(conn, K_CLOSE, options.info);
  }

  /** The end of a connection went through its worker: report it, free the slot. */
  #ended(slot: number, gen: number, dropped: number): void {
    const conn = this.#conns[slot];
    if (!conn || conn.gen !== gen) return;
    this.#conns[slot] = undefined;
    this.#free.push(slot);
    this.#recent.set(`${slot}:${gen}`, conn.host);
    if (this.#recent.size > RECENT) this.#recent.delete(this.#recent.keys().next().value!);
    try {
      conn.host.ended?.({ dropped });
    } catch (error) {
      conn.host.reportError(error, { workerId: "main" });
    }
  }

  #hostOf(slot: number, gen: number): ConnectionHost | undefined {
    const conn = this.#conns[slot];
    return conn && conn.gen === gen ? conn.host : this.#recent.get(`${slot}:${gen}`);
  }

  /** Takes the read lock of `conn`'s ring from the main thread (the event loop keeps going). */
  async pauseFor(conn: PoolConnection, signal?: AbortSignal): Promise<PauseLease> {
    if (this.#closing) throw new ConnectionClosedError("the pool is closed");
    if (conn.ended) throw new ConnectionClosedError("the connection ended");
    const w = conn.writer;
    await lockAsync(w.ctl, MAIN_TOKEN, signal);
    if (conn.ended || this.#closing) {
      unlock(w.ctl, MAIN_TOKEN);
      throw new ConnectionClosedError("the connection ended");
    }
    const lease: Lease = new Lease({
      take: () => {
        if (this.#closing) return null;
        w.publish();
        const pos = takeFor(w.ctl, w.ring, conn.slot, conn.gen);
        if (pos === -2) return null;
        if (pos < 0) return undefined;
        const d = decode(w.bytes, w.ring, w.side, pos, true);
        release(w.ctl, w.ring, pos, true);
        return d.message;
      },
      changed: (s) => {
        const seen = Atomics.load(w.ctl, C.PUB);
        const r = Atomics.waitAsync(w.ctl, C.PUB, seen, 50);
        return r.async ? within(r.value.then(() => {}), { signal: s }) : Promise.resolve();
      },
      send: (data: OutgoingData) => conn.host.send(data),
      release: () => {
        conn.leases.delete(lease);
        unlock(w.ctl, MAIN_TOKEN);
      },
    });
    conn.leases.add(lease);
    return lease;
  }

  // ---- workers ----

  #spawn(index: number): Slot {
    // Its events arrive in later turns, once `slot` below is set.
    const worker = runtime.spawnWorker(WORKER_URL, {
      message: (data) => this.#onWorkerMessage(slot, data as FromWorker),
      died: (reason, cause) => this.#onDeath(slot, reason, cause),
    });
    const writer = this.#sticky ? this.#writers[index] : this.#writers[0];
    const slot: Slot = {
      index,
      id: `w${this.#nextWorker++}`,
      token: this.#nextToken++,
      worker,
      writer,
      alive: true,
      ready: deferred<void>(),
      stopped: deferred<void>(),
      acks: [],
      ackScheduled: false,
    };
    slot.ready.promise.catch(() => {});
    this.#slots[index] = slot;
    const base = C.WORKER_BASE + index * WORKER_STRIDE;
    Atomics.store(writer.ctl, base + W_INFLIGHT, 0);
    Atomics.store(writer.ctl, base + W_ASLEEP, 0);
    const init: InitMessage = {
      t: "init",
      channel: writer.shared,
      table: this.#table,
      index,
      token: slot.token,
      workerId: slot.id,
      module: this.#moduleUrl.href,
      context: this.#contextUrl?.href,
    };
    this.#post(slot, init);
    return slot;
  }

  #post(slot: Slot, message: ToWorker): void {
    slot.worker.post(message);
  }

  #onWorkerMessage(slot: Slot, msg: FromWorker): void {
    switch (msg.t) {
      case "ready":
        slot.ready.resolve();
        break;
      case "init-error":
        slot.ready.reject(new Error(msg.error));
        break;
      case "out":
        for (const op of msg.ops) this.#op(slot, op);
        break;
      case "closing":
        this.#onDeath(slot, "closed itself");
        break;
      case "stopped":
        slot.stopped.resolve();
        break;
    }
  }

  #op(slot: Slot, op: Op): void {
    switch (op[0]) {
      case "send": {
        const [, s, gen, id, data, trace] = op;
        const conn = this.#conns[s];
        if (!conn || conn.gen !== gen || this.#closed) {
          this.#ack(slot, id, new ConnectionClosedError("the connection has ended"));
          break;
        }
        this.#answer(slot, id, () => withCarrier(trace, () => conn.host.send(data)));
        break;
      }
      case "call": {
        const [, s, gen, id, name, args, trace] = op;
        const host = this.#hostOf(s, gen);
        if (!host || this.#closed) {
          this.#ack(slot, id, new ConnectionClosedError("the connection has ended"));
          break;
        }
        this.#answer(slot, id, () => withCarrier(trace, () => host.call(name, args)));
        break;
      }
      case "error":
        this.#hostOf(op[1], op[2])?.reportError(op[3], { workerId: slot.id });
        break;
      case "ended":
        this.#ended(op[1], op[2], op[3]);
        break;
    }
  }

  #answer(slot: Slot, id: number, run: () => unknown): void {
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(run());
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then((v) => this.#ack(slot, id, null, v), (e) => this.#ack(slot, id, e));
  }

  #ack(slot: Slot, id: number, error: unknown, value?: unknown): void {
    slot.acks.push([id, error === null ? null : toWireError(error), value]);
    if (slot.ackScheduled) return;
    slot.ackScheduled = true;
    queueMicrotask(() => {
      slot.ackScheduled = false;
      const acks = slot.acks;
      slot.acks = [];
      if (!slot.alive) return;
      try {
        this.#post(slot, { t: "acks", acks });
      } catch {
        // a call's result that cannot be cloned: answer each with an error instead
        this.#post(slot, {
          t: "acks",
          acks: acks.map(([i, e, v]) => {
            try {
              structuredClone(v);
              return [i, e, v];
            } catch (x) {
              return [i, toWireError(x), undefined];
            }
          }),
        });
      }
    });
  }

  #onDeath(slot: Slot, reason: string, cause?: unknown): void {
    if (!slot.alive) return;
    slot.alive = false;
    slot.worker.terminate();
    slot.ready.reject(new Error(`worker died while loading the module: ${reason}`));
    slot.stopped.resolve();
    const w = slot.writer;
    const ctl = w.ctl;
    const base = C.WORKER_BASE + slot.index * WORKER_STRIDE;
    if (Atomics.exchange(ctl, base + W_ASLEEP, 0) === 1) Atomics.sub(ctl, C.SLEEPERS, 1);
    const inflight = Atomics.exchange(ctl, base + W_INFLIGHT, 0);
    // the read lock: a dead owner can never release it, so the main thread does
    if (Atomics.compareExchange(ctl, C.LOCK, slot.token, 0) === slot.token) {
      Atomics.notify(ctl, C.LOCK);
    }
    let message: WireMessage | undefined;
    let host: ConnectionHost | undefined;
    // a record marked done was handled: the worker died before it said so in its word
    if (inflight > 0 && Atomics.load(w.ring, ((inflight - 1) >> 2) + R.STATE) !== ST_DONE) {
      const pos = inflight - 1;
      const d = decode(w.bytes, w.ring, w.side, pos, true);
      host = this.#hostOf(d.slot, d.gen);
      message = d.message;
      release(ctl, w.ring, pos);
      if (d.kind & K_CLOSE) {
        const dropped = Atomics.load(this.#table32, d.slot * CONN_WORDS + T_DROPPED);
        this.#ended(d.slot, d.gen, dropped);
      }
    }
    const error = new WorkerDiedError(slot.id, reason, message, cause);
    if (host) host.reportError(error, { workerId: slot.id });
    else this.#reportOrphan(error);
    if (!this.#closing) this.#spawn(slot.index);
  }

  /** A worker died idle: every live connection it serves hears of it. */
  #reportOrphan(error: WorkerDiedError): void {
    const seen = new Set<ConnectionHost>();
    for (const c of this.#conns) {
      if (!c || seen.has(c.host)) continue;
      seen.add(c.host);
      if (!this.#sticky || this.#slots[this.#writers.indexOf(c.writer)]?.id === error.workerId) {
        c.host.reportError(error, { workerId: error.workerId });
      }
    }
  }

  /**
   * Stops: workers take nothing new, in-flight handlers get `timeoutMs`, then every worker is
   * terminated. Resolves with the number of queued messages that were never handled.
   */
  async close(timeoutMs: number): Promise<{ abandoned: number }> {
    if (this.#closed) return { abandoned: 0 };
    this.#closing = true;
    // Stop first: a worker woken by a lease's release below must see STOP, not take a record.
    for (const w of this.#writers) w.close();
    for (const c of this.#conns) {
      if (!c) continue;
      for (const lease of c.leases) lease.revoke(new ConnectionClosedError("the pool closed"));
      c.leases.clear();
    }
    for (const s of this.#slots) if (s.alive) this.#post(s, { t: "stop" });
    await within(Promise.all(this.#slots.map((s) => s.stopped.promise)), { timeoutMs }).catch(
      () => {},
    );
    for (const s of this.#slots) {
      s.alive = false;
      s.worker.terminate();
    }
    this.#closed = true;
    let unhandled = 0;
    for (const w of this.#writers) {
      for (const pos of w.unclaimed()) {
        const i = pos >> 2;
        if (
          Atomics.load(w.ring, i + R.STATE) === 0 && !(w.ring[i + R.KIND] & (K_OPEN | K_CLOSE))
        ) unhandled++;
      }
    }
    return { abandoned: unhandled + this.#abandoned };
  }
}
