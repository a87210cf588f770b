/**
 * The offline send buffer: what `engine.send()` queues while the engine has no open connection,
 * bounded by a message count and a byte count, with an explicit overflow policy. The engine
 * flushes it once after each reconnect, in order; this module only holds the queue.
 *
 * @module
 */

import type { OutgoingData } from "../transport/types.ts";

/**
 * What happens when a send would take the buffer past one of its limits:
 * - `"reject-newest"`: that `send()` rejects with {@linkcode SendBufferFullError}; the queue is
 *   unchanged (default);
 * - `"drop-oldest"`: the oldest queued messages are dropped until the new one fits, each reported
 *   to `onDrop` (or the engine's logger) with a {@linkcode SendBufferFullError}.
 */
export type SendBufferOverflow = "reject-newest" | "drop-oldest";

/**
 * The `sendBuffer` option: queue `engine.send()` calls while the engine is reconnecting.
 *
 * @example
 * ```ts
 * import type { SendBufferOptions } from "./send_buffer.ts";
 * const sendBuffer: SendBufferOptions = {
 *   maxMessages: 500,
 *   maxBytes: 256 * 1024,
 *   overflow: "drop-oldest",
 *   onDrop: (message, error) => console.warn("not sent:", message, error.message),
 * };
 * ```
 */
export interface SendBufferOptions {
  /** Most messages queued at once. Default 1024. */
  maxMessages?: number;
  /** Most bytes queued at once (strings counted as UTF-8). Default 1 MiB. */
  maxBytes?: number;
  /** What happens when a send would pass a limit. Default `"reject-newest"`. */
  overflow?: "reject-newest" | "drop-oldest";
  /**
   * A queued message the engine gives up on: pushed out by `"drop-oldest"`
   * ({@linkcode SendBufferFullError}), or flushed onto a connection that closed before taking it
   * (`ConnectionClosedError`: it may or may not have reached the server, and is never sent
   * again). Without it, each drop goes to the engine's `logger`.
   */
  onDrop?(message: OutgoingData, error: Error): void;
}

/**
 * What `engine.sendBuffer` shows: the queue's size, and a copy of what it holds, oldest first.
 *
 * @example
 * ```ts
 * import type { WebSocketEngine } from "./engine.ts";
 * function report(engine: WebSocketEngine): string {
 *   const buffer = engine.sendBuffer;
 *   if (!buffer) return "no send buffer";
 *   return `${buffer.length} messages (${buffer.bytes} bytes) waiting for the connection`;
 * }
 * ```
 */
interface SendBufferView {
  /** Messages queued. */
  readonly length: number;
  /** Bytes queued (strings counted as UTF-8). */
  readonly bytes: number;
  /** The queued messages, oldest first (a new array; the messages themselves are not copied). */
  messages(): OutgoingData[];
}

/**
 * A send did not fit in the offline buffer (policy `"reject-newest"`: that send rejects), or an
 * old message was pushed out of it (policy `"drop-oldest"`: reported to `onDrop`).
 *
 * @example
 * ```ts
 * import { SendBufferFullError } from "./send_buffer.ts";
 * const e = new SendBufferFullError("reject-newest", "maxMessages", 1024, 1_000_000);
 * console.log(e.limit, e.queuedMessages); // "maxMessages" 1024
 * ```
 */
export class SendBufferFullError extends Error {
  /** Always `"SendBufferFullError"`. */
  override name = "SendBufferFullError";
  /** The policy that was applied. */
  readonly policy: "reject-newest" | "drop-oldest";
  /** The limit that was reached. */
  readonly limit: "maxMessages" | "maxBytes";
  /** Messages queued when it happened. */
  readonly queuedMessages: number;
  /** Bytes queued when it happened. */
  readonly queuedBytes: number;
  /** The policy applied, the limit reached and the queue's size at that moment. */
  constructor(
    policy: "reject-newest" | "drop-oldest",
    limit: "maxMessages" | "maxBytes",
    queuedMessages: number,
    queuedBytes: number,
  ) {
    super(
      policy === "reject-newest"
        ? `the offline send buffer is full (${limit}: ${queuedMessages} messages, ` +
          `${queuedBytes} bytes queued); this message was not queued`
        : `the offline send buffer was full (${limit}); the oldest message was dropped`,
    );
    this.policy = policy;
    this.limit = limit;
    this.queuedMessages = queuedMessages;
    this.queuedBytes = queuedBytes;
  }
}

