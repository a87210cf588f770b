/**
 * The dispatcher that runs `onMessage` on the main thread, one message at a time, in arrival
 * order (async handlers are awaited). Its pause button is the read lock: an async mutex taken
 * around every "take the next message"; whoever holds it takes the messages themselves.
 *
 * @module
 */

import { ConnectionClosedError, type OutgoingData, type WireMessage } from "../transport/types.ts";
import { AbortError, type Deferred, deferred, TimeoutError, withTimeout } from "../util/async.ts";
import { type MessageContext, messageContext } from "./context.ts";
import type { Dispatcher, DispatchHost, PauseLease } from "./dispatcher.ts";
import { EngineStateError } from "./errors.ts";

/** What the inline dispatcher calls for every message. */
export type InlineHandler = (message: WireMessage, ctx: MessageContext) => unknown;

/** Options of {@linkcode InlineDispatcher}. */
export interface InlineDispatcherOptions {
  /** Messages queued before `push` refuses (back-pressure). Default 1024. */
  maxQueued?: number;
}

interface Entry {
  readonly message: WireMessage;
  readonly host: DispatchHost;
  readonly ctx: MessageContext;
}

/**
 * Runs `onMessage` on the main thread, serially, with a bounded queue and a read lock.
 *
 * @example
 * ```ts
 * import { InlineDispatcher } from "./inline_dispatcher.ts";
 * const d = new InlineDispatcher((msg) => console.log(msg.data));
 * await d.init();
 * d.attach({
 *   sessionId: "s1",
 *   send: () => Promise.resolve(),
 *   restart() {},
 *   exit() {},
 *   reportError: (e) => console.error(e),
 * });
 * d.push({ type: "text", data: "hi" });
 * await d.close(1000);
 * ```
 */
export class InlineDispatcher implements Dispatcher {
  readonly #handler?: InlineHandler;
  readonly #max: number;
  #queue: Entry[] = [];
  #head = 0;
  #host?: DispatchHost;
  #ctx?: MessageContext;
  #locked = false;
  /** Leases held now, with the session each was taken for. */
  #leases = new Set<{ host: DispatchHost; lease: PauseLease }>();
  #lockWaiters: { grant(): void; fail(e: unknown): void }[] = [];
  #readers = new Set<() => void>();
  #changed?: Deferred<void>; // created only when someone waits: no promise per message
  #closed = false;
  #loop?: Promise<void>;
  #inFlight?: Promise<unknown>;

  /** `handler` is `onMessage`; without one, messages are taken and discarded. */
  constructor(handler?: InlineHandler, options: InlineDispatcherOptions = {}) {
    this.#handler = handler;
    this.#max = options.maxQueued ?? 1024;
  }

  /** Messages queued, not yet handled. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Starts the dispatch loop. */
  init(): Promise<void> {
    this.#loop ??= this.#run();
    return Promise.resolve();
  }

