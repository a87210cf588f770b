/**
 * A log that cannot flood: the first of a run of identical lines is printed at once, the repeats
 * within the window are only counted, and the count is printed with the next identical line after
 * the window (or by `flush()`). No timer is kept, so an idle log holds nothing alive.
 *
 * @module
 */

/** Where log lines go: a message, and the error it is about (if any). */
export type LogSink = (message: string, error?: unknown) => void;

/** Options of {@linkcode RateLimitedLog}. */
export interface RateLimitedLogOptions {
  /** Identical lines within this many ms after a printed one are counted, not printed. Default 10 000. */
  windowMs?: number;
  /** Distinct lines tracked at once; the oldest is flushed past it. Default 64. */
  maxKeys?: number;
  /** The clock, in ms (inject for tests). Default `performance.now`. */
  now?: () => number;
}

interface Run {
  /** When the last printed line of this kind was printed. */
  since: number;
  /** Identical lines counted (not printed) since then. */
  repeats: number;
  /** The last counted error (printed with the count). */
  last?: unknown;
}

/** What makes two lines "identical": the message and the error's name and message. */
function keyOf(message: string, error: unknown): string {
  if (error === undefined) return message;
  if (error instanceof Error) return `${message}\u0000${error.name}\u0000${error.message}`;
  let s: string;
  try {
    s = String(error);
  } catch {
    s = typeof error;
  }
  return `${message}\u0000${s}`;
}

/**
 * Rate-limits a {@linkcode LogSink}.
 *
 * @example
 * ```ts
 * import { RateLimitedLog } from "./rate_limited_log.ts";
 * const lines: string[] = [];
 * const log = new RateLimitedLog((m) => lines.push(m), { windowMs: 1000 });
 * for (let i = 0; i < 500; i++) log.log("wse: reconnect attempt failed", new Error("refused"));
 * log.flush();
 * console.log(lines.length); // 2: the first line, then "... (499 more in the last 0 s)"
 * ```
 */
export class RateLimitedLog {
  readonly #sink: LogSink;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #runs = new Map<string, Run & { message: string }>();

  /** Wraps `sink`. */
  constructor(sink: LogSink, options: RateLimitedLogOptions = {}) {
    this.#sink = sink;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#maxKeys = options.maxKeys ?? 64;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Prints `message` (with `error`), or counts it when an identical line was printed recently. */
  log(message: string, error?: unknown): void {
    const key = keyOf(message, error);
    const now = this.#now();
    const run = this.#runs.get(key);
    if (run && now - run.since < this.#windowMs) {
      run.repeats++;
      run.last = error;
      return;
    }
    if (run) {
      this.#summary(run, now);
      this.#runs.delete(key); // re-inserted below: the map stays in least-recent-first order
    } else if (this.#runs.size >= this.#maxKeys) {
      const [oldest, first] = this.#runs.entries().next().value!;
      this.#summary(first, now);
      this.#runs.delete(oldest);
    }
    this.#runs.set(key, { message, since: now, repeats: 0 });
    this.#emit(message, error);
  }

  /** Prints the counts still pending (e.g. when the engine stops) and forgets every line. */
  flush(): void {
    const now = this.#now();
    for (const run of this.#runs.values()) this.#summary(run, now);
    this.#runs.clear();
  }

  #summary(run: Run & { message: string }, now: number): void {
    if (run.repeats === 0) return;
    const seconds = Math.round((now - run.since) / 1000);
    this.#emit(`${run.message} (${run.repeats} more in the last ${seconds} s)`, run.last);
    run.repeats = 0;
  }

  #emit(message: string, error: unknown): void {
    try {
      this.#sink(message, error);
    } catch { /* a broken logger must not break its caller */ }
  }
}
