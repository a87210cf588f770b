/**
 * The pool's worker bootstrap: loads the handler module, then runs the reader loop — take the
 * read lock, claim one record, release the lock, run the handler on a borrowed view, mark the
 * record done. It sleeps with `Atomics.waitAsync`, so the worker's event loop (timers, fetch, the
 * answers to its sends) keeps running.
 *
 * @module
 */

import { runtime } from "../platform/runtime.ts";
import { ConnectionClosedError, type OutgoingData } from "../transport/types.ts";
import { type Deferred, deferred, within } from "../util/async.ts";
import { Lease } from "./lease.ts";
import {
  ATTR,
  carrierOf,
  processMessage,
  Telemetry,
  type TraceCarrier,
} from "../telemetry/telemetry.ts";
import {
  C,
  claim,
  CLAIM_EMPTY,
  CONN_WORDS,
  decode,
  K_CLOSE,
  K_OPEN,
  LANE_BASE,
  lockAsync,
  readConnectionId,
  release,
  T_DROPPED,
  takeFor,
  tryLock,
  unlock,
  W_ASLEEP,
  W_INFLIGHT,
  wakeMain,
  WORKER_STRIDE,
} from "./ring.ts";
import { type HandlerContext, type Handlers, LeaseResumedError, type PauseLease } from "./types.ts";
import {
  fromWireError,
  type FromWorker,
  type InitMessage,
  type Op,
  type ToWorker,
  type WireError,
} from "./wire.ts";

const acks = new Map<number, Deferred<unknown>>();
let outbox: Op[] = [];
let flushScheduled = false;
let callSeq = 0;
let stopping = false;

const parent = runtime.parentPort();

function postToMain(message: FromWorker): void {
  parent.post(message);
}

function flush(): void {
  flushScheduled = false;
  const ops = outbox;
  outbox = [];
  try {
    postToMain({ t: "out", ops });
  } catch {
    // an uncloneable error or value: send its text instead
    postToMain({ t: "out", ops: ops.map(cloneable) });
  }
}

function cloneable(op: Op): Op {
  try {
    structuredClone(op);
    return op;
  } catch {
    if (op[0] === "error") return ["error", op[1], op[2], cloneableError(op[3])];
    if (op[0] === "call") {
      // the call cannot travel: answer it here, as the main thread would have
      acks.get(op[3])?.reject(new DataCloneError(`the arguments of ${op[4]}() cannot be cloned`));
      acks.delete(op[3]);
      return ["error", op[1], op[2], new Error(`${op[4]}() was called with uncloneable arguments`)];
    }
    return op;
  }
}