  /**
   * A new session begins. A pause still held from an ended session is released: its holder could
   * read that session's last messages until now, but it must not block this one.
   */
  attach(host: DispatchHost): void {
    for (const { host: of, lease } of [...this.#leases]) if (of !== host) lease.resume();
    this.#host = host;
    this.#ctx = messageContext(host, "main", (signal) => this.#pauseFor(host, signal));
  }

  /** The session ended; queued messages still run with their (now closed) context. */
  detach(): void {
    this.#host = undefined;
    this.#ctx = undefined;
    this.#notify();
  }

  /** Queues a message; false when full. */
  push(message: WireMessage): boolean {
    if (this.#closed) return true; // nothing runs any more: taken and abandoned
    if (this.queued >= this.#max) return false;
    const host = this.#host;
    const ctx = this.#ctx;
    if (!host || !ctx) throw new EngineStateError("push", "detached");
    this.#queue.push({ message, host, ctx });
    this.#notify();
    return true;
  }

  /** Resolves when the queue has room (or the dispatcher closed). */
  async writable(): Promise<void> {
    while (!this.#closed && this.queued >= this.#max) await this.#changes();
  }

  /** Takes the read lock for the current session. */
  pause(signal?: AbortSignal): Promise<PauseLease> {
    const host = this.#host;
    if (!host) return Promise.reject(new ConnectionClosedError("no open session to pause"));
    return this.#pauseFor(host, signal);
  }

  /** Stops: waits up to `timeoutMs` for the handler in flight; queued messages are abandoned. */
  async close(timeoutMs: number): Promise<{ abandoned: number }> {
    if (this.#closed) return { abandoned: 0 };
    this.#closed = true;
    const abandoned = this.queued;
    this.#queue = [];
    this.#head = 0;
    for (const w of this.#lockWaiters.splice(0)) {
      w.fail(new ConnectionClosedError("the dispatcher closed"));
    }
    this.#notify();
    const inFlight = this.#inFlight;
    if (inFlight) {
      await withTimeout(inFlight, timeoutMs, "onMessage in flight").catch(() => {});
    }
    return { abandoned };
  }

  // ---- internals ----

  #notify(): void {
    if (this.#readers.size > 0) { for (const reader of [...this.#readers]) reader(); }
    const d = this.#changed;
    if (d) {
      this.#changed = undefined;
      d.resolve();
    }
  }

  #changes(): Promise<void> {
    return (this.#changed ??= deferred<void>()).promise;
  }

  #take(): Entry | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const entry = this.#queue[this.#head]!;
    (this.#queue as (Entry | undefined)[])[this.#head++] = undefined;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.queued === this.#max - 1) this.#notify(); // room again: wake writable()
    return entry;
  }

  #peek(): Entry | undefined {
    return this.#head < this.#queue.length ? this.#queue[this.#head] : undefined;
  }

  /** Takes the lock: synchronously when free, else in FIFO order. */
  #acquire(signal?: AbortSignal): Promise<void> | undefined {
    if (this.#closed) return Promise.reject(new ConnectionClosedError("the dispatcher closed"));
    if (signal?.aborted) return Promise.reject(signal.reason ?? new AbortError());
    if (!this.#locked) {
      this.#locked = true;
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        fail: (e: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.#lockWaiters.indexOf(waiter);
        if (i >= 0) this.#lockWaiters.splice(i, 1);
        reject(signal!.reason ?? new AbortError());
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#lockWaiters.push(waiter);
    });
  }

  #release(): void {
    const next = this.#lockWaiters.shift();
    if (next) next.grant(); // hand-off: the lock stays taken
    else this.#locked = false;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      if (this.queued === 0) {
        await this.#changes();
        continue;
      }
      const waiting = this.#acquire();
      if (waiting) {
        try {
          await waiting;
        } catch {
          return; // closed while waiting for a pause to end
        }
      }
      const entry = this.#take();
      this.#release();
      if (!entry || !this.#handler) continue;
      try {
        const result = this.#handler(entry.message, entry.ctx);
        if (result && typeof (result as Promise<unknown>).then === "function") {
          this.#inFlight = result as Promise<unknown>;
          await result;
        }
      } catch (error) {
        try {
          entry.host.reportError(error, { workerId: "main" });
        } catch { /* the host's reporting must not stop dispatch */ }
      } finally {
        this.#inFlight = undefined;
      }
    }
  }

  async #pauseFor(host: DispatchHost, signal?: AbortSignal): Promise<PauseLease> {
    if (this.#host !== host) throw new ConnectionClosedError("the session has ended");
    const waiting = this.#acquire(signal);
    if (waiting) await waiting;
    let held = true;
    const lease: PauseLease = {
      get held() {
        return held;
      },
      read: (options = {}) => this.#readFor(lease, host, options.timeoutMs, options.signal),
      send: (data: OutgoingData) => host.send(data),
      resume: () => {
        if (!held) return;
        held = false;
        this.#leases.delete(entry);
        this.#release();
        this.#notify(); // wake the loop, and fail reads still waiting on this lease
      },
    };
    const entry = { host, lease };
    this.#leases.add(entry);
    return lease;
  }

  #readFor(
    lease: PauseLease,
    host: DispatchHost,
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<WireMessage> {
    return new Promise<WireMessage>((resolve, reject) => {
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (settle: () => void) => {
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#readers.delete(tryTake);
        settle();
      };
      const onAbort = () => finish(() => reject(signal!.reason ?? new AbortError()));
      const tryTake = () => {
        if (done) return;
        if (!lease.held) {
          return finish(() => reject(new EngineStateError("read", "resumed (lease released)")));
        }
        const front = this.#peek();
        if (front && (front.host === host || this.#host === host)) {
          const entry = this.#take()!;
          return finish(() => resolve(entry.message));
        }
        if (this.#closed || this.#host !== host) {
          finish(() =>
            reject(new ConnectionClosedError("the session ended before a message arrived"))
          );
        }
      };
      if (signal?.aborted) return onAbort();
      tryTake();
      if (done) return;
      this.#readers.add(tryTake);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined && timeoutMs > 0 && timeoutMs !== Infinity) {
        timer = setTimeout(
          () => finish(() => reject(new TimeoutError("pause lease read", timeoutMs))),
          timeoutMs,
        );
      }
    });
  }
}
