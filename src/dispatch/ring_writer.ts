/**
 * The main thread's side of one channel: it allocates records in the ring, writes them, publishes
 * them to the workers (in batches under a flood), reclaims the bytes of handled ones, and waits
 * for room when the ring is full.
 *
 * @module
 */

import {
  align8,
  C,
  CONTROL_BYTES,
  HEADER,
  K_OVERSIZE,
  R,
  type SharedChannel,
  ST_DONE,
  ST_WRITTEN,
  W_INFLIGHT,
  WORKER_STRIDE,
} from "./ring.ts";
import { encodeIntoShared } from "./shared_text.ts";

const encoder = new TextEncoder();

/** What the writer reports to the pool. */
export interface WriterStats {
  /** Records written. */
  pushes: number;
  /** Stores of `PUB` (publications). */
  publishes: number;
  /** `Atomics.notify` calls that woke a sleeping worker. */
  wakes: number;
  /** 5 ms windows spent in flood mode. */
  floodWindows: number;
}

/** The main-thread writer of one channel. */
export class RingWriter {
  readonly ctl: Int32Array;
  readonly ring: Int32Array;
  readonly bytes: Uint8Array;
  readonly side: SharedArrayBuffer;
  /** Largest message the side channel can carry (read per message: a field, not the buffer's). */
  readonly maxSideBytes: number;
  /** The one wait for room (see `writable`), and the one wait for a freed record (`freed`). */
  #room: Promise<void> | undefined;
  #freedWait: Promise<void> | undefined;
  readonly stats: WriterStats = { pushes: 0, publishes: 0, wakes: 0, floodWindows: 0 };
  readonly #cap: number;
  readonly #batch: number;
  #head = 0;
  #tail = 0;
  #used = 0;
  #written = 0;
  #published = 0;
  /** Records reclaimed (wrap markers aside): never more than the cursor passed. */
  #reclaimed = 0;
  #sideRecord = -1;
  #flushTimer?: ReturnType<typeof setTimeout>;
  #turnQueued = false;
  readonly #publishTurn = () => {
    this.#turnQueued = false;
    this.publish();
  };
  #windowStart = 0;
  #windowCount = 0;
  #flood = false;
  #unpublishedBytes = 0;
  #usedAtFull = 0;
  #closed = false;
  readonly #onReclaim?: (slot: number, gen: number) => void;
  /** Per-worker words of the readers of this channel (their in-flight record). */
  readonly #inflightWords: number[];
  /** A reader's in-flight record offsets, as read by the last reclaim (reused). */
  readonly #busy: number[];
  // What this writer put in the ring, oldest first, three words per record: its length, its
  // connection slot (-1 for a wrap marker) and generation. Reclaiming reads this log, not the
  // records' headers: a header's cache line was last written by the worker that handled it, and
  // reading it back costs a cache miss per record.
  #log = new Int32Array(3 * 256);
  #logFirst = 0;
  #logCount = 0;
  /** `write` reclaims once `#used` exceeds this. */
  #reclaimAt = 0;

  /**
   * Creates the channel's shared memory. `onReclaim` hears of every handled record whose bytes
   * are reused (the pool counts each connection's records in the ring with it).
   */
  constructor(
    ringBytes: number,
    maxSideBytes: number,
    publishBatch: number,
    readers: readonly number[],
    onReclaim?: (slot: number, gen: number) => void,
  ) {
    this.#onReclaim = onReclaim;
    this.#inflightWords = readers.map((i) => C.WORKER_BASE + i * WORKER_STRIDE + W_INFLIGHT);
    this.#busy = readers.map(() => -1);
    this.#cap = align8(ringBytes);
    this.#batch = Math.max(1, publishBatch);
    this.ctl = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
    const ring = new SharedArrayBuffer(this.#cap);
    this.ring = new Int32Array(ring);
    this.bytes = new Uint8Array(ring);
    this.side = new SharedArrayBuffer(0, { maxByteLength: maxSideBytes });
    this.maxSideBytes = maxSideBytes;
  }

  /** The buffers, as posted to this channel's workers. */
  get shared(): SharedChannel {
    return {
      control: this.ctl.buffer as SharedArrayBuffer,
      ring: this.ring.buffer as SharedArrayBuffer,
      side: this.side,
    };
  }

  /** Ring capacity in bytes. */
  get capacity(): number {
    return this.#cap;
  }

  /** Bytes held by records not yet handled (after reclaiming what was). */
  get usedBytes(): number {
    this.#reclaim();
    return this.#used;
  }

  /** Frees the bytes of handled records now (`write` does it only from time to time). */
  reclaim(): void {
    this.#reclaim();
  }

  /**
   * Writes one record. `payload` may be a string (UTF-8 encoded into the ring) or bytes (copied).
   * Returns false when there is no room now; then wait for {@linkcode RingWriter.writable}.
   */
  write(
    kind: number,
    slot: number,
    gen: number,
    lane: number,
    payload: Uint8Array | string,
    trace?: Uint8Array,
  ): boolean {
    const traceLen = trace?.length ?? 0;
    // A string's UTF-8 length is at most 3 bytes per UTF-16 unit: reserve that, trim after.
    const maxPayload = typeof payload === "string" ? payload.length * 3 : payload.length;
    let len = align8(HEADER + maxPayload + traceLen);
    // Reclaiming reads words the readers write per record (cache lines owned by another core):
    // done in bulk, once a sixteenth of the ring was written since the last time, or when the
    // ring looks full.
    if (this.#used > this.#reclaimAt) this.#reclaim();
    let bytes = payload;
    if (len > this.#cap >> 1) {
      if (typeof bytes === "string") bytes = encoder.encode(bytes);
      len = align8(HEADER + bytes.length + traceLen);
      if (len > this.#cap >> 1) {
        if (this.#sideRecord >= 0) {
          if (!this.#sideFree()) return this.#full();
          this.#sideRecord = -1;
        }
        kind |= K_OVERSIZE;
        len = align8(HEADER + traceLen);
      }
    }
    let pos = this.#alloc(len);
    if (pos < 0) {
      this.#reclaim();
      pos = this.#alloc(len);
      if (pos < 0) return this.#full();
    }
    const ring = this.ring;
    const w = pos >> 2;
    let at = pos + HEADER;
    let size: number;
    if (kind & K_OVERSIZE) {
      const b = bytes as Uint8Array;
      size = b.length;
      if (this.side.byteLength < size) this.side.grow(size);
      new Uint8Array(this.side, 0, size).set(b);
      this.#sideRecord = pos;
    } else if (typeof bytes === "string") {
      size = encodeIntoShared(bytes, this.bytes.subarray(at, at + maxPayload));
      at += size;
      const exact = align8(HEADER + size + traceLen);
      if (exact < len) this.#shrinkLast(pos, len, exact);
      len = exact;
    } else {
      size = bytes.length;
      this.bytes.set(bytes, at);
      at += size;
    }
    if (trace) this.bytes.set(trace, at);
    ring[w + R.LEN] = len;
    ring[w + R.KIND] = kind;
    ring[w + R.PAYLOAD] = size;
    ring[w + R.LANE] = lane;
    ring[w + R.TRACE] = traceLen;
    ring[w + R.SLOT] = slot;
    ring[w + R.GEN] = gen;
    // plain: readers look at a record only after the atomic store of `PUB` that publishes it
    ring[w + R.STATE] = ST_WRITTEN;
    this.#logPush(len, slot, gen);
    this.#written = (this.#written + 1) | 0;
    this.#afterWrite(len);
    return true;
  }

  /** Gives back the unused tail of the record just allocated at `pos`. */
  #shrinkLast(pos: number, len: number, exact: number): void {
    const end = pos + len === this.#cap ? 0 : pos + len;
    if (this.#head !== end) return; // it wrapped: keep the reservation, the gap is harmless
    this.#head = pos + exact;
    this.#used -= len - exact;
  }

  // A flood (over 250 writes in the previous 5 ms window, i.e. > 50k msg/s): publish in batches,
  // so the workers take them without a wake-up per message; the tail of the flood goes out on a
  // timer (while a backlog drains no timer runs). Below that rate what a turn wrote is published
  // at the end of that turn, and a sleeping worker woken (a wake-up costs the main thread 5–40 µs:
  // affordable there, not per record).
  // Reading the clock is an op call: look at it on the first write of a window and every 32nd.
  #afterWrite(len: number): void {
    if ((this.#windowCount & 31) === 0) {
      const now = performance.now();
      if (now - this.#windowStart >= 5) {
        this.#flood = this.#windowCount > 250 && now - this.#windowStart < 10;
        this.#windowStart = now;
        this.#windowCount = 0;
      }
    }
    this.#windowCount++;
    this.stats.pushes++;
    if (this.#flood && this.#windowCount === 1) this.stats.floodWindows++;
    this.#unpublishedBytes += len;
    if (
      ((this.#written - this.#published) | 0) >= this.#batch ||
      this.#unpublishedBytes >= this.#cap >> 3
    ) {
      this.publish();
    } else if (!this.#flood) {
      // once per turn: a turn that writes many records (a read of many frames, or reads of many
      // connections completing together) wakes a reader once, not once per record
      if (!this.#turnQueued) {
        this.#turnQueued = true;
        queueMicrotask(this.#publishTurn);
      }
    } else if (this.#flushTimer === undefined && !this.#closed) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        this.publish();
      }, 0);
    }
  }

  /** Makes every written record visible to the readers, and wakes one if any sleeps. */
  publish(): void {
    const ctl = this.ctl;
    if (this.#published === this.#written) return;
    this.#published = this.#written;
    this.#unpublishedBytes = 0;
    this.stats.publishes++;
    Atomics.store(ctl, C.PUB, this.#written);
    // one worker: if there is more than it can take, it wakes the next (wake chaining)
    if (Atomics.load(ctl, C.SLEEPERS) !== 0) {
      this.stats.wakes++;
      Atomics.notify(ctl, C.PUB, 1);
    }
  }

  /**
   * Resolves once a quarter of the ring was freed since the last full `write` (or all of it, or
   * the side channel), or the writer closed. Waiting for a quarter, not for one record, lets the
   * readers run a batch instead of ping-ponging with the writer record by record. Every caller
   * shares one wait: a thousand connections blocked on a full ring are one waiter, not a thousand
   * woken together.
   */
  writable(): Promise<void> {
    this.publish();
    return this.#room ??= this.#waitRoom();
  }

  async #waitRoom(): Promise<void> {
    const ctl = this.ctl;
    const target = this.#usedAtFull - (this.#cap >> 2);
    try {
      for (let i = 0; i < 1e9 && !this.#closed; i++) {
        Atomics.store(ctl, C.MAIN_WAITING, 1);
        try {
          const seen = Atomics.load(ctl, C.FREED);
          this.#reclaim();
          if (this.#used <= target || this.#used === 0) return;
          if (this.#sideRecord >= 0 && this.#sideFree()) {
            this.#sideRecord = -1; // the side channel is free: a waiting oversize message fits
            return;
          }
          const r = Atomics.waitAsync(ctl, C.FREED, seen, 100);
          if (r.async) await r.value;
        } finally {
          Atomics.store(ctl, C.MAIN_WAITING, 0);
        }
      }
    } finally {
      this.#room = undefined; // before the callers resume: their next wait is a new one
    }
  }

  /**
   * Waits until a reader marks a record done (or 100 ms pass), then reclaims: for a writer that
   * waits for records of its own to be handled, not for room in the ring. Callers share one wait.
   */
  freed(): Promise<void> {
    this.publish();
    return this.#freedWait ??= this.#waitFreed();
  }

  async #waitFreed(): Promise<void> {
    const ctl = this.ctl;
    Atomics.store(ctl, C.MAIN_WAITING, 1);
    try {
      const r = Atomics.waitAsync(ctl, C.FREED, Atomics.load(ctl, C.FREED), 100);
      if (r.async) await r.value;
    } finally {
      Atomics.store(ctl, C.MAIN_WAITING, 0);
      this.#freedWait = undefined;
    }
    this.#reclaim();
  }

  /** Stops the flush timer; `writable()` resolves from now on. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    Atomics.store(this.ctl, C.STOP, 1);
    Atomics.notify(this.ctl, C.PUB);
    Atomics.notify(this.ctl, C.LOCK);
  }

  /** Offsets of the records from the claim cursor to the head: what no reader has passed yet. */
  *unclaimed(): Generator<number> {
    const ring = this.ring;
    let n = (this.#published - Atomics.load(this.ctl, C.CLAIMED)) | 0;
    n += (this.#written - this.#published) | 0;
    let pos = Atomics.load(this.ctl, C.RPOS);
    for (; n > 0; n--) {
      if (ring[(pos >> 2) + R.LEN] === -1) pos = 0;
      yield pos;
      pos += ring[(pos >> 2) + R.LEN];
      if (pos >= this.#cap) pos = 0;
    }
  }

  #full(): false {
    this.#usedAtFull = this.#used;
    return false;
  }

  #sideFree(): boolean {
    return Atomics.load(this.ring, (this.#sideRecord >> 2) + R.STATE) === ST_DONE;
  }

  #logPush(len: number, slot: number, gen: number): void {
    let log = this.#log;
    const entries = log.length / 3;
    if (this.#logCount === entries) {
      // full: double it, oldest entry first (a ring never holds more records than it has bytes / 32)
      const grown = new Int32Array(log.length * 2);
      const first = this.#logFirst * 3;
      grown.set(log.subarray(first));
      grown.set(log.subarray(0, first), log.length - first);
      this.#log = log = grown;
      this.#logFirst = 0;
    }
    const e = ((this.#logFirst + this.#logCount) & (log.length / 3 - 1)) * 3;
    log[e] = len;
    log[e + 1] = slot;
    log[e + 2] = gen;
    this.#logCount++;
  }

  /**
   * Frees the bytes of handled records, oldest first. A record the claim cursor has passed is
   * handled unless a reader still has it in flight (one lease took out of order is done before the
   * cursor reaches it). The cursor is read before the in-flight words: a reader records its claim
   * before it moves the cursor, so no claimed record is missed.
   */
  #reclaim(): void {
    this.#free();
    this.#reclaimAt = this.#used + (this.#cap >> 4);
  }

  #free(): void {
    if (this.#logCount === 0) return;
    const ctl = this.ctl;
    let passed = (Atomics.load(ctl, C.CLAIMED) - this.#reclaimed) | 0;
    const busy = this.#busy;
    const words = this.#inflightWords;
    for (let i = 0; i < words.length; i++) busy[i] = Atomics.load(ctl, words[i]) - 1;
    const cap = this.#cap;
    const log = this.#log;
    const mask = log.length / 3 - 1;
    while (this.#logCount > 0) {
      const e = (this.#logFirst & mask) * 3;
      const len = log[e];
      if (log[e + 1] === -1) {
        // a wrap marker: passed once the cursor has passed a record after it
        if (passed <= 0) break;
        this.#used -= len;
        this.#tail = 0;
      } else {
        if (passed <= 0 || busy.includes(this.#tail)) break;
        passed--;
        this.#reclaimed = (this.#reclaimed + 1) | 0;
        this.#onReclaim?.(log[e + 1], log[e + 2]);
        if (this.#tail === this.#sideRecord) this.#sideRecord = -1;
        this.#used -= len;
        this.#tail += len;
        if (this.#tail === cap) this.#tail = 0;
      }
      this.#logFirst = (this.#logFirst + 1) & mask;
      this.#logCount--;
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
        this.ring[w + R.LEN] = -1; // a wrap marker: readers go on at 0
        this.#logPush(cap - h, -1, 0);
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
}
