/**
 * The pool's worker bootstrap: loads the user's module, then runs the reader loop — take the read
 * lock, claim one record, release the lock, run `onMessage` on a borrowed view, mark the record
 * done. It sleeps with `Atomics.waitAsync`, so the worker's event loop (timers, fetch, the replies
 * to its sends) keeps running.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  C,
  claim,
  CLAIM_EMPTY,
  decode,
  LANE_BASE,
  lockAsync,
  readSession,
  release,
  type SharedRing,
  tryLock,
  unlock,
  W_ASLEEP,
  W_INFLIGHT,
  WORKER_STRIDE,
} from "../src/pool/ring.ts";
import type { PoolMessageContext, PoolWorkerModule } from "../src/pool/types.ts";
import type { PauseLease, TraceCarrier } from "../src/engine/dispatcher.ts";
import {
  ConnectionClosedError,
  type OutgoingData,
  type WireMessage,
} from "../src/transport/types.ts";
import { type Deferred, deferred, TimeoutError } from "../src/util/async.ts";

interface Init extends SharedRing {
  t: "init";
  index: number;
  token: number;
  workerId: string;
  module: string;
}

type Op =
  | ["send", number, number, OutgoingData]
  | ["restart", number]
  | ["exit", number]
  | ["error", number, unknown];

const acks = new Map<number, Deferred<void>>();
let outbox: Op[] = [];
let flushScheduled = false;
let sendSeq = 0;
let stopping = false;

function flush(): void {
  flushScheduled = false;
  const ops = outbox;
  outbox = [];
  try {
    self.postMessage({ t: "out", ops });
  } catch {
    // an uncloneable error object: send its text instead
    self.postMessage({
      t: "out",
      ops: ops.map((op) => op[0] === "error" ? ["error", op[1], cloneableError(op[2])] : op),
    });
  }
}

function cloneableError(e: unknown): Error {
  if (e instanceof Error) {
    const copy = new Error(e.message);
    copy.name = e.name;
    copy.stack = e.stack;
    return copy;
  }
  return new Error(String(e));
}

function post(op: Op): void {
  outbox.push(op);
  if (!flushScheduled) {
    flushScheduled = true;
    queueMicrotask(flush);
  }
}

// registered before the first await: the init message must not be missed
self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.t === "init") {
    start(m as Init).catch((err) => {
      self.postMessage({ t: "init-error", error: String(err?.message ?? err) });
    });
  } else if (m.t === "acks") {
    for (const [id, err] of m.acks as [number, { name: string; message: string } | null][]) {
      const d = acks.get(id);
      if (!d) continue;
      acks.delete(id);
      if (err === null) d.resolve();
      else if (err.name === "ConnectionClosedError") {
        d.reject(new ConnectionClosedError(err.message));
      } else {
        const x = new Error(err.message);
        x.name = err.name;
        d.reject(x);
      }
    }
  } else if (m.t === "stop") {
    stopping = true;
  }
};

// a handler that closes its worker: tell the pool first, so it can recover at once
const nativeClose = self.close.bind(self);
self.close = () => {
  self.postMessage({ t: "closing" });
  nativeClose();
};

async function start(init: Init): Promise<void> {
  let mod: Partial<PoolWorkerModule>;
  try {
    mod = await import(init.module);
  } catch (e) {
    throw new Error(
      `cannot load the worker module ${init.module}: ${e instanceof Error ? e.message : e}`,
    );
  }
  if (typeof mod.onMessage !== "function") {
    throw new Error(`the worker module ${init.module} does not export a function onMessage`);
  }
  self.postMessage({ t: "ready" });
  try {
    await readerLoop(init, mod as PoolWorkerModule);
  } catch (e) {
    // a bug in the loop itself: die loudly, the pool replaces this worker
    setTimeout(() => {
      throw e;
    }, 0);
    return;
  }
  self.postMessage({ t: "stopped" });
}

async function readerLoop(init: Init, mod: PoolWorkerModule): Promise<void> {
  const ctl = new Int32Array(init.control);
  const ring = new Int32Array(init.ring);
  const ringU8 = new Uint8Array(init.ring);
  const side = init.side;
  const { token, workerId } = init;
  const base = C.WORKER_BASE + init.index * WORKER_STRIDE;
  const inflightWord = base + W_INFLIGHT;
  const asleepWord = base + W_ASLEEP;
  const onMessage = mod.onMessage;
  const onReadError = typeof mod.onReadError === "function" ? mod.onReadError : undefined;

  // one macrotask turn, so `onmessage` (acks, stop) runs during a long synchronous streak
  const channel = new MessageChannel();
  let tick: (() => void) | undefined;
  channel.port1.onmessage = () => tick?.();
  const yieldTurn = () =>
    new Promise<void>((r) => {
      tick = r;
      channel.port2.postMessage(0);
    });

  const sessions = new Map<number, string>();
  const contexts = new Map<number, PoolMessageContext>();

  function sessionOf(gen: number): string {
    let id = sessions.get(gen);
    if (id === undefined) {
      id = readSession(ctl, gen);
      sessions.set(gen, id);
      if (sessions.size > 16) sessions.delete(sessions.keys().next().value!);
    }
    return id;
  }

  function send(gen: number, data: OutgoingData): Promise<void> {
    if (typeof data !== "string") {
      if (data.buffer instanceof SharedArrayBuffer) data = data.slice();
    }
    const id = ++sendSeq;
    const d = deferred<void>();
    acks.set(id, d);
    post(["send", gen, id, data]);
    d.promise.catch(() => {});
    return d.promise;
  }

  async function sleepOnPub(seen: number, maxMs: number): Promise<void> {
    Atomics.add(ctl, C.SLEEPERS, 1);
    Atomics.store(ctl, asleepWord, 1);
    try {
      if (Atomics.load(ctl, C.PUB) !== seen || Atomics.load(ctl, C.STOP) || stopping) return;
      const w = Atomics.waitAsync(ctl, C.PUB, seen, maxMs);
      if (w.async) await w.value;
    } finally {
      if (Atomics.exchange(ctl, asleepWord, 0) === 1) Atomics.sub(ctl, C.SLEEPERS, 1);
    }
  }

  // Leases taken while a handler runs. One still held when its handler settles is released
  // then: the lock is this worker's token, so keeping it would stall every worker, this one too.
  const leases: WorkerLease[] = [];

  class WorkerLease implements PauseLease {
    #held = true;
    readonly #gen: number;
    constructor(gen: number) {
      this.#gen = gen;
    }
    get held(): boolean {
      return this.#held;
    }
    async read(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<WireMessage> {
      const timeoutMs = options?.timeoutMs ?? 0;
      const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
      for (let i = 0; i < 1e9; i++) {
        if (!this.#held) throw new Error("the lease was resumed");
        options?.signal?.throwIfAborted();
        const pos = claim(ctl, ring, false, -1);
        if (pos >= 0) {
          const d = decode(ringU8, ring, side, pos, true);
          release(ctl, ring, pos, true);
          return d.message;
        }
        if (Atomics.load(ctl, C.STOP) || !Atomics.load(ctl, C.SESSION_OPEN)) {
          throw new ConnectionClosedError("the session has ended");
        }
        const left = deadline - performance.now();
        if (left <= 0) throw new TimeoutError("PauseLease.read", timeoutMs);
        await sleepOnPub(Atomics.load(ctl, C.CLAIMED), Math.min(left, 20));
      }
      throw new Error("unreachable");
    }
    send(data: OutgoingData): Promise<void> {
      return send(this.#gen, data);
    }
    resume(): void {
      if (!this.#held) return;
      this.#held = false;
      unlock(ctl, token);
    }
  }

  function contextFor(gen: number, trace?: TraceCarrier): PoolMessageContext {
    let ctx = trace ? undefined : contexts.get(gen);
    if (ctx) return ctx;
    ctx = {
      sessionId: sessionOf(gen),
      workerId,
      trace,
      send: (data: OutgoingData) => send(gen, data),
      restart: () => post(["restart", gen]),
      exit: () => post(["exit", gen]),
      pause: async (signal?: AbortSignal) => {
        await lockAsync(ctl, token, signal);
        const lease = new WorkerLease(gen);
        leases.push(lease);
        return lease;
      },
    };
    if (!trace) {
      contexts.set(gen, ctx);
      if (contexts.size > 16) contexts.delete(contexts.keys().next().value!);
    }
    return ctx;
  }

  function fail(error: unknown, gen: number): void {
    try {
      onReadError?.(error, { workerId, sessionId: sessionOf(gen) });
    } catch {
      // onReadError itself threw: the original error is still reported below
    }
    post(["error", gen, error]);
  }

  let streak = 0;
  for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
    if (stopping || Atomics.load(ctl, C.STOP)) break;
    if (!tryLock(ctl, token)) await lockAsync(ctl, token);
    if (stopping || Atomics.load(ctl, C.STOP)) {
      unlock(ctl, token);
      break;
    }
    const pos = claim(ctl, ring, true, inflightWord);
    const seen = Atomics.load(ctl, C.CLAIMED);
    unlock(ctl, token);
    if (pos === CLAIM_EMPTY) {
      streak = 0;
      await sleepOnPub(seen, 200);
      continue;
    }
    if (pos < CLAIM_EMPTY) {
      // the next message's key is in flight elsewhere: wait for its lane, then retry
      const lane = LANE_BASE + (-2 - pos);
      Atomics.add(ctl, C.LANE_WAITERS, 1);
      try {
        const v = Atomics.load(ctl, lane);
        if (v !== 0) {
          const w = Atomics.waitAsync(ctl, lane, v, 20);
          if (w.async) await w.value;
        }
      } finally {
        Atomics.sub(ctl, C.LANE_WAITERS, 1);
      }
      continue;
    }
    const d = decode(ringU8, ring, side, pos, false);
    const started = performance.now();
    try {
      const r = onMessage(d.message, contextFor(d.gen, d.trace));
      if (r && typeof (r as Promise<void>).then === "function") {
        streak = 0;
        await (r as Promise<void>).then(undefined, (e) => fail(e, d.gen));
      }
    } catch (e) {
      fail(e, d.gen);
    }
    for (const lease of leases.splice(0)) lease.resume();
    Atomics.store(ctl, inflightWord, 0);
    release(ctl, ring, pos);
    // wake chaining: handlers are slow (≥ 50 µs) and more is published than this worker has
    // taken: wake a sleeping one. (For fast handlers one worker keeps up, and waking another
    // would only take CPU from the main thread.)
    if (
      performance.now() - started >= 0.05 && Atomics.load(ctl, C.SLEEPERS) !== 0 &&
      Atomics.load(ctl, C.CLAIMED) !== Atomics.load(ctl, C.PUB)
    ) {
      Atomics.notify(ctl, C.PUB, 1);
    }
    if (++streak >= 256) {
      streak = 0;
      await yieldTurn();
    }
  }
  channel.port1.close();
}
