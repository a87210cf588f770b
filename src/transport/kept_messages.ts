/**
 * {@linkcode KeptMessages}: the data messages a connection could not hand on yet (its sink refused
 * one, or its queue is over the read high watermark), copied out of the read buffer into one
 * growing buffer, in order, with no object per message.
 *
 * @module
 */

const EMPTY = new Uint8Array(0);
/** A drained buffer bigger than this is let go (an idle connection keeps nothing). */
const KEEP_EMPTY = 64 * 1024;

/**
 * A FIFO of copied data messages (text flag and bytes).
 *
 * @example
 * ```ts
 * import { KeptMessages } from "./kept_messages.ts";
 * const kept = new KeptMessages();
 * kept.push(false, new Uint8Array([1, 2]));
 * kept.push(true, new TextEncoder().encode("hi"));
 * kept.offer((text, payload) => (console.log(text, payload.length), true)); // false 2, true 2
 * console.log(kept.length); // 0
 * ```
 */
export class KeptMessages {
  #buf = EMPTY;
  #head = 0;
  #tail = 0;
  // Per message: length * 2 + (text ? 1 : 0), from #first on.
  #sizes: number[] = [];
  #first = 0;

  /** Messages kept. */
  get length(): number {
    return this.#sizes.length - this.#first;
  }

  /** Bytes kept. */
  get bytes(): number {
    return this.#tail - this.#head;
  }

  /** Keeps a copy of one message after the others. */
  push(text: boolean, payload: Uint8Array): void {
    const n = payload.length;
    if (this.#buf.length - this.#tail < n) {
      const live = this.#tail - this.#head;
      if (this.#buf.length - live >= n) {
        this.#buf.copyWithin(0, this.#head, this.#tail);
      } else {
        const next = new Uint8Array(Math.max(2 * (live + n), 1024));
        next.set(this.#buf.subarray(this.#head, this.#tail));
        this.#buf = next;
      }
      this.#head = 0;
      this.#tail = live;
    }
    this.#buf.set(payload, this.#tail);
    this.#tail += n;
    this.#sizes.push(n * 2 + (text ? 1 : 0));
  }

  /**
   * Offers the messages in order to `take` until it returns false (that message stays first).
   * `payload` is valid until the next `push`. Returns true once every message was taken. Not
   * re-entrant: `take` must not call `offer`.
   */
  offer(take: (text: boolean, payload: Uint8Array) => boolean): boolean {
    while (this.#first < this.#sizes.length) {
      const s = this.#sizes[this.#first];
      const n = Math.floor(s / 2);
      if (!take(s % 2 === 1, this.#buf.subarray(this.#head, this.#head + n))) return false;
      this.#head += n;
      this.#first++;
    }
    this.#sizes = [];
    this.#first = this.#head = this.#tail = 0;
    if (this.#buf.length > KEEP_EMPTY) this.#buf = EMPTY;
    return true;
  }
}
