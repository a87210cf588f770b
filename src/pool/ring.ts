/**
 * The shared-memory layout of the worker pool, and the operations both sides run on it: the read
 * lock (an Atomics mutex whose value is its owner's token), claiming the next record, and decoding
 * a record into a {@linkcode WireMessage}.
 *
 * Two SharedArrayBuffers are shared by the main thread and every worker:
 * - the control block (`Int32Array`): lock, counters, per-worker words, ordering lanes, sessions;
 * - the ring (bytes): variable-length records, 8-byte aligned, written only by the main thread.
 * A third, growable SharedArrayBuffer (the side channel) carries one oversize message at a time.
 *
 * See `docs/pool.md` for the diagram and the protocol.
 *
 * @module
 */

import type { WireMessage } from "../transport/types.ts";
import type { TraceCarrier } from "../engine/dispatcher.ts";

/**
 * Word indices of the control block (an `Int32Array`).
 *
 * @example
 * ```ts
 * import { C } from "./ring.ts";
 * console.log(C);
 * ```
 */
export const C = {
  /** The read lock / pause button: 0 when free, else the owner's token (main = 1). */
  LOCK: 0,
  /** How many threads wait for the lock (release notifies only when > 0). */
  LOCK_WAITERS: 1,
  /** Messages claimed by readers (int32, wraps; written under the lock). */
  CLAIMED: 2,
  /** Byte offset of the next record to claim (written under the lock). */
  RPOS: 3,
  /** 1 once the pool is closing: workers take nothing new. */
  STOP: 4,
  /** 1 while a session is attached (lease reads reject on an empty ring once it is 0). */
  SESSION_OPEN: 5,
  /** Threads waiting for an ordering lane to free up. */
  LANE_WAITERS: 6,
  /** Messages published by the main thread (int32, wraps). Own cache line: written per batch. */
  PUB: 16,
  /** Workers asleep waiting for `PUB` to move. Own cache line. */
  SLEEPERS: 32,
  /** Bumped when a record is marked done while the main thread waits for room. */
  FREED: 48,
  /** 1 while the main thread waits for room (on `FREED`). */
  MAIN_WAITING: 49,
  /** First per-worker word (stride {@linkcode WORKER_STRIDE}: one cache line each). */
  WORKER_BASE: 64,
} as const;

/**
 * Words per worker: in-flight record offset + 1, asleep flag, spare (a cache line).
 *
 * @example
 * ```ts
 * import { WORKER_STRIDE } from "./ring.ts";
 * console.log(WORKER_STRIDE);
 * ```
 */
export const WORKER_STRIDE = 16;
/**
 * Most workers a pool may have.
 *
 * @example
 * ```ts
 * import { MAX_WORKERS } from "./ring.ts";
 * console.log(MAX_WORKERS);
 * ```
 */
export const MAX_WORKERS = 64;
/**
 * Per-worker word: offset + 1 of the record it is handling (0 = none).
 *
 * @example
 * ```ts
 * import { W_INFLIGHT } from "./ring.ts";
 * console.log(W_INFLIGHT);
 * ```
 */
export const W_INFLIGHT = 0;
/**
 * Per-worker word: 1 while asleep on `PUB`.
 *
 * @example
 * ```ts
 * import { W_ASLEEP } from "./ring.ts";
 * console.log(W_ASLEEP);
 * ```
 */
export const W_ASLEEP = 1;
/**
 * Ordering lanes: a key hashes to one; a busy lane holds back every later message on it.
 *
 * @example
 * ```ts
 * import { LANES } from "./ring.ts";
 * console.log(LANES);
 * ```
 */
export const LANES = 1024;
/**
 * First lane word.
 *
 * @example
 * ```ts
 * import { LANE_BASE } from "./ring.ts";
 * console.log(LANE_BASE);
 * ```
 */
export const LANE_BASE = C.WORKER_BASE + MAX_WORKERS * WORKER_STRIDE;
/**
 * Session table: entries of {@linkcode SESSION_WORDS} words: generation, byte length, UTF-8 id.
 *
 * @example
 * ```ts
 * import { SESSION_BASE } from "./ring.ts";
 * console.log(SESSION_BASE);
 * ```
 */
export const SESSION_BASE = LANE_BASE + LANES;
/**
 * Session entries (a message's session must be among the last this many).
 *
 * @example
 * ```ts
 * import { SESSION_ENTRIES } from "./ring.ts";
 * console.log(SESSION_ENTRIES);
 * ```
 */
export const SESSION_ENTRIES = 8;
/**
 * Words per session entry.
 *
 * @example
 * ```ts
 * import { SESSION_WORDS } from "./ring.ts";
 * console.log(SESSION_WORDS);
 * ```
 */
