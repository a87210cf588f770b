/**
 * A way to let the event loop take its other tasks (socket reads, timers, messages) in the middle
 * of a long run of work chained by promises, which would otherwise starve them: a microtask never
 * yields to I/O. A `MessageChannel` message is a macrotask without the 4 ms clamp nested timers
 * get.
 *
 * @module
 */

/**
 * Yields one event-loop turn per call to `next()`. `close()` releases the channel (an open one
 * keeps the event loop alive).
 *
 * @example
 * ```ts
 * import { Turns } from "./turn.ts";
 * const turns = new Turns();
 * for (let i = 0; i < 1000; i++) if (i % 100 === 99) await turns.next();
 * turns.close();
 * ```
 */
export class Turns {
  #channel?: MessageChannel;
  #waiting: (() => void)[] = [];

  /** Resolves in a later macrotask. */
  next(): Promise<void> {
    if (!this.#channel) {
      this.#channel = new MessageChannel();
      this.#channel.port1.onmessage = () => this.#waiting.shift()?.();
    }
    return new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      this.#channel!.port2.postMessage(0);
    });
  }

  /** Closes the channel; pending `next()` calls resolve at once. */
  close(): void {
    this.#channel?.port1.close();
    this.#channel?.port2.close();
    this.#channel = undefined;
    for (const w of this.#waiting.splice(0)) w();
  }
}