/** One queued message. `onSent` runs when the engine hands it to a connection. */
export interface BufferedMessage {
  readonly data: OutgoingData;
  readonly bytes: number;
  onSent?: () => void;
}

/** UTF-8 length of a string without encoding it. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // a surrogate pair: 2 UTF-16 units, 4 bytes
        i++;
      } else n += 2; // a lone surrogate is sent as U+FFFD (3 bytes)
    } else n += 2;
  }
  return n;
}

/**
 * The queue behind {@linkcode SendBufferView}: FIFO, bounded by count and bytes. A `Uint8Array`
 * is copied when queued, so the caller may reuse its own.
 *
 * @example
 * ```ts
 * import { SendBuffer } from "./send_buffer.ts";
 * const buffer = new SendBuffer({ maxMessages: 2, overflow: "drop-oldest" });
 * buffer.push("a");
 * buffer.push("b");
 * console.log(buffer.push("c").dropped.map((m) => m.data)); // [ "a" ]
 * console.log(buffer.messages()); // [ "b", "c" ]
 * ```
 */
export class SendBuffer implements SendBufferView {
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly overflow: SendBufferOverflow;
  #items: BufferedMessage[] = [];
  #head = 0;
  #bytes = 0;

  constructor(options: SendBufferOptions = {}) {
    this.maxMessages = options.maxMessages ?? 1024;
    this.maxBytes = options.maxBytes ?? 1 << 20;
    this.overflow = options.overflow ?? "reject-newest";
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  messages(): OutgoingData[] {
    return this.#items.slice(this.#head).map((m) => m.data);
  }

  /**
   * Queues `data`. Returns the entry and what `"drop-oldest"` pushed out (oldest first); throws
   * {@linkcode SendBufferFullError} when it is not queued (`"reject-newest"`, or one message
   * larger than `maxBytes`).
   */
  push(data: OutgoingData): { entry: BufferedMessage; dropped: BufferedMessage[] } {
    const bytes = typeof data === "string" ? utf8Length(data) : data.byteLength;
    const over = (): "maxMessages" | "maxBytes" | undefined =>
      this.length + 1 > this.maxMessages
        ? "maxMessages"
        : this.#bytes + bytes > this.maxBytes
        ? "maxBytes"
        : undefined;
    let limit = over();
    if (limit && (this.overflow === "reject-newest" || bytes > this.maxBytes)) {
      throw new SendBufferFullError("reject-newest", limit, this.length, this.#bytes);
    }
    const dropped: BufferedMessage[] = [];
    while (limit) { // bounded: every turn removes one message, and the newcomer fits alone
      dropped.push(this.shift()!);
      limit = over();
    }
    const entry: BufferedMessage = {
      data: typeof data === "string" ? data : data.slice(),
      bytes,
    };
    this.#items.push(entry);
    this.#bytes += bytes;
    return { entry, dropped };
  }

  /** Takes the oldest message. */
  shift(): BufferedMessage | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const entry = this.#items[this.#head++];
    this.#bytes -= entry.bytes;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return entry;
  }

  /** Withdraws a queued message (a request that gave up). True when it was still queued. */
  remove(entry: BufferedMessage): boolean {
    const i = this.#items.indexOf(entry, this.#head);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    this.#bytes -= entry.bytes;
    return true;
  }

  /** Empties the queue; returns its messages, oldest first. */
  takeAll(): OutgoingData[] {
    const all = this.messages();
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    return all;
  }
}