export const SESSION_WORDS = 64;
/**
 * Size of the control block in bytes.
 *
 * @example
 * ```ts
 * import { CONTROL_BYTES } from "./ring.ts";
 * console.log(CONTROL_BYTES);
 * ```
 */
export const CONTROL_BYTES = (SESSION_BASE + SESSION_ENTRIES * SESSION_WORDS) * 4;

/**
 * Record header words (the header is {@linkcode HEADER} bytes).
 *
 * @example
 * ```ts
 * import { R } from "./ring.ts";
 * console.log(R);
 * ```
 */
export const R = {
  /** 0 written, 1 claimed, 2 done. */
  STATE: 0,
  /** Total record bytes (header, payload, trace, padding), or -1 for a wrap marker. */
  LEN: 1,
  /** Bit 0: binary; bit 1: oversize (payload in the side channel). */
  KIND: 2,
  /** Payload bytes. */
  PAYLOAD: 3,
  /** Ordering lane, or -1. */
  LANE: 4,
  /** Trace bytes after the payload (`traceparent` + "\n" + `tracestate`). */
  TRACE: 5,
  /** Session generation. */
  GEN: 6,
  /** Sequence number (diagnostics). */
  SEQ: 7,
} as const;
/**
 * Record header size in bytes.
 *
 * @example
 * ```ts
 * import { HEADER } from "./ring.ts";
 * console.log(HEADER);
 * ```
 */
export const HEADER = 32;
/**
 * Record state: written by the main thread, not yet claimed.
 *
 * @example
 * ```ts
 * import { ST_WRITTEN } from "./ring.ts";
 * console.log(ST_WRITTEN);
 * ```
 */
export const ST_WRITTEN = 0;
/**
 * Record state: claimed by a reader.
 *
 * @example
 * ```ts
 * import { ST_CLAIMED } from "./ring.ts";
 * console.log(ST_CLAIMED);
 * ```
 */
export const ST_CLAIMED = 1;
/**
 * Record state: done, its bytes may be reused.
 *
 * @example
 * ```ts
 * import { ST_DONE } from "./ring.ts";
 * console.log(ST_DONE);
 * ```
 */
export const ST_DONE = 2;
/**
 * Kind bit: binary message.
 *
 * @example
 * ```ts
 * import { K_BINARY } from "./ring.ts";
 * console.log(K_BINARY);
 * ```
 */
export const K_BINARY = 1;
/**
 * Kind bit: payload lives in the side channel.
 *
 * @example
 * ```ts
 * import { K_OVERSIZE } from "./ring.ts";
 * console.log(K_OVERSIZE);
 * ```
 */
export const K_OVERSIZE = 2;
/**
 * Lock token of the main thread.
 *
 * @example
 * ```ts
 * import { MAIN_TOKEN } from "./ring.ts";
 * console.log(MAIN_TOKEN);
 * ```
 */
export const MAIN_TOKEN = 1;

/**
 * The shared buffers, as posted to every worker.
 *
 * @example
 * ```ts
 * import { type SharedRing } from "./ring.ts";
 * declare const x: SharedRing;
 * ```
 */
export interface SharedRing {
  /** The control block. */
  control: SharedArrayBuffer;
  /** The ring of records. */
  ring: SharedArrayBuffer;
  /** The growable side channel for messages bigger than half the ring. */
  side: SharedArrayBuffer;
}

/**
 * Rounds up to a multiple of 8.
 *
 * @example
 * ```ts
 * import { align8 } from "./ring.ts";
 * console.log(align8(13)); // 16
 * ```
 */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Hashes an ordering key to a lane.
 *
 * @example
 * ```ts
 * import { laneOf } from "./ring.ts";
 * console.log(laneOf("user-42") === laneOf("user-42")); // true
 * ```
 */
