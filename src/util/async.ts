/**
 * Small async helpers used across layers (JSR's `@std/async` cannot be reached from our machines).
 *
 * `util/` sits beside `telemetry/`: every layer may use it, it uses none of them.
 *
 * @module
 */

/** A promise with its resolve and reject functions exposed. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
  /** True once resolve or reject was called. */
  readonly settled: boolean;
}

/**
 * Creates a {@linkcode Deferred}.
 *
 * @example
 * ```ts
 * import { deferred } from "./async.ts";
 * const d = deferred<number>();
 * setTimeout(() => d.resolve(42), 0);
 * console.log(await d.promise); // 42
 * ```
 */
export function deferred<T = void>(): Deferred<T> {
  return new Settable<T>();
}

/**
 * `Promise.withResolvers()` (ES2024), or the same made by hand where it is missing (Node 20).
 *
 * @example
 * ```ts
 * import { withResolvers } from "./async.ts";
 * const { promise, resolve } = withResolvers<number>();
 * resolve(1);
 * console.log(await promise); // 1
 * ```
 */
export const withResolvers: <T>() => {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
} = typeof Promise.withResolvers === "function" ? <T>() => Promise.withResolvers<T>() : <T>() => {
  let resolve!: (value: T | PromiseLike<T>) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
};

// A class, not an object literal of closures: servers hold one per connection.
class Settable<T> implements Deferred<T> {
  readonly promise: Promise<T>;
  readonly #resolve: (value: T) => void;
  readonly #reject: (reason: unknown) => void;
  settled = false;
  constructor() {
    const { promise, resolve, reject } = withResolvers<T>();
    this.promise = promise;
    this.#resolve = resolve;
    this.#reject = reject;
  }
  resolve(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(value);
  }
  reject(reason: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.#reject(reason);
  }
}

/** The error a helper rejects with when its `AbortSignal` fires and the signal gave no reason. */
export class AbortError extends Error {
  override name = "AbortError";
  constructor(message = "the operation was aborted") {
    super(message);
  }
}

/**
 * An operation ran out of its time budget.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "./async.ts";
 * const e = new TimeoutError("ping", 5000);
 * console.log(e.message, e.timeoutMs); // "ping timed out after 5000 ms" 5000
 * ```
 */
export class TimeoutError extends Error {
  /** Always `"TimeoutError"`. */
  override name = "TimeoutError";
  /** The budget that ran out, in milliseconds. */
  readonly timeoutMs: number;
  /** `what` names the operation in the message. */
  constructor(what: string, timeoutMs: number) {
    super(`${what} timed out after ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new AbortError();
}

/**
 * Sleeps `ms` milliseconds; an abort ends the sleep at once and rejects with the signal's reason.
 * The timer is always cleared, so an aborted sleep leaks nothing.
 *
 * @example
 * ```ts
 * import { sleep } from "./async.ts";
 * const ac = new AbortController();
 * setTimeout(() => ac.abort(), 5);
 * await sleep(60_000, ac.signal).catch(() => console.log("woken early"));
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Options of {@linkcode within}. */
export interface WithinOptions {
  /** The budget in ms; 0, a negative number, `Infinity` or `undefined` mean no limit. */
  timeoutMs?: number;
  /** Ends the wait early, rejecting with the signal's reason. */
  signal?: AbortSignal;
  /** Names the operation in the {@linkcode TimeoutError} message. */
  what?: string;
}

/**
 * The one timeout helper: waits for `work` at most `timeoutMs` and until `signal` aborts.
 * Rejects with {@linkcode TimeoutError} naming `what` when the budget runs out, with the
 * signal's reason when it aborts. `work` may be a function: it gets a signal that aborts when the
 * wait is given up, so it can stop what it started. The timer and the listener are always removed.
 *
 * @example
 * ```ts
 * import { within } from "./async.ts";
 * const v = await within(Promise.resolve(1), { timeoutMs: 1000, what: "the answer" });
 * const ac = new AbortController();
 * const late = within((signal) => new Promise((r) => signal.addEventListener("abort", r)), {
 *   timeoutMs: 5,
 *   signal: ac.signal,
 * });
 * await late.catch((e) => console.log(e.name)); // "TimeoutError"
 * ```
 */
export function within<T>(
  work: Promise<T> | ((signal: AbortSignal) => Promise<T>),
  options: WithinOptions,
): Promise<T> {
  const ms = options.timeoutMs ?? 0;
  const limited = ms > 0 && ms !== Infinity;
  const parent = options.signal;
  if (!limited && !parent && typeof work !== "function") return work;
  if (parent?.aborted) return Promise.reject(abortReason(parent));
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  return new Promise<T>((resolve, reject) => {
    const giveUp = (reason: unknown) => {
      reject(reason);
      ac.abort(reason);
    };
    if (limited) {
      timer = setTimeout(() => giveUp(new TimeoutError(options.what ?? "operation", ms)), ms);
    }
    if (parent) {
      onAbort = () => giveUp(abortReason(parent));
      parent.addEventListener("abort", onAbort, { once: true });
    }
    let p: Promise<T>;
    try {
      p = typeof work === "function" ? work(ac.signal) : work;
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(resolve, reject);
  }).finally(() => {
    clearTimeout(timer);
    if (onAbort) parent!.removeEventListener("abort", onAbort);
  });
}