class DataCloneError extends Error {
  override name = "DataCloneError";
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

/** Error classes restored by name: the transport's, and those the context module exports. */
let errorClasses: Record<string, abstract new (...args: never[]) => Error> = {
  ConnectionClosedError,
};

function restoreError(e: WireError): Error {
  return fromWireError(e, errorClasses);
}

/** Shared-memory views handed out to handlers must not outlive the record: copy them. */
function owned<T>(value: T): T {
  if (ArrayBuffer.isView(value) && value.buffer instanceof SharedArrayBuffer) {
    return (value as unknown as Uint8Array).slice() as T;
  }
  return value;
}

// registered before the first await: the init message must not be missed
parent.listen((data) => {
  const m = data as ToWorker;
  if (m.t === "init") {
    start(m).catch((err) => {
      postToMain({ t: "init-error", error: String(err?.message ?? err) });
    });
  } else if (m.t === "acks") {
    for (const [id, err, value] of m.acks) {
      const d = acks.get(id);
      if (!d) continue;
      acks.delete(id);
      if (err === null) d.resolve(value);
      else d.reject(restoreError(err));
    }
  } else if (m.t === "stop") {
    stopping = true;
  }
});

// a handler that closes its worker: tell the pool first, so it can recover at once
parent.onSelfClose(() => postToMain({ t: "closing" }));

async function start(init: InitMessage): Promise<void> {
  let mod: Handlers;
  let shape: ((base: HandlerContext) => HandlerContext) | undefined;
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
  if (init.context) {
    const shaping = await import(init.context);
    shape = shaping.context;
    errorClasses = { ...errorClasses, ...(shaping.errors ?? {}) };
  }
  postToMain({ t: "ready" });
  try {
    await readerLoop(init, mod, shape);
  } catch (e) {
    // a bug in the loop itself: die loudly, the pool replaces this worker
    setTimeout(() => {
      throw e;
    }, 0);
    return;
  }
  postToMain({ t: "stopped" });
}

interface Cached {
  gen: number;
  base: { -readonly [K in keyof HandlerContext]: HandlerContext[K] };
  ctx: HandlerContext;
}

async function readerLoop(
  init: InitMessage,
  mod: Handlers,
  shape: ((base: HandlerContext) => HandlerContext) | undefined,
): Promise<void> {
  const ctl = new Int32Array(init.channel.control);
  const ring = new Int32Array(init.channel.ring);
  const ringU8 = new Uint8Array(init.channel.ring);
  const side = init.channel.side;
  const table = new Int32Array(init.table); // length-tracking: follows the table's growth
  const { token, workerId } = init;
  const base = C.WORKER_BASE + init.index * WORKER_STRIDE;
  const inflightWord = base + W_INFLIGHT;
  const asleepWord = base + W_ASLEEP;
  const onMessage = mod.onMessage!;
  const onConnect = typeof mod.onConnect === "function" ? mod.onConnect : undefined;
  const onDisconnect = typeof mod.onDisconnect === "function" ? mod.onDisconnect : undefined;
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

  const contexts = new Map<number, Cached>();
  // The worker's own providers (Deno's with OTEL_DENO=true, or what the module registered).
  const telemetry = new Telemetry("wse.worker");
  // Leases taken while a handler runs. One still held when its handler settles is released
  // then: the lock is this worker's token, so keeping it would stall every reader of the ring.
  const leases: Lease[] = [];

  function stopped(): boolean {
    return stopping || ctl[C.STOP] !== 0; // checked per message: plain (see ring.ts)
  }

  function call(
    slot: number,
    gen: number,
    op: string,
    args: unknown[],
    trace: TraceCarrier | undefined,
  ): Promise<unknown> {
    const id = ++callSeq;
    const d = deferred<unknown>();
    acks.set(id, d);
    post(
      trace ? ["call", slot, gen, id, op, args.map(owned), trace] : [
        "call",
        slot,
        gen,
        id,
        op,
        args.map(owned),
      ],
    );
    d.promise.catch(() => {});
    return d.promise;
  }

  function send(
    slot: number,
    gen: number,
    data: OutgoingData,
    trace?: TraceCarrier,
  ): Promise<void> {
    const id = ++callSeq;
    const d = deferred<unknown>();
    acks.set(id, d);
    post(
      trace ? ["send", slot, gen, id, owned(data), trace] : ["send", slot, gen, id, owned(data)],
    );
    d.promise.catch(() => {});
    return d.promise as Promise<void>;
  }

  async function sleepOnPub(seen: number, maxMs: number): Promise<void> {
    Atomics.add(ctl, C.SLEEPERS, 1);
    Atomics.store(ctl, asleepWord, 1);
    try {
      if (Atomics.load(ctl, C.PUB) !== seen || stopped()) return;
      const w = Atomics.waitAsync(ctl, C.PUB, seen, maxMs);
      if (w.async) await w.value;
    } finally {
      if (Atomics.exchange(ctl, asleepWord, 0) === 1) Atomics.sub(ctl, C.SLEEPERS, 1);
    }
  }

  async function pause(slot: number, gen: number, signal?: AbortSignal): Promise<PauseLease> {
    await lockAsync(ctl, token, signal);
    const lease = new Lease({
      take: () => {
        if (stopped()) return null;
        const pos = takeFor(ctl, ring, slot, gen);
        if (pos === -2) return null;
        if (pos < 0) return undefined;
        const d = decode(ringU8, ring, side, pos, true);
        release(ctl, ring, pos, true);
        return d.message;
      },
      changed: (s) => {
        const r = Atomics.waitAsync(ctl, C.PUB, Atomics.load(ctl, C.PUB), 20);
        return r.async ? within(r.value.then(() => {}), { signal: s }) : Promise.resolve();
      },
      send: (data) => send(slot, gen, data),
      release: () => unlock(ctl, token),
    });
    leases.push(lease);
    return lease;
  }

  function contextFor(slot: number, gen: number): Cached {
    let c = contexts.get(slot);
    if (c && c.gen === gen) return c;
    const b: Cached["base"] = {
      connectionId: readConnectionId(table, slot),
      workerId,
      trace: undefined,
      // the trace of the message being handled goes along: the main thread's send joins it
      send: (data) => send(slot, gen, data, b.trace),
      pause: (signal) => pause(slot, gen, signal),
      call: (op, ...args) => call(slot, gen, op, args, b.trace),
    };
    c = { gen, base: b, ctx: shape ? shape(b) : b };
    contexts.set(slot, c);
    return c;
  }

  function fail(error: unknown, slot: number, gen: number, ctx: HandlerContext): void {
    try {
      onReadError?.(error, ctx);
    } catch {
      // onReadError itself threw: the original error is still reported below
    }
    post(["error", slot, gen, error]);
  }

  let streak = 0;
  let slow = false;
  let turnStart = performance.now();
  for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
    if (stopped()) break;
    if (!tryLock(ctl, token)) await lockAsync(ctl, token);
    if (stopped()) {
      unlock(ctl, token);
      break;
    }
    const pos = claim(ctl, ring, table, inflightWord);
    const seen = ctl[C.CLAIMED]; // under the lock
    unlock(ctl, token);
    if (pos === CLAIM_EMPTY) {
      streak = 0;
      wakeMain(ctl); // it may wait for room this reader has just made
      await sleepOnPub(seen, 200);
      continue;
    }
    if (pos < CLAIM_EMPTY) {
      // the next record's lane is in flight elsewhere: wait for it, then retry
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
    const c = contextFor(d.slot, d.gen);
    // Reading the clock is an op call: time one handler in 16 while they are slow, one in 64
    // while they are fast, and keep the verdict between.
    const timed: boolean = (i & (slow ? 15 : 63)) === 0;
    const started: number = timed ? performance.now() : 0;
    try {
      let r: unknown;
      if (d.kind & K_OPEN) r = onConnect?.(c.ctx, d.info);
      else if (d.kind & K_CLOSE) r = onDisconnect?.(d.info, c.ctx);
      else if (d.trace) {
        r = processMessage(telemetry, d.trace, {
          [ATTR.CLIENT_ID]: c.base.connectionId,
          [ATTR.WORKER_ID]: workerId,
        }, (span) => {
          c.base.trace = carrierOf(span) ?? d.trace;
          return onMessage(d.message!, c.ctx);
        });
      } else {
        c.base.trace = undefined;
        r = onMessage(d.message!, c.ctx);
      }
      if (r && typeof (r as Promise<void>).then === "function") {
        streak = 0;
        await (r as Promise<void>).then(
          undefined,
          (e) => fail(e, d.slot, d.gen, c.ctx),
        );
      }
    } catch (e) {
      fail(e, d.slot, d.gen, c.ctx);
    }
    if (leases.length > 0) {
      for (const lease of leases.splice(0)) lease.revoke(new LeaseResumedError());
    }
    if (d.kind & K_CLOSE) {
      contexts.delete(d.slot);
      post(["ended", d.slot, d.gen, Atomics.load(table, d.slot * CONN_WORDS + T_DROPPED)]);
    }
    // Done first, then not in flight: once no reader names a passed record the main thread may
    // write a new one there, and a late `ST_DONE` would hide it.
    release(ctl, ring, pos);
    Atomics.store(ctl, inflightWord, 0);
    // wake chaining: handlers are slow (≥ 50 µs) and more is published than this worker has
    // taken: wake a sleeping one. (For fast handlers one worker keeps up, and waking another
    // would only take CPU from the main thread.)
    let turnDue = false;
    if (timed) {
      const now = performance.now();
      slow = now - started >= 0.05;
      turnDue = now - turnStart >= 2;
    }
    if (
      slow && Atomics.load(ctl, C.SLEEPERS) !== 0 &&
      Atomics.load(ctl, C.CLAIMED) !== Atomics.load(ctl, C.PUB)
    ) {
      Atomics.notify(ctl, C.PUB, 1);
    }
    // a turn for `onmessage` every 2 ms of handlers (or 1024 of them) in a synchronous streak
    if (++streak >= 1024 || turnDue) {
      streak = 0;
      await yieldTurn();
      turnStart = performance.now();
    }
  }
  channel.port1.close();
}
