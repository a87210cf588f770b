/**
 * The one pause-lease implementation. Whoever holds a read lock (the main thread, the inline
 * dispatcher, a worker, or the engine's `onOpen` before dispatch starts) describes where the
 * connection's next message comes from as a {@linkcode LeaseSource}; {@linkcode Lease} does the
 * rest: waiting, the timeout, the abort, the errors.
 *
 * @module
 */

import { ConnectionClosedError, type OutgoingData, type WireMessage } from "../transport/types.ts";
import { within } from "../util/async.ts";
import { LeaseResumedError, type PauseLease } from "./types.ts";

/**
 * Where a lease's messages come from.
 *
 * @example
 * ```ts
 * import type { LeaseSource } from "./lease.ts";
 * const queue = [{ type: "text" as const, data: "a" }];
 * const source: LeaseSource = {
 *   take: () => queue.shift() ?? null,
 *   changed: () => new Promise(() => {}),
 *   send: () => Promise.resolve(),
 *   release: () => {},
 * };
 * ```
 */
export interface LeaseSource {
  /**
   * The connection's next message if one is there, `undefined` if none is there yet, `null` once
   * the connection ended and none of its messages is left.
   */
  take(): WireMessage | undefined | null;
  /**
   * Resolves when `take` may have something new (it may also resolve early: the lease just looks
   * again). Must settle or stop waiting once `signal` aborts.
   */
  changed(signal: AbortSignal): Promise<void>;
  /** Sends on the connection. */
  send(data: OutgoingData): Promise<void>;
  /** Gives the lock back. Called once. */
  release(): void;
}

/**
 * A held read lock over a {@linkcode LeaseSource}.
 *
 * @example
 * ```ts
 * import { Lease } from "./lease.ts";
 * const lease = new Lease({
 *   take: () => ({ type: "text", data: "answer" }),
 *   changed: () => Promise.resolve(),
 *   send: () => Promise.resolve(),
 *   release: () => console.log("released"),
 * });
 * console.log((await lease.read()).data); // "answer"
 * lease.resume(); // "released"
 * ```
 */
export class Lease implements PauseLease {
  readonly #source: LeaseSource;
  /** Aborted when the lease ends; its reason is what `read()` rejects with from then on. */
  #life = new AbortController();

  /** Holds the lock until `resume()`. */
  constructor(source: LeaseSource) {
    this.#source = source;
  }

  /** True until `resume()`. */
  get held(): boolean {
    return !this.#life.signal.aborted;
  }

  /** Takes the connection's next message (see {@linkcode PauseLease.read}). */
  async read(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<WireMessage> {
    const source = this.#source;
    const first = this.#next();
    if (first) return first;
    const signals = [this.#life.signal];
    if (options.signal) signals.push(options.signal);
    return await within(async (signal) => {
      // Bounded: every turn waits for a change; the wait ends by timeout, abort or resume.
      for (;;) {
        await source.changed(signal);
        signal.throwIfAborted();
        const m = this.#next();
        if (m) return m;
      }
    }, {
      timeoutMs: options.timeoutMs,
      signal: AbortSignal.any(signals),
      what: "PauseLease.read",
    }).catch((e) => {
      throw this.#life.signal.aborted ? this.#life.signal.reason : e;
    });
  }

  #next(): WireMessage | undefined {
    this.#life.signal.throwIfAborted();
    const m = this.#source.take();
    if (m === null) {
      throw new ConnectionClosedError("the connection ended and nothing of it is left");
    }
    return m;
  }

  /** Sends on the connection. */
  send(data: OutgoingData): Promise<void> {
    return this.#source.send(data);
  }

  /** Releases the lock. Idempotent. */
  resume(): void {
    this.revoke(new LeaseResumedError());
  }

  /**
   * Ends the lease on its holder's behalf (its handler settled, its connection ended): the lock
   * is released and `read()` rejects with `error` from then on. Idempotent.
   */
  revoke(error: Error): void {
    if (this.#life.signal.aborted) return;
    this.#life.abort(error);
    this.#source.release();
  }
}
