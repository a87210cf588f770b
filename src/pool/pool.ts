/**
 * `PoolDispatcher`: runs `onMessage` in a pool of Web Workers fed through a SharedArrayBuffer ring.
 *
 * The main thread (which owns the socket) is the only writer of the ring. Workers take the read
 * lock (an Atomics mutex in shared memory), claim one record, release the lock and run the user's
 * `onMessage` on a borrowed view of the bytes. The pause button is the same lock. Sends, restarts,
 * exits and errors come back over batched `postMessage`, in order per worker.
 *
 * @module
 */

import type { Dispatcher, DispatchHost, PauseLease, TraceCarrier } from "../engine/dispatcher.ts";
import { ConnectionClosedError, type OutgoingData, type WireMessage } from "../transport/types.ts";
import { abortable, type Deferred, deferred, TimeoutError } from "../util/async.ts";
import {
  align8,
  C,
  claim,
  CONTROL_BYTES,
  decode,
  HEADER,
  K_BINARY,
  K_OVERSIZE,
  laneOf,
  lockAsync,
  MAIN_TOKEN,
  MAX_WORKERS,
  R,
  release,
  ST_DONE,
  ST_WRITTEN,
  unlock,
  W_ASLEEP,
  W_INFLIGHT,
  WORKER_STRIDE,
  writeSession,
} from "./ring.ts";

/**
 * Options of the worker pool (the engine's `workers` option).
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
   * The worker module: exports `onMessage(message, ctx)` and may export `onReadError(error, info)`.
   * Pass a `URL` resolved against your own module (`new URL("./handler.ts", import.meta.url)`);
   * a string is parsed as a URL, or else as a path relative to the current working directory.
   */
  module: string | URL;
  /** Number of workers (1..64). Default: `navigator.hardwareConcurrency`. */
  count?: number;
  /**
   * Ordering: messages with the same key are handled in arrival order, one at a time; different
   * keys in parallel. Runs on the main thread. Keys hash to 1024 lanes (a collision only costs
   * parallelism, never order).
   */
  orderingKey?: (message: WireMessage) => string | number;
  /** Ring capacity in bytes (messages over half of it take the side channel). Default 4 MiB. */
  ringBytes?: number;
  /** Largest message the side channel can grow to. Default 256 MiB. */
  maxMessageBytes?: number;
  /** Budget for the workers to load the module in `init()`. Default 30 s. */
  initTimeoutMs?: number;
  /**
   * Advanced: under a flood (over 50k msg/s for 5 ms) the ring is published to the
   * workers once per this many messages (and at the end of the burst), so workers wake and take
   * them in batches (or every eighth of the ring); otherwise every message is published at once.
   * Default 1024.
   */
  publishBatch?: number;
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
  const r = options.ringBytes;
  if (r !== undefined && !(typeof r === "number" && r >= 256 && r <= 2 ** 30)) {
    return { field: ".ringBytes", rule: "must be a number of bytes in 256..2^30", value: r };
  }
  const k = options.orderingKey;
  if (k !== undefined && typeof k !== "function") {
    return { field: ".orderingKey", rule: "must be a function (message) => key", value: k };
  }
  const m = options.maxMessageBytes;
  if (m !== undefined && !(typeof m === "number" && m > 0)) {
    return { field: ".maxMessageBytes", rule: "must be a number > 0", value: m };
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
  override name = "WorkerDiedError";
  /** The worker that died. */
  readonly workerId: string;
  /** The message it was handling, if any (a copy). */
  readonly inFlight?: WireMessage;
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
  worker: Worker;
  alive: boolean;
  ready: Deferred<void>;
  stopped: Deferred<void>;
  acks: [number, unknown][];
  ackScheduled: boolean;
}

type Op =
  | ["send", number, number, OutgoingData]
  | ["restart", number]
  | ["exit", number]
  | ["error", number, unknown];

const WORKER_URL = new URL("../../workers/pool_worker.ts", import.meta.url);
const encoder = new TextEncoder();