export function laneOf(key: string | number): number {
  if (typeof key === "number") {
    const k = Number.isInteger(key) ? key : Math.floor(key * 2654435761);
    return ((k % LANES) + LANES) % LANES;
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % LANES;
}

/**
 * Tries to take the lock without waiting.
 *
 * @example
 * ```ts
 * import { tryLock, CONTROL_BYTES, MAIN_TOKEN, unlock, writeSession, readSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * if (tryLock(ctl, MAIN_TOKEN)) unlock(ctl, MAIN_TOKEN);
 * ```
 */
export function tryLock(ctl: Int32Array, token: number): boolean {
  return Atomics.compareExchange(ctl, C.LOCK, 0, token) === 0;
}

/**
 * Takes the lock, waiting with `Atomics.waitAsync` (never blocking the event loop).
 * Rejects with the signal's reason if it aborts first.
 *
 * @example
 * ```ts
 * import { lockAsync, CONTROL_BYTES, MAIN_TOKEN, unlock, tryLock, writeSession, readSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * await lockAsync(ctl, MAIN_TOKEN);
 * unlock(ctl, MAIN_TOKEN);
 * ```
 */
export async function lockAsync(
  ctl: Int32Array,
  token: number,
  signal?: AbortSignal,
): Promise<void> {
  for (let i = 0; i < 1e9; i++) {
    if (tryLock(ctl, token)) return;
    signal?.throwIfAborted();
    Atomics.add(ctl, C.LOCK_WAITERS, 1);
    try {
      const v = Atomics.load(ctl, C.LOCK);
      if (v === 0) continue;
      // a bounded wait, so a lock freed without a notify (dead owner) is noticed anyway
      const w = Atomics.waitAsync(ctl, C.LOCK, v, 50);
      if (w.async) await w.value;
    } finally {
      Atomics.sub(ctl, C.LOCK_WAITERS, 1);
    }
  }
}

/**
 * Releases the lock held by `token` (no-op if someone else holds it).
 *
 * @example
 * ```ts
 * import { unlock, CONTROL_BYTES, MAIN_TOKEN, tryLock, writeSession, readSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * if (tryLock(ctl, MAIN_TOKEN)) unlock(ctl, MAIN_TOKEN);
 * ```
 */
export function unlock(ctl: Int32Array, token: number): void {
  if (Atomics.compareExchange(ctl, C.LOCK, token, 0) !== token) return;
  if (Atomics.load(ctl, C.LOCK_WAITERS) > 0) Atomics.notify(ctl, C.LOCK, 1);
}

/**
 * What {@linkcode claim} found.
 *
 * @example
 * ```ts
 * import { CLAIM_EMPTY } from "./ring.ts";
 * console.log(CLAIM_EMPTY);
 * ```
 */
export const CLAIM_EMPTY = -1;

/**
 * Under the lock: claims the next published record and returns its offset, or
 * {@linkcode CLAIM_EMPTY}, or `-2 - lane` when the next record's ordering lane is busy (then
 * nothing is claimed). `inflightWord` (per-worker) is set before the claim becomes visible, so a
 * reader that dies mid-claim leaves a trace the main thread can recover from.
 *
 * @example
 * ```ts
 * import { claim, CONTROL_BYTES, MAIN_TOKEN, unlock, tryLock, writeSession, readSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * const ring = new Int32Array(new SharedArrayBuffer(1024));
 * console.log(claim(ctl, ring, true, -1) === CLAIM_EMPTY); // true: nothing published
 * ```
 */
export function claim(
  ctl: Int32Array,
  ring: Int32Array,
  respectLanes: boolean,
  inflightWord: number,
): number {
  const claimed = Atomics.load(ctl, C.CLAIMED);
  if (claimed === Atomics.load(ctl, C.PUB)) return CLAIM_EMPTY;
  let pos = Atomics.load(ctl, C.RPOS);
  let w = pos >> 2;
  if (ring[w + R.LEN] === -1) {
    Atomics.store(ring, w + R.STATE, ST_DONE);
    pos = 0;
    w = 0;
    Atomics.store(ctl, C.RPOS, 0);
  }
  const lane = ring[w + R.LANE];
  if (lane >= 0) {
    if (respectLanes) {
      if (Atomics.compareExchange(ctl, LANE_BASE + lane, 0, 1) !== 0) return -2 - lane;
    } else {
      Atomics.add(ctl, LANE_BASE + lane, 2); // a lease read: keep the lane's count balanced
    }
  }
  if (inflightWord >= 0) Atomics.store(ctl, inflightWord, pos + 1);
  Atomics.store(ring, w + R.STATE, ST_CLAIMED);
  const next = pos + ring[w + R.LEN];
  Atomics.store(ctl, C.RPOS, next >= ring.length * 4 ? 0 : next);
  Atomics.store(ctl, C.CLAIMED, (claimed + 1) | 0);
  return pos;
}

/**
 * Marks a claimed record done: frees its lane and its bytes, and wakes whoever waits for either.
 *
 * @example
 * ```ts
 * import { release } from "./ring.ts";
 * declare const ctl: Int32Array, ring: Int32Array, pos: number;
 * release(ctl, ring, pos); // after handling the record claimed at pos
 * ```
 */
export function release(ctl: Int32Array, ring: Int32Array, pos: number, leaseRead = false): void {
  const w = pos >> 2;
  const lane = ring[w + R.LANE];
  if (lane >= 0) {
    if (leaseRead) Atomics.sub(ctl, LANE_BASE + lane, 2);
    else Atomics.sub(ctl, LANE_BASE + lane, 1);
    if (Atomics.load(ctl, C.LANE_WAITERS) > 0) Atomics.notify(ctl, LANE_BASE + lane);
  }
  Atomics.store(ring, w + R.STATE, ST_DONE);
  if (Atomics.load(ctl, C.MAIN_WAITING) !== 0) {
    Atomics.add(ctl, C.FREED, 1);
    Atomics.notify(ctl, C.FREED);
  }
}

const decoder = new TextDecoder();

/**
 * Reads a session id from the session table, or "" if its entry was reused.
 *
 * @example
 * ```ts
 * import { readSession, CONTROL_BYTES, MAIN_TOKEN, unlock, tryLock, writeSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * writeSession(ctl, 1, "abc");
 * console.log(readSession(ctl, 1)); // "abc"
 * ```
 */
export function readSession(ctl: Int32Array, gen: number): string {
  const base = SESSION_BASE + (gen % SESSION_ENTRIES) * SESSION_WORDS;
  if (Atomics.load(ctl, base) !== gen) return "";
  const len = ctl[base + 1];
  const bytes = new Uint8Array(len);
  bytes.set(new Uint8Array(ctl.buffer, (base + 2) * 4, len));
  return decoder.decode(bytes);
}

/**
 * Writes a session id into the session table (main thread, before any message of `gen`).
 *
 * @example
 * ```ts
 * import { writeSession, CONTROL_BYTES, MAIN_TOKEN, unlock, tryLock, readSession, CLAIM_EMPTY } from "./ring.ts";
 * const ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
 * writeSession(ctl, 1, "abc");
 * console.log(readSession(ctl, 1)); // "abc"
 * ```
 */
export function writeSession(ctl: Int32Array, gen: number, id: string): void {
  const base = SESSION_BASE + (gen % SESSION_ENTRIES) * SESSION_WORDS;
  const max = (SESSION_WORDS - 2) * 4;
  const dst = new Uint8Array(ctl.buffer, (base + 2) * 4, max);
  const { written } = new TextEncoder().encodeInto(id.slice(0, max), dst);
  ctl[base + 1] = written;
  Atomics.store(ctl, base, gen);
}

/**
 * A decoded record.
 *
 * @example
 * ```ts
 * import { type Decoded } from "./ring.ts";
 * declare const x: Decoded;
 * ```
 */
export interface Decoded {
  /** The message: binary data is a view into shared memory unless `copy` was asked for. */
  message: WireMessage;
  /** Session generation. */
  gen: number;
  /** Trace context, when the record carried one. */
  trace?: TraceCarrier;
}

/**
 * Decodes the record at `pos`. With `copy` false, binary data is a view valid until the record is
 * released; text is always a fresh string.
 *
 * @example
 * ```ts
 * import { decode } from "./ring.ts";
 * declare const u8: Uint8Array, i32: Int32Array, side: SharedArrayBuffer, pos: number;
 * const { message } = decode(u8, i32, side, pos, true);
 * ```
 */
export function decode(
  ringBytes: Uint8Array,
  ring: Int32Array,
  side: SharedArrayBuffer,
  pos: number,
  copy: boolean,
): Decoded {
  const w = pos >> 2;
  const kind = ring[w + R.KIND];
  const len = ring[w + R.PAYLOAD];
  const traceLen = ring[w + R.TRACE];
  const gen = ring[w + R.GEN];
  let view: Uint8Array;
  let traceAt: number;
  if (kind & K_OVERSIZE) {
    view = new Uint8Array(side, 0, len);
    traceAt = pos + HEADER;
  } else {
    view = ringBytes.subarray(pos + HEADER, pos + HEADER + len);
    traceAt = pos + HEADER + len;
  }
  let message: WireMessage;
  if (kind & K_BINARY) {
    message = { type: "binary", data: copy ? view.slice() : view };
  } else {
    message = { type: "text", data: decoder.decode(view) };
  }
  let trace: TraceCarrier | undefined;
  if (traceLen > 0) {
    const s = decoder.decode(ringBytes.subarray(traceAt, traceAt + traceLen));
    const nl = s.indexOf("\n");
    trace = nl < 0 ? { traceparent: s } : {
      traceparent: s.slice(0, nl) || undefined,
      tracestate: s.slice(nl + 1) || undefined,
    };
  }
  return { message, gen, trace };
}
