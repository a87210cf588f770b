/**
 * The shared-memory layout of the worker pool and the operations both sides run on it.
 *
 * A pool has one **channel** per read domain: one for the whole pool in `shared` mode, one per
 * worker in `sticky` mode. A channel is two SharedArrayBuffers, written by the main thread only:
 * - the control block (`Int32Array`): the read lock, the claim cursor, the publication counter,
 *   per-worker words and the ordering lanes;
 * - the ring: variable-length records, 8-byte aligned (a message, a connection's open, its close);
 * plus a growable side channel for one message too big for the ring at a time.
 *
 * Every channel shares the pool's **connection table**: per connection slot its generation, its
 * state (open, discarding) and its id, so a worker learns a connection's id without a message.
 *
 * See `docs/pool.md` for the diagram and the protocol.
 *
 * @module
 */

import type { WireMessage } from "../transport/types.ts";
import type { TraceCarrier } from "./types.ts";
import { decodeShared, encodeIntoShared } from "./shared_text.ts";

/** Word indices of a channel's control block. */
export const C = {
  /** The read lock / pause button: 0 when free, else the owner's token (main = 1). */
  LOCK: 0,
  /** How many threads wait for the lock (release notifies only when > 0). */
  LOCK_WAITERS: 1,
  /** Records the cursor has passed (int32, wraps; written under the lock). */
  CLAIMED: 2,
  /** Byte offset of the next record to claim (written under the lock). */
  RPOS: 3,
  /** 1 once the pool is closing: workers take nothing new. */
  STOP: 4,
  /** Threads waiting for an ordering lane to free up. */
  LANE_WAITERS: 6,
  /** Records published by the main thread (int32, wraps). Own cache line: written per batch. */
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

/** Words per worker: in-flight record offset + 1, asleep flag, spare (a cache line). */
export const WORKER_STRIDE = 16;
/** Most workers a pool may have. */
export const MAX_WORKERS = 64;
/** Per-worker word: offset + 1 of the record it is handling (0 = none). */
export const W_INFLIGHT = 0;
/** Per-worker word: 1 while asleep on `PUB`. */
export const W_ASLEEP = 1;
/** Ordering lanes: a key hashes to one; a busy lane holds back every later record on it. */
export const LANES = 1024;
/** First lane word. */
export const LANE_BASE = C.WORKER_BASE + MAX_WORKERS * WORKER_STRIDE;
/** Size of a control block in bytes. */
export const CONTROL_BYTES = (LANE_BASE + LANES) * 4;

/** Record header words (the header is {@linkcode HEADER} bytes). */
export const R = {
  /** 0 written, 1 claimed, 2 done. */
  STATE: 0,
  /** Total record bytes (header, payload, trace, padding), or -1 for a wrap marker. */
  LEN: 1,
  /** What the record is: the `K_*` bits. */
  KIND: 2,
  /** Payload bytes (message bytes, or the JSON of an open/close record's info). */
  PAYLOAD: 3,
  /** Ordering lane, or -1. */
  LANE: 4,
  /** Trace bytes after the payload: `traceparent`, `tracestate`, arrival (ms), one per line. */
  TRACE: 5,
  /** Connection slot in the connection table. */
  SLOT: 6,
  /** Connection generation (the slot's, when the record was written). */
  GEN: 7,
} as const;
/** Record header size in bytes. */
export const HEADER = 32;
/** Record state: written by the main thread, not yet claimed. */
export const ST_WRITTEN = 0;
/** Record state: claimed by a reader. */
export const ST_CLAIMED = 1;
/** Record state: done, its bytes may be reused. */
export const ST_DONE = 2;
/** Kind bit: a binary message (a message without it is text). */
export const K_BINARY = 1;
/** Kind bit: the payload lives in the side channel. */
export const K_OVERSIZE = 2;
/** Kind bit: a connection opened (payload: JSON info). */
export const K_OPEN = 4;
/** Kind bit: a connection ended (payload: JSON info). */
export const K_CLOSE = 8;
/** Lock token of the main thread. */
export const MAIN_TOKEN = 1;

/** Words per connection-table entry: generation, state, dropped count, id length, id bytes. */
export const CONN_WORDS = 16;
/** Connection-table word: the slot's generation (bumped at every open). */
export const T_GEN = 0;
/** Connection-table word: {@linkcode CS_OPEN} or {@linkcode CS_DISCARD}. */
export const T_STATE = 1;
/** Connection-table word: messages dropped unhandled because the connection was discarded. */
export const T_DROPPED = 2;
/** Connection-table word: the id's byte length. */
export const T_IDLEN = 3;
/** Connection-table word: first word of the id's UTF-8 bytes. */
export const T_ID = 4;
/** Longest connection id, in UTF-8 bytes. */
export const MAX_ID_BYTES = (CONN_WORDS - T_ID) * 4;
/** Connection state: its messages are handled. */
export const CS_OPEN = 1;
/** Connection state: ended with `discard`; its messages still queued are dropped. */
export const CS_DISCARD = 2;

/** The shared buffers of one channel, as posted to its workers. */
export interface SharedChannel {
  /** The control block. */
  control: SharedArrayBuffer;
  /** The ring of records. */
  ring: SharedArrayBuffer;
  /** The growable side channel for messages bigger than half the ring. */
  side: SharedArrayBuffer;
}

/** Rounds up to a multiple of 8. */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Hashes an ordering key to a lane. */
export function laneOf(key: string | number): number {
  if (typeof key === "number") {
    const k = Number.isInteger(key) ? key : Math.floor(key * 2654435761);
    return ((k % LANES) + LANES) % LANES;
  }
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % LANES;
}

/** Tries to take the lock without waiting. */
export function tryLock(ctl: Int32Array, token: number): boolean {
  return Atomics.compareExchange(ctl, C.LOCK, 0, token) === 0;
}

/**
 * Takes the lock, waiting with `Atomics.waitAsync` (never blocking the event loop). Rejects with
 * the signal's reason if it aborts first.
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

/** Releases the lock held by `token` (no-op if someone else holds it). */
export function unlock(ctl: Int32Array, token: number): void {
  if (Atomics.compareExchange(ctl, C.LOCK, token, 0) !== token) return;
  if (ctl[C.LOCK_WAITERS] > 0) Atomics.notify(ctl, C.LOCK, 1); // after a full fence: plain
}

/** What {@linkcode claim} returns when nothing is published. */
export const CLAIM_EMPTY = -1;

// The claim path runs once per message in a worker, and each `Atomics` call costs 8–20 ns (a
// builtin call, not an inlined instruction). So only the synchronizing accesses are atomic: the
// lock's compare-exchange (which orders everything done under the lock), the load of `PUB` (after
// it the published records are complete), the in-flight word (the main thread reuses a passed
// record's bytes once no reader names it) and the store of `ST_DONE`. Words written only under
// the lock (`CLAIMED`, `RPOS`, a record's claim) are plain int32 accesses: aligned, never torn.

/** Moves the cursor past the record at `pos` (`len` bytes). Under the lock. */
function advance(ctl: Int32Array, ring: Int32Array, pos: number, len: number): void {
  const next = pos + len;
  ctl[C.RPOS] = next >= ring.length * 4 ? 0 : next;
  ctl[C.CLAIMED] = (ctl[C.CLAIMED] + 1) | 0;
}

/**
 * Under the lock: claims the next published record and returns its offset, or
 * {@linkcode CLAIM_EMPTY}, or `-2 - lane` when the next record's ordering lane is busy (then
 * nothing is claimed). On the way it passes records a lease already took, and drops messages of
 * connections ended with `discard` (counted in the table). `inflightWord` (per worker) is set
 * before the claim becomes visible, so a reader that dies mid-claim leaves a trace.
 */
export function claim(
  ctl: Int32Array,
  ring: Int32Array,
  table: Int32Array,
  inflightWord: number,
): number {
  // Bounded: every turn passes one published record.
  for (;;) {
    if (ctl[C.CLAIMED] === Atomics.load(ctl, C.PUB)) return CLAIM_EMPTY;
    let pos = ctl[C.RPOS];
    let w = pos >> 2;
    if (ring[w + R.LEN] === -1) { // a wrap marker: the next record is at 0
      pos = 0;
      w = 0;
      ctl[C.RPOS] = 0;
    }
    const len = ring[w + R.LEN];
    if (ring[w + R.STATE] !== ST_WRITTEN) { // taken by a lease: already done
      advance(ctl, ring, pos, len);
      continue;
    }
    if (!(ring[w + R.KIND] & (K_OPEN | K_CLOSE))) {
      const t = ring[w + R.SLOT] * CONN_WORDS;
      // a discard racing with this claim lets one more message through (an atomic read too)
      if (table[t + T_STATE] === CS_DISCARD && table[t + T_GEN] === ring[w + R.GEN]) {
        Atomics.add(table, t + T_DROPPED, 1);
        done(ctl, ring, pos); // before the cursor passes it: then its bytes may be reused
        advance(ctl, ring, pos, len);
        continue;
      }
    }
    const lane = ring[w + R.LANE];
    if (lane >= 0 && Atomics.compareExchange(ctl, LANE_BASE + lane, 0, 1) !== 0) return -2 - lane;
    // atomic, before the cursor moves: the main thread reclaims what the cursor passed unless
    // a reader's in-flight word names it
    if (inflightWord >= 0) Atomics.store(ctl, inflightWord, pos + 1);
    ring[w + R.STATE] = ST_CLAIMED;
    advance(ctl, ring, pos, len);
    return pos;
  }
}

/**
 * Under the lock, for a lease on connection (`slot`, `gen`): takes its next published message out
 * of order (the cursor passes it later) and returns its offset; `-1` when none is published yet;
 * `-2` when the connection's close record comes first (nothing of it is left to read).
 */
export function takeFor(ctl: Int32Array, ring: Int32Array, slot: number, gen: number): number {
  let n = (Atomics.load(ctl, C.PUB) - Atomics.load(ctl, C.CLAIMED)) | 0;
  let pos = Atomics.load(ctl, C.RPOS);
  // Bounded: at most the n records published and not yet passed by the cursor.
  while (n > 0) {
    let w = pos >> 2;
    if (ring[w + R.LEN] === -1) {
      pos = 0;
      w = 0;
    }
    const len = ring[w + R.LEN];
    if (
      ring[w + R.SLOT] === slot && ring[w + R.GEN] === gen &&
      Atomics.load(ring, w + R.STATE) === ST_WRITTEN
    ) {
      const kind = ring[w + R.KIND];
      if (kind & K_CLOSE) return -2;
      if (!(kind & K_OPEN)) {
        Atomics.store(ring, w + R.STATE, ST_CLAIMED);
        return pos;
      }
    }
    pos += len;
    if (pos >= ring.length * 4) pos = 0;
    n--;
  }
  return -1;
}

/** Marks a record done without touching its lane (lease takes, dropped messages). */
function done(ctl: Int32Array, ring: Int32Array, pos: number): void {
  Atomics.store(ring, (pos >> 2) + R.STATE, ST_DONE);
  // A main thread waiting for room is woken once per 32 records freed (it waits for a quarter
  // of the ring anyway); a reader about to sleep wakes it for the rest (wakeMain). The store
  // above is a full fence: this plain load sees a wait that began before it.
  if (ctl[C.MAIN_WAITING] !== 0 && (Atomics.add(ctl, C.FREED, 1) & 31) === 31) {
    Atomics.notify(ctl, C.FREED);
  }
}

/** Wakes a main thread waiting for room: a reader found nothing more to take. */
export function wakeMain(ctl: Int32Array): void {
  if (Atomics.load(ctl, C.MAIN_WAITING) !== 0) {
    Atomics.add(ctl, C.FREED, 1);
    Atomics.notify(ctl, C.FREED);
  }
}

/**
 * Marks a record done: frees its lane (unless a lease took it) and its bytes, and wakes whoever
 * waits for either.
 */
export function release(ctl: Int32Array, ring: Int32Array, pos: number, leaseTake = false): void {
  const lane = ring[(pos >> 2) + R.LANE];
  if (lane >= 0 && !leaseTake) {
    Atomics.sub(ctl, LANE_BASE + lane, 1);
    if (Atomics.load(ctl, C.LANE_WAITERS) > 0) Atomics.notify(ctl, LANE_BASE + lane);
  }
  done(ctl, ring, pos);
}

/** Writes a connection's entry into the table (main thread, before any record of it). */
export function writeConnection(table: Int32Array, slot: number, gen: number, id: string): void {
  const t = slot * CONN_WORDS;
  const dst = new Uint8Array(table.buffer, (t + T_ID) * 4, MAX_ID_BYTES);
  table[t + T_IDLEN] = encodeIntoShared(id, dst);
  Atomics.store(table, t + T_DROPPED, 0);
  Atomics.store(table, t + T_STATE, CS_OPEN);
  Atomics.store(table, t + T_GEN, gen);
}

/** Reads a connection's id from the table. */
export function readConnectionId(table: Int32Array, slot: number): string {
  const t = slot * CONN_WORDS;
  const len = table[t + T_IDLEN];
  return decodeShared(new Uint8Array(table.buffer, (t + T_ID) * 4, len));
}

/** A decoded record. */
export interface Decoded {
  /** The `K_*` bits. */
  kind: number;
  /** Connection slot and generation. */
  slot: number;
  gen: number;
  /** A message record's message: binary data is a view into shared memory unless copied. */
  message?: WireMessage;
  /** An open or close record's info. */
  info?: unknown;
  /** Trace context, when the record carried one. */
  trace?: TraceCarrier;
}

/**
 * Decodes the record at `pos`. With `copy` false, binary data is a view valid until the record is
 * released; text is always a fresh string (decoded here, in the reader's thread).
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
  let view: Uint8Array;
  let traceAt: number;
  if (kind & K_OVERSIZE) {
    view = new Uint8Array(side, 0, len);
    traceAt = pos + HEADER;
  } else {
    view = ringBytes.subarray(pos + HEADER, pos + HEADER + len);
    traceAt = pos + HEADER + len;
  }
  const d: Decoded = { kind, slot: ring[w + R.SLOT], gen: ring[w + R.GEN] };
  if (kind & (K_OPEN | K_CLOSE)) {
    d.info = len > 0 ? JSON.parse(decodeShared(view)) : undefined;
  } else if (kind & K_BINARY) {
    d.message = { type: "binary", data: copy ? view.slice() : view };
  } else {
    d.message = { type: "text", data: decodeShared(view) };
  }
  if (traceLen > 0) {
    const [traceparent, tracestate, receivedAt] = decodeShared(
      ringBytes.subarray(traceAt, traceAt + traceLen),
    ).split("\n");
    d.trace = {
      traceparent,
      tracestate: tracestate || undefined,
      receivedAt: receivedAt ? Number(receivedAt) : undefined,
    };
  }
  return d;
}
