/**
 * The engine's typed errors. Adapter-level errors (`DialError`, `ConnectionClosedError`,
 * `NotSupportedError`, `ReadOverflowError`) live in `src/transport/types.ts`; `TimeoutError` in
 * `src/util/async.ts`.
 *
 * @module
 */

/**
 * `start()` failed: the dial was refused or timed out, the handshake was answered with an HTTP
 * error, `onOpen` rejected (or called `restart()`/`exit()`), or the start ran out of
 * `openTimeoutMs`. The original error is `cause`. A failed start leaves nothing running.
 *
 * @example
 * ```ts
 * import { EngineStartError } from "./errors.ts";
 * const err = new EngineStartError(new Error("refused"));
 * console.log(err.message); // "websocket engine failed to start: refused"
 * ```
 */
export class EngineStartError extends Error {
  /** The error name. */
  override name = "EngineStartError";
  /** Builds the error around what went wrong. */
  constructor(cause: unknown) {
    super(`websocket engine failed to start: ${describe(cause)}`, { cause });
  }
}

/**
 * An option failed validation. `field` is the option's path (e.g. `"reconnect.maxDelayMs"`),
 * `rule` says what it must be.
 *
 * @example
 * ```ts
 * import { EngineOptionError } from "./errors.ts";
 * const err = new EngineOptionError("stopTimeoutMs", "must be a finite number > 0", -1);
 * console.log(err.message); // invalid option stopTimeoutMs: must be a finite number > 0 (got -1)
 * ```
 */
export class EngineOptionError extends TypeError {
  /** The error name. */
  override name = "EngineOptionError";
  /** The option's path, dotted for nested options. */
  readonly field: string;
  /** The rule the value broke. */
  readonly rule: string;
  /** Builds the error for `field` breaking `rule` with `value`. */
  constructor(field: string, rule: string, value: unknown) {
    super(`invalid option ${field}: ${rule} (got ${preview(value)})`);
    this.field = field;
    this.rule = rule;
  }
}

/**
 * A call that the engine's current state does not allow: `start()` while started or starting,
 * `request()` or `pause()` with no open connection.
 *
 * @example
 * ```ts
 * import { EngineStateError } from "./errors.ts";
 * const err = new EngineStateError("start", "open");
 * console.log(err.state); // "open"
 * ```
 */
export class EngineStateError extends Error {
  /** The error name. */
  override name = "EngineStateError";
  /** The state the engine was in. */
  readonly state: string;
  /** Builds the error for `operation` refused in `state`. */
  constructor(operation: string, state: string) {
    super(`cannot ${operation}: the engine is ${state}`);
    this.state = state;
  }
}

/**
 * Closing a connection failed: `onClose` threw, the close frame could not be sent, or the peer
 * did not answer the close handshake in time and the socket was dropped. Given to `onCloseError`.
 *
 * @example
 * ```ts
 * import { CloseError } from "./errors.ts";
 * const err = new CloseError("the peer did not answer the close", { code: 1001, reason: "going away" });
 * console.log(err.code, err.reason); // 1001 "going away"
 * ```
 */
export class CloseError extends Error {
  /** The error name. */
  override name = "CloseError";
  /** The close code the engine sent (or tried to send). */
  readonly code: number;
  /** The close reason the engine sent (or tried to send). */
  readonly reason: string;
  /** Builds the error; `cause` is the underlying failure, if any. */
  constructor(message: string, frame: { code: number; reason: string }, cause?: unknown) {
    super(message, { cause });
    this.code = frame.code;
    this.reason = frame.reason;
  }
}

/**
 * Messages received before a connection closed that were never dispatched: the dispatcher could
 * not take them within `stopTimeoutMs` after the socket closed (a read lock held and never
 * resumed, or a handler that never returns), so the session ended without them. Given to
 * `onReadError` (or the `logger`), so the loss is never silent.
 *
 * @example
 * ```ts
 * import { UndeliveredError } from "./errors.ts";
 * const e = new UndeliveredError(12, 5000);
 * console.log(e.count); // 12
 * ```
 */
export class UndeliveredError extends Error {
  /** The error name. */
  override name = "UndeliveredError";
  /** How many received messages were dropped undispatched. */
  readonly count: number;
  /** `count` messages were dropped after waiting `waitedMs` for the dispatcher. */
  constructor(count: number, waitedMs: number) {
    super(
      `${count} message(s) received before the connection closed were not dispatched: the ` +
        `dispatcher took nothing for ${waitedMs} ms (a read lock never resumed, or a handler ` +
        `that never returns)`,
    );
    this.count = count;
  }
}

/** A short description of an unknown error value, for messages. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function preview(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(value);
  }
}