function resolveModule(module: string | URL): URL {
  if (module instanceof URL) return module;
  try {
    return new URL(module);
  } catch {
    const cwd = Deno.cwd().replace(/\\/g, "/");
    return new URL(module, `file://${cwd.startsWith("/") ? "" : "/"}${cwd}/`);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A {@linkcode Dispatcher} that runs `onMessage` in a pool of Web Workers fed through a
 * SharedArrayBuffer ring, with no `postMessage` per message.
 *
 * @example
 * ```ts ignore
 * import { PoolDispatcher } from "./pool.ts";
 * const pool = new PoolDispatcher({ module: new URL("./handler.ts", import.meta.url), count: 2 });
 * await pool.init();
 * pool.attach(host); // from the engine
 * pool.push({ type: "text", data: "job 1" });
 * await pool.close(1000);
 * ```
 */
export class PoolDispatcher implements Dispatcher {
  readonly #moduleUrl: URL;
  readonly #count: number;
  readonly #key?: (message: WireMessage) => string | number;
  readonly #initTimeoutMs: number;
  readonly #ctl: Int32Array;
  readonly #ringI32: Int32Array;
  readonly #ringU8: Uint8Array;
  readonly #side: SharedArrayBuffer;
  readonly #cap: number;
  #head = 0;
  #tail = 0;
  #used = 0;
  #written = 0;
  #seq = 0;
  #sideRecord = -1;
  #flushTimer?: ReturnType<typeof setTimeout>;
  #slots: Slot[] = [];
  #nextToken = MAIN_TOKEN + 1;
  #nextWorker = 1;
  #gen = 0;
  #hosts = new Map<number, DispatchHost>();
  #host?: DispatchHost;
  #closing = false;
  #closed = false;
  #abandoned = 0;
  #pushWaiter?: Deferred<void>;
  #scratch = new Uint8Array(1024);
  #initialized = false;
  #mainLease?: MainLease;
  readonly #batch: number;
  #published = 0;
  #windowStart = 0;
  #windowCount = 0;
  #flood = false;
  #unpublishedBytes = 0;
  #stats = { pushes: 0, publishes: 0, wakes: 0, floodWindows: 0 };
  #usedAtFull = 0;

  /** Creates the shared memory; workers start in {@linkcode PoolDispatcher.init}. */
  constructor(options: PoolOptions) {
    const problem = poolOptionsProblem(options);
    if (problem) {
      throw new RangeError(`workers${problem.field} ${problem.rule}, got ${String(problem.value)}`);
    }
    this.#moduleUrl = resolveModule(options.module);
    this.#count = Math.min(MAX_WORKERS, options.count ?? navigator.hardwareConcurrency ?? 1);
    this.#key = options.orderingKey;
    this.#initTimeoutMs = options.initTimeoutMs ?? 30_000;
    this.#batch = Math.max(1, options.publishBatch ?? 1024);
    const ringBytes = align8(options.ringBytes ?? 4 * 1024 * 1024);
    this.#cap = ringBytes;
    this.#ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
    const ring = new SharedArrayBuffer(ringBytes);
    this.#ringI32 = new Int32Array(ring);
    this.#ringU8 = new Uint8Array(ring);
    const maxSide = options.maxMessageBytes ?? 256 * 1024 * 1024;
    this.#side = new SharedArrayBuffer(0, { maxByteLength: maxSide });
  }

  /** Ring capacity in bytes. */
  get ringBytes(): number {
    return this.#cap;
  }

  /** Bytes of the ring currently held by unhandled or in-flight messages (≤ `ringBytes`). */
  get usedBytes(): number {
    this.#reclaim();
    return this.#used;
  }

  /** Bytes held by the side channel (grows to the largest oversize message seen). */
  get sideBytes(): number {
    return this.#side.byteLength;
  }

  /**
   * Counters of the main thread's side: messages pushed, publications (stores of `PUB`), wake-ups
   * of sleeping workers (`Atomics.notify`), 5 ms windows spent in flood mode.
   */
  get stats(): { pushes: number; publishes: number; wakes: number; floodWindows: number } {
    return { ...this.#stats };
  }

  /** The ids of the live workers. */
  get workerIds(): string[] {
    return this.#slots.filter((s) => s.alive).map((s) => s.id);
  }

  /** Spawns the workers and waits until each has loaded the module and found `onMessage`. */
  async init(): Promise<void> {
    if (this.#initialized) return;
    this.#initialized = true;
    for (let i = 0; i < this.#count; i++) this.#spawn(i);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all(this.#slots.map((s) => s.ready.promise)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new TimeoutError("loading the worker module", this.#initTimeoutMs)),
            this.#initTimeoutMs,
          );
        }),
      ]);
    } catch (e) {
      this.#closing = this.#closed = true;
      for (const s of this.#slots) s.worker.terminate();
      this.#slots = [];
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #spawn(index: number): Slot {
    const worker = new Worker(WORKER_URL, { type: "module" });
    const slot: Slot = {
      index,
      id: `w${this.#nextWorker++}`,
      token: this.#nextToken++,
      worker,
      alive: true,
      ready: deferred<void>(),
      stopped: deferred<void>(),
      acks: [],
      ackScheduled: false,
    };
    slot.ready.promise.catch(() => {});
    this.#slots[index] = slot;
    worker.onmessage = (e: MessageEvent) => this.#onWorkerMessage(slot, e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#onDeath(slot, `uncaught ${e.message}`, e.error);
    };
    worker.onmessageerror = () => {};
    const base = C.WORKER_BASE + index * WORKER_STRIDE;
    Atomics.store(this.#ctl, base + W_INFLIGHT, 0);
    Atomics.store(this.#ctl, base + W_ASLEEP, 0);
    worker.postMessage({
      t: "init",
      control: this.#ctl.buffer,
      ring: this.#ringI32.buffer,
      side: this.#side,
      index,
      token: slot.token,
      workerId: slot.id,
      module: this.#moduleUrl.href,
    });
    return slot;
  }

  #onWorkerMessage(slot: Slot, msg: { t: string; ops?: Op[]; error?: string }): void {
    switch (msg.t) {
      case "ready":
        slot.ready.resolve();
        break;
      case "init-error":
        slot.ready.reject(new Error(msg.error));
        break;
      case "out":
        for (const op of msg.ops!) this.#op(slot, op);
        break;
      case "closing":
        this.#onDeath(slot, "closed itself");
        break;
      case "stopped":
        slot.stopped.resolve();
        break;
    }
  }

  #hostFor(gen: number): DispatchHost | undefined {
    return this.#hosts.get(gen) ?? this.#host;
  }

  #op(slot: Slot, op: Op): void {
    const host = this.#hosts.get(op[1]);
    switch (op[0]) {
      case "send": {
        const id = op[2];
        if (!host || this.#closed) {
          this.#ack(slot, id, new ConnectionClosedError("the session has ended"));
          break;
        }
        let p: Promise<void>;
        try {
          p = host.send(op[3]);
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(() => this.#ack(slot, id, null), (e) => this.#ack(slot, id, e));
        break;
      }
      case "restart":
        host?.restart();
        break;
      case "exit":
        host?.exit();
        break;
      case "error":
        this.#hostFor(op[1])?.reportError(op[2], { workerId: slot.id });
        break;
    }
  }

  #ack(slot: Slot, id: number, error: unknown): void {
    const err = error === null ? null : {
      name: error instanceof Error ? error.name : "Error",
      message: errorText(error),
    };
    slot.acks.push([id, err]);
    if (slot.ackScheduled) return;
    slot.ackScheduled = true;
    queueMicrotask(() => {
      slot.ackScheduled = false;
      const acks = slot.acks;
      slot.acks = [];
      if (slot.alive) slot.worker.postMessage({ t: "acks", acks });
    });
  }

  #onDeath(slot: Slot, reason: string, cause?: unknown): void {
    if (!slot.alive) return;
    slot.alive = false;
    slot.worker.terminate();
    slot.ready.reject(new Error(`worker died while loading the module: ${reason}`));
    slot.stopped.resolve();
    const ctl = this.#ctl;
    const base = C.WORKER_BASE + slot.index * WORKER_STRIDE;
    if (Atomics.exchange(ctl, base + W_ASLEEP, 0) === 1) Atomics.sub(ctl, C.SLEEPERS, 1);
    const inflight = Atomics.exchange(ctl, base + W_INFLIGHT, 0);
    // the read lock: a dead owner can never release it, so the main thread does
    if (Atomics.compareExchange(ctl, C.LOCK, slot.token, 0) === slot.token) {
      Atomics.notify(ctl, C.LOCK);
    }
    let message: WireMessage | undefined;
    let gen = this.#gen;
    if (inflight > 0) {
      const pos = inflight - 1;
      const d = decode(this.#ringU8, this.#ringI32, this.#side, pos, true);
      message = d.message;
      gen = d.gen;
      release(ctl, this.#ringI32, pos);
    }
    this.#hostFor(gen)?.reportError(new WorkerDiedError(slot.id, reason, message, cause), {
      workerId: slot.id,
    });
    if (!this.#closing) this.#spawn(slot.index);
  }

  /** A new session begins: its messages carry its id to the workers. */
  attach(host: DispatchHost): void {
    // A main-thread pause still held from an ended session must not block this one.
    this.#mainLease?.resume();
    this.#gen = (this.#gen + 1) | 0;
    writeSession(this.#ctl, this.#gen, host.sessionId);
    this.#host = host;
    this.#hosts.set(this.#gen, host);
    this.#hosts.delete((this.#gen - 8) | 0);
    Atomics.store(this.#ctl, C.SESSION_OPEN, 1);
  }

  /** The session ended: queued messages still run, their sends reject. */
  detach(): void {
    this.#host = undefined;
    Atomics.store(this.#ctl, C.SESSION_OPEN, 0);
    this.#pushWaiter?.resolve();
  }

  #reclaim(): void {
    const ring = this.#ringI32;
    const cap = this.#cap;
    while (this.#used > 0) {
      const w = this.#tail >> 2;
      if (Atomics.load(ring, w) !== ST_DONE) break;
      const len = ring[w + R.LEN];
      if (len === -1) {
        this.#used -= cap - this.#tail;
        this.#tail = 0;
      } else {
        if (this.#tail === this.#sideRecord) this.#sideRecord = -1;
        this.#used -= len;
        this.#tail += len;
        if (this.#tail === cap) this.#tail = 0;
      }
    }
  }

  #alloc(len: number): number {
    const cap = this.#cap;
    const h = this.#head, t = this.#tail;
    if (this.#used === 0 || h > t) {
      if (len <= cap - h) {
        this.#head = h + len === cap ? 0 : h + len;
        this.#used += len;
        return h;
      }
      if (len <= t) {
        const w = h >> 2;
        this.#ringI32[w + R.LEN] = -1;
        Atomics.store(this.#ringI32, w + R.STATE, ST_WRITTEN);
        this.#used += cap - h + len;
        this.#head = len === cap ? 0 : len;
        return 0;
      }
      return -1;
    }
    if (h < t && len <= t - h) {
      this.#head = h + len;
      this.#used += len;
      return h;
    }
    return -1;
  }

  /**
   * Offers one message: copies it into the ring (or the side channel when it is over half the
   * ring). Returns false when there is no room; then await {@linkcode PoolDispatcher.writable}.
   */
  push(message: WireMessage, trace?: TraceCarrier): boolean {
    if (this.#closing) {
      this.#abandoned++;
      return true;
    }
    let bytes: Uint8Array;
    let kind: number;
    if (message.type === "binary") {
      bytes = message.data;
      kind = K_BINARY;
    } else {
      const s = message.data;
      if (s.length * 3 > this.#scratch.length) {
        bytes = encoder.encode(s);
      } else {
        const { written } = encoder.encodeInto(s, this.#scratch);
        bytes = this.#scratch.subarray(0, written);
      }
      kind = 0;
    }
    let traceBytes: Uint8Array | undefined;
    if (trace?.traceparent) {
      traceBytes = encoder.encode(
        trace.tracestate ? `${trace.traceparent}\n${trace.tracestate}` : trace.traceparent,
      );
    }
    const traceLen = traceBytes?.length ?? 0;
    let len = align8(HEADER + bytes.length + traceLen);
    this.#reclaim();
    if (len > this.#cap >> 1) {
      if (bytes.length > this.#side.maxByteLength) {
        // not silent: reported to onReadError
        this.#host?.reportError(
          new RangeError(
            `a message of ${bytes.length} bytes exceeds workers.maxMessageBytes (${this.#side.maxByteLength}); it was not dispatched`,
          ),
          { workerId: "main" },
        );
        return true;
      }
      if (this.#sideRecord >= 0) {
        if (!this.#sideFree()) return this.#full();
        this.#sideRecord = -1;
      }
      kind |= K_OVERSIZE;
      len = align8(HEADER + traceLen);
    }
    const pos = this.#alloc(len);
    if (pos < 0) return this.#full();
    const ring = this.#ringI32;
    const w = pos >> 2;
    ring[w + R.LEN] = len;
    ring[w + R.KIND] = kind;
    ring[w + R.PAYLOAD] = bytes.length;
    ring[w + R.LANE] = this.#key ? laneOf(this.#key(message)) : -1;
    ring[w + R.TRACE] = traceLen;
    ring[w + R.GEN] = this.#gen;
    ring[w + R.SEQ] = this.#seq++;
    Atomics.store(ring, w + R.STATE, ST_WRITTEN);
    let at = pos + HEADER;
    if (kind & K_OVERSIZE) {
      if (this.#side.byteLength < bytes.length) this.#side.grow(bytes.length);
      new Uint8Array(this.#side, 0, bytes.length).set(bytes);
      this.#sideRecord = pos;
    } else {
      this.#ringU8.set(bytes, at);
      at += bytes.length;
    }
    if (traceBytes) this.#ringU8.set(traceBytes, at);
    this.#written = (this.#written + 1) | 0;
    // A flood (over 250 pushes in the previous 5 ms window, i.e. > 50k msg/s): publish in batches,
    // so the workers take them without a wake-up per message; the tail of the flood goes out on a
    // timer (while a backlog drains no timer runs). Below that rate every push is published and a
    // sleeping worker woken at once (a wake-up costs the main thread ~8 µs; affordable there).
    // Reading the clock is an op call (a visible share of a push at a million a second): look at it
    // on the first push of a window and every 32nd after; a 5 ms window does not need more.
    if ((this.#windowCount & 31) === 0) {
      const now = performance.now();
      if (now - this.#windowStart >= 5) {
        this.#flood = this.#windowCount > 250 && now - this.#windowStart < 10;
        this.#windowStart = now;
        this.#windowCount = 0;
      }
    }
    this.#windowCount++;
    this.#stats.pushes++;
    if (this.#flood && this.#windowCount === 1) this.#stats.floodWindows++;
    this.#unpublishedBytes += len;
    if (
      !this.#flood || ((this.#written - this.#published) | 0) >= this.#batch ||
      this.#unpublishedBytes >= this.#cap >> 3
    ) {
      this.#publish();
    } else if (this.#flushTimer === undefined) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.#publish();
      }, 0);
    }
    this.#pushWaiter?.resolve();
    return true;
  }

  #full(): false {
    this.#usedAtFull = this.#used;
    return false;
  }

  /** Makes every written record visible to the workers, and wakes one if any sleeps. */
  #publish(): void {
    const ctl = this.#ctl;
    if (this.#published === this.#written) return;
    this.#published = this.#written;
    this.#unpublishedBytes = 0;
    this.#stats.publishes++;
    Atomics.store(ctl, C.PUB, this.#written);
    // one worker: if there is more than it can take, it wakes the next (wake chaining)
    if (Atomics.load(ctl, C.SLEEPERS) !== 0) {
      this.#stats.wakes++;
      Atomics.notify(ctl, C.PUB, 1);
    }
  }

  /** Resolves once a record was freed since the last full `push` (or the pool closed). */
  async writable(): Promise<void> {
    const ctl = this.#ctl;
    this.#publish();
    for (let i = 0; i < 1e9 && !this.#closing; i++) {
      Atomics.store(ctl, C.MAIN_WAITING, 1);
      try {
        const seen = Atomics.load(ctl, C.FREED);
        this.#reclaim();
        if (this.#used < this.#usedAtFull || this.#used === 0) return;
        if (this.#sideRecord >= 0 && this.#sideFree()) {
          this.#sideRecord = -1; // the side channel is free: a waiting oversize message fits now
          return;
        }
        const r = Atomics.waitAsync(ctl, C.FREED, seen, 100);
        if (r.async) await r.value;
      } finally {
        Atomics.store(ctl, C.MAIN_WAITING, 0);
      }
    }
  }

  #sideFree(): boolean {
    return Atomics.load(this.#ringI32, (this.#sideRecord >> 2) + R.STATE) === ST_DONE;
  }

  /** Takes the read lock from the main thread (`Atomics.waitAsync`: the event loop keeps going). */
  async pause(signal?: AbortSignal): Promise<PauseLease> {
    if (this.#closing) throw new ConnectionClosedError("the pool is closed");
    await lockAsync(this.#ctl, MAIN_TOKEN, signal);
    this.#mainLease = new MainLease({
      read: (lease, timeoutMs, signal) => this.#leaseRead(lease, timeoutMs, signal),
      send: (data) =>
        this.#host
          ? this.#host.send(data)
          : Promise.reject(new ConnectionClosedError("the session has ended")),
      resume: () => {
        this.#mainLease = undefined;
        unlock(this.#ctl, MAIN_TOKEN);
      },
    });
    return this.#mainLease;
  }

  /** The main lease's read: claims the next record in arrival order (a copy). */
  async #leaseRead(lease: MainLease, timeoutMs = 0, signal?: AbortSignal): Promise<WireMessage> {
    const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
    for (let i = 0; i < 1e9; i++) {
      if (!lease.held) throw new Error("the lease was resumed");
      signal?.throwIfAborted();
      this.#publish();
      const pos = claim(this.#ctl, this.#ringI32, false, -1);
      if (pos >= 0) {
        const d = decode(this.#ringU8, this.#ringI32, this.#side, pos, true);
        release(this.#ctl, this.#ringI32, pos, true);
        this.#reclaim();
        return d.message;
      }
      if (this.#closing || !this.#host) throw new ConnectionClosedError("the session has ended");
      const left = deadline - performance.now();
      if (left <= 0) throw new TimeoutError("PauseLease.read", timeoutMs);
      this.#pushWaiter ??= deferred<void>();
      const waiter = this.#pushWaiter;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((r) => {
        if (left !== Infinity) timer = setTimeout(r, left);
      });
      try {
        await abortable(Promise.race([waiter.promise, timeout]), signal);
      } finally {
        clearTimeout(timer);
        if (this.#pushWaiter === waiter && waiter.settled) this.#pushWaiter = undefined;
      }
    }
    throw new Error("unreachable");
  }

  /**
   * Stops: workers take nothing new, in-flight handlers get `timeoutMs`, then every worker is
   * terminated. Resolves with the number of queued messages that were never handled.
   */
  async close(timeoutMs: number): Promise<{ abandoned: number }> {
    if (this.#closed) return { abandoned: 0 };
    this.#closing = true;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const ctl = this.#ctl;
    Atomics.store(ctl, C.STOP, 1);
    this.#mainLease?.resume(); // a main-thread pause must not hold the workers past the budget
    Atomics.notify(ctl, C.PUB);
    Atomics.notify(ctl, C.LOCK);
    for (const s of this.#slots) if (s.alive) s.worker.postMessage({ t: "stop" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.#slots.map((s) => s.stopped.promise)),
      new Promise<void>((r) => timer = setTimeout(r, Math.max(0, timeoutMs))),
    ]);
    clearTimeout(timer);
    for (const s of this.#slots) {
      s.alive = false;
      s.worker.terminate();
    }
    this.#closed = true;
    this.#pushWaiter?.resolve();
    const unclaimed = (this.#written - Atomics.load(ctl, C.CLAIMED)) | 0;
    return { abandoned: unclaimed + this.#abandoned };
  }
}

/** The main thread's hold on the read lock. */
interface LeaseOps {
  read(lease: MainLease, timeoutMs?: number, signal?: AbortSignal): Promise<WireMessage>;
  send(data: OutgoingData): Promise<void>;
  resume(): void;
}

class MainLease implements PauseLease {
  #ops: LeaseOps;
  #held = true;
  constructor(ops: LeaseOps) {
    this.#ops = ops;
  }
  get held(): boolean {
    return this.#held;
  }
  read(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<WireMessage> {
    return this.#ops.read(this, options?.timeoutMs, options?.signal);
  }
  send(data: OutgoingData): Promise<void> {
    return this.#ops.send(data);
  }
  resume(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#ops.resume();
  }
}
