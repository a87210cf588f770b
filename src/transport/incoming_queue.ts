/**
 * The read side every adapter shares: a FIFO of received messages with read back-pressure.
 *
 * Adapters `push` what the socket delivers and `end` it when the socket closes; the engine `poll`s.
 * When more than `highWaterMark` bytes are queued the queue asks the adapter to stop reading
 * (`onPause`), and below `lowWaterMark` to resume (`onResume`). An adapter that cannot stop its
 * socket (WHATWG `WebSocket`) ignores those calls; for it, `maxQueuedBytes` is the hard bound and
 * `overflow` says what happens past it. Nothing is dropped without `onOverflow` being told.
 *
 * @module
 */

import {
  type CloseInfo,
  messageSize,
  type OverflowPolicy,
  ReadOverflowError,
  type WireMessage,
} from "./types.ts";

/** Options of {@linkcode IncomingQueue}. */
export interface IncomingQueueOptions {
  /** Ask the adapter to stop reading past this many queued bytes. Default 1 MiB. */
  highWaterMark?: number;
  /** Ask the adapter to resume below this many queued bytes. Default highWaterMark / 2. */
  lowWaterMark?: number;
  /** Hard bound on queued bytes. Default 64 MiB. */
  maxQueuedBytes?: number;
  /** What happens past `maxQueuedBytes`. Default "close". */
  overflow?: OverflowPolicy;
  /** Called when the queue crosses `highWaterMark` going up. */
  onPause?: () => void;
  /** Called when the queue crosses `lowWaterMark` going down. */
  onResume?: () => void;
  /** Called once per overflow event; with policy "close" the adapter must close the socket (1008). */
  onOverflow?: (error: ReadOverflowError) => void;
}

/**
 * A FIFO of received messages with high/low watermarks and an overflow policy.
 *
 * @example
 * ```ts
 * import { IncomingQueue } from "./incoming_queue.ts";
 * const q = new IncomingQueue({ highWaterMark: 1024 });
 * q.push({ type: "text", data: "hi" });
 * console.log(q.poll()); // { type: "text", data: "hi" }
 * ```
 */
export class IncomingQueue {
  // Lists and promises are made on first use: an idle connection's queue is a few fields.
  #items: (WireMessage | undefined)[] | undefined;
  #head = 0;
  #bytes = 0;
  #paused = false;
  #end?: CloseInfo;
  #wake: (() => void) | undefined;
  #readable: Promise<void> | undefined;
  #listener?: () => void;
  #closed: Promise<CloseInfo> | undefined;
  #settleClosed: ((info: CloseInfo) => void) | undefined;
  #overflowed = false;
  readonly #high: number;
  readonly #low: number;
  readonly #max: number;
  readonly #policy: OverflowPolicy;
  readonly #opts: IncomingQueueOptions;

  constructor(options: IncomingQueueOptions = {}) {
    this.#opts = options;
    this.#high = options.highWaterMark ?? 1 << 20;
    this.#low = options.lowWaterMark ?? Math.floor(this.#high / 2);
    this.#max = options.maxQueuedBytes ?? 64 << 20;
    this.#policy = options.overflow ?? "close";
    if (this.#low > this.#high) throw new RangeError("lowWaterMark must not exceed highWaterMark");
  }

  /** Queued bytes (text counted as UTF-16). */
  get queuedBytes(): number {
    return this.#bytes;
  }

  /** Queued messages. */
  get length(): number {
    return this.#items === undefined ? 0 : this.#items.length - this.#head;
  }

  /** True while the queue has asked the adapter to stop reading. */
  get paused(): boolean {
    return this.#paused;
  }

  /** True once `end` was called (messages may remain). */
  get ended(): boolean {
    return this.#end !== undefined;
  }

  /** Settles once `end` was called and every message was polled. */
  get closed(): Promise<CloseInfo> {
    if (this.#closed === undefined) {
      this.#closed = this.#end !== undefined && this.length === 0
        ? Promise.resolve(this.#end)
        : new Promise<CloseInfo>((resolve) => (this.#settleClosed = resolve));
    }
    return this.#closed;
  }

  /** Adds a received message. Ignored after `end` and after a "close" overflow. */
  push(message: WireMessage): void {
    if (this.#end || this.#overflowed) return;
    const size = messageSize(message);
    if (this.#bytes + size > this.#max && this.length > 0) {
      if (this.#overflow(message, size)) return;
    }
    (this.#items ??= []).push(message);
    this.#bytes += size;
    if (!this.#paused && this.#bytes > this.#high) {
      this.#paused = true;
      this.#opts.onPause?.();
    }
    this.#notify();
  }

  /** Returns true when the incoming message was consumed by the policy (not queued). */
  #overflow(incoming: WireMessage, size: number): boolean {
    const error = new ReadOverflowError(this.#policy, this.#bytes + size, this.#max);
    switch (this.#policy) {
      case "close":
        this.#overflowed = true;
        this.#opts.onOverflow?.(error);
        return true;
      case "drop-newest":
        this.#opts.onOverflow?.(error);
        return true;
      case "drop-oldest": {
        // Drop from the front until the newcomer fits (always keep at least the newcomer).
        while (this.length > 0 && this.#bytes + size > this.#max) {
          const old = this.#items![this.#head]!;
          this.#items![this.#head++] = undefined;
          this.#bytes -= messageSize(old);
          this.#opts.onOverflow?.(error);
        }
        void incoming;
        return false;
      }
    }
  }

  /** Marks the end of the stream. Messages already queued can still be polled. */
  end(info: CloseInfo): void {
    if (this.#end) return;
    this.#end = info;
    this.#settleIfDrained();
    this.#notify();
  }

  /** Takes the next message, or `undefined` when none is queued. */
  poll(): WireMessage | undefined {
    const items = this.#items;
    if (items === undefined || this.#head >= items.length) return undefined;
    const message = items[this.#head]!;
    items[this.#head++] = undefined;
    // Compact now and then so the array does not grow without bound; drop it once empty.
    if (this.#head === items.length) {
      this.#items = undefined;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    this.#bytes -= messageSize(message);
    if (this.#paused && this.#bytes <= this.#low) {
      this.#paused = false;
      this.#opts.onResume?.();
    }
    this.#settleIfDrained();
    return message;
  }

  /**
   * Registers the function called synchronously after each `push` and after `end` (`undefined`
   * removes it). It may `poll()` from inside the call.
   */
  listen(listener: (() => void) | undefined): void {
    this.#listener = listener;
  }

  /** Resolves when a message is queued or the stream has ended. */
  readable(): Promise<void> {
    if (this.length > 0 || this.#end) return Promise.resolve();
    return this.#readable ??= new Promise<void>((resolve) => (this.#wake = resolve));
  }

  // Called last in push/end, once the queue's state is final: the listener may poll().
  #notify(): void {
    const wake = this.#wake;
    if (wake !== undefined) {
      this.#wake = undefined;
      this.#readable = undefined;
      wake();
    }
    this.#listener?.();
  }

  #settleIfDrained(): void {
    if (this.#end === undefined || this.length > 0) return;
    const settle = this.#settleClosed;
    this.#settleClosed = undefined;
    settle?.(this.#end);
  }
}
