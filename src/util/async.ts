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
  let settled = false;
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    promise,
    get settled() {
      return settled;
    },
    resolve(value: T) {
      if (settled) return;
      settled = true;
      resolve(value);
    },
    reject(reason: unknown) {
      if (settled) return;
      settled = true;
      reject(reason);
    },
  };
}

/** The error a helper rejects with when its `AbortSignal` fires and the signal gave no reason. */
export class AbortError extends Error {
  override name = "AbortError";
  constructor(message = "the operation was aborted") {
    super(message);
  }
}

/** The error {@linkcode withTimeout} rejects with. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
  /** The budget that ran out, in milliseconds. */
  readonly timeoutMs: number;
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

/**
 * Races `promise` against a timer of `ms` milliseconds (0 or less means no limit).
 * Rejects with {@linkcode TimeoutError} naming `what`. The timer is cleared either way.
 *
 * @example
 * ```ts
 * import { withTimeout } from "./async.ts";
 * const v = await withTimeout(Promise.resolve(1), 1000, "answer");
 * ```
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  if (!(ms > 0) || ms === Infinity) return promise;
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves with the first of `promise` or the signal's abort; rejects with the abort reason.
 * The listener is removed either way.
 */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() =>
    signal.removeEventListener("abort", onAbort)
  );
}
