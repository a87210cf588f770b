/**
 * The contract of the dispatch layer: what the engine and the server (which own the sockets) give
 * a dispatcher for each connection, and what handlers get back. Two dispatchers implement it:
 * inline on the main thread (`inline.ts`) and a pool of Web Workers fed through shared memory
 * (`pool.ts`). Both serve any number of connections at once; a connection's messages keep their
 * order.
 *
 * @module
 */

import type { OutgoingData, WireMessage } from "../transport/types.ts";

export type { TraceCarrier } from "../telemetry/telemetry.ts";
import type { TraceCarrier } from "../telemetry/telemetry.ts";

/**
 * One connection as its owner (engine or server) presents it to a dispatcher: where a handler's
 * sends go, the owner's own operations, and where errors are reported.
 *
 * @example
 * ```ts
 * import type { ConnectionHost } from "./types.ts";
 * const host: ConnectionHost = {
 *   id: "c1",
 *   send: () => Promise.resolve(),
 *   call: (op) => console.log("asked for", op),
 *   reportError: (e) => console.error(e),
 * };
 * ```
 */
export interface ConnectionHost {
  /** The connection's id, as handlers see it. */
  readonly id: string;
  /** Sends on this connection; rejects with `ConnectionClosedError` once it ended. */
  send(data: OutgoingData): Promise<void>;
  /**
   * An operation the owner defines (the engine's `restart`/`exit`, the server's `broadcast`...),
   * called by a handler through its context. Arguments and result cross threads with a pool: they
   * must be structured-cloneable. A throw or rejection reaches the handler.
   */
  call(op: string, args: readonly unknown[]): unknown;
  /** A handler threw, or a worker died with this connection's message in flight. */
  reportError(error: unknown, info: { workerId: string }): void;
  /**
   * The connection's end went through the dispatcher: its `onDisconnect` ran and `dropped`
   * messages were discarded unhandled (see {@linkcode EndOptions.discard}).
   */
  ended?(info: { dropped: number }): void;
}

/**
 * How a connection ends in the dispatcher.
 *
 * @example
 * ```ts
 * import type { EndOptions } from "./types.ts";
 * const end: EndOptions = { discard: true, info: { code: 1001, reason: "going away" } };
 * ```
 */
export interface EndOptions {
  /**
   * Drop this connection's messages not yet handled (each counted in `ended({dropped})`) instead
   * of handling them first. Default false: every message taken in is handled.
   */
  discard?: boolean;
  /** Passed to the handlers' `onDisconnect` (structured-cloneable). */
  info?: unknown;
}

/**
 * The read lock, held: until `resume()`, this connection's messages are not dispatched (with a
 * pool, nothing in the lock's domain is: the whole pool in `shared` mode, the connection's worker
 * in `sticky` mode) and `read()` takes them, in arrival order.
 *
 * @example
 * ```ts
 * import type { PauseLease } from "./types.ts";
 * async function ask(lease: PauseLease): Promise<string> {
 *   await lease.send("question");
 *   const answer = await lease.read({ timeoutMs: 1000 });
 *   lease.resume();
 *   return answer.type === "text" ? answer.data : "(binary)";
 * }
 * ```
 */
export interface PauseLease {
  /**
   * Takes the connection's next message, waiting for one if needed. Rejects with `TimeoutError`
   * after `timeoutMs`, with the signal's reason on abort, with `ConnectionClosedError` once the
   * connection ended and nothing of it is left, with `LeaseResumedError` after `resume()`.
   */
  read(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<WireMessage>;
  /** Sends on the connection (the same as the context's `send`). */
  send(data: OutgoingData): Promise<void>;
  /** Releases the lock; dispatch resumes. Idempotent. */
  resume(): void;
  /** True until `resume()` (or until the lease ended with its handler or connection). */
  readonly held: boolean;
}

/**
 * What every handler gets, on the main thread and in a worker: the connection it runs for, who
 * runs it, and the connection's controls. The engine and the server add their own names on top.
 *
 * @example
 * ```ts
 * import type { HandlerContext } from "./types.ts";
 * async function onMessage(_m: unknown, ctx: HandlerContext): Promise<void> {
 *   await ctx.send(`handled by ${ctx.workerId} for ${ctx.connectionId}`);
 * }
 * ```
 */
export interface HandlerContext {
  /** The connection's id. */
  readonly connectionId: string;
  /** Who runs the handler: `"main"` on the main thread, the worker's id in a pool. */
  readonly workerId: string;
  /** The message's trace context, when telemetry is on (message handlers only). */
  readonly trace?: TraceCarrier;
  /** Sends on this connection; rejects with `ConnectionClosedError` once it ended. */
  send(data: OutgoingData): Promise<void>;
  /** The pause button: takes the read lock (see {@linkcode PauseLease}). */
  pause(signal?: AbortSignal): Promise<PauseLease>;
  /** Calls one of the owner's operations by name (see {@linkcode ConnectionHost.call}). */
  call(op: string, ...args: unknown[]): Promise<unknown>;
}

/**
 * The handlers a dispatcher runs: `onMessage` for every message; `onConnect` and `onDisconnect`
 * (optional) when a connection opens and ends, in order with its messages. A pool's worker module
 * exports the same names.
 *
 * @example
 * ```ts
 * import type { Handlers } from "./types.ts";
 * const handlers: Handlers = {
 *   onConnect: (ctx) => console.log("open", ctx.connectionId),
 *   onMessage: (m, ctx) => ctx.send(m.type === "text" ? m.data : m.data.slice()),
 *   onDisconnect: (info, ctx) => console.log("closed", ctx.connectionId, info),
 * };
 * ```
 */
export interface Handlers<C = HandlerContext> {
  /** A connection opened; `info` is what its owner passed (structured-cloneable). */
  onConnect?(ctx: C, info: unknown): void | Promise<void>;
  /** One message. A returned promise is awaited before the next message of the same handler. */
  onMessage?(message: WireMessage, ctx: C): void | Promise<void>;
  /** A connection ended, after its last handled message; `info` is its owner's `EndOptions.info`. */
  onDisconnect?(info: unknown, ctx: C): void | Promise<void>;
  /**
   * Runs where the handler ran when `onMessage`/`onConnect`/`onDisconnect` throws or rejects (the
   * error also reaches the owner's error callback on the main thread).
   */
  onReadError?(error: unknown, ctx: C): void;
}

/**
 * A connection opened in a dispatcher: the owner pushes its messages here, in arrival order.
 * It is also a {@linkcode MessageSink} when the dispatcher takes raw payloads (the pool does:
 * they go straight into shared memory).
 *
 * @example
 * ```ts
 * import type { DispatchConnection } from "./types.ts";
 * async function feed(c: DispatchConnection, messages: string[]): Promise<void> {
 *   for (const data of messages) {
 *     while (!c.push({ type: "text", data })) await c.writable();
 *   }
 *   c.end();
 * }
 * ```
 */
export interface DispatchConnection {
  /** The connection's id (its host's). */
  readonly id: string;
  /**
   * Offers one message. False when it cannot be taken now (full): wait for `writable()` and offer
   * the same message again. Always true once the dispatcher is closing (the message is counted
   * as abandoned) or the connection ended (ignored).
   */
  push(message: WireMessage, trace?: TraceCarrier): boolean;
  /**
   * The raw fast path, when the dispatcher has one: a payload view valid only for the call, text
   * as validated UTF-8. Same answer as `push`.
   */
  readonly deliver?: (text: boolean, payload: Uint8Array, trace?: TraceCarrier) => boolean;
  /** Resolves when `push` may succeed again (or the dispatcher closed). */
  writable(): Promise<void>;
  /** Takes the read lock for this connection, without blocking the event loop. */
  pause(signal?: AbortSignal): Promise<PauseLease>;
  /**
   * The connection ended: nothing more is pushed. Its messages already taken in are handled (or
   * discarded), then `onDisconnect` runs, then `host.ended` is called. Leases on it end once its
   * messages are read. Idempotent.
   */
  end(options?: EndOptions): void;
}

/** Everything a {@linkcode Dispatcher} is and serves. */
export interface Dispatcher {
  /** Prepares (spawns and checks workers). Rejects with the reason it cannot run. */
  init(): Promise<void>;
  /** A connection opens: its `onConnect` runs before any of its messages. */
  open(host: ConnectionHost, info?: unknown): DispatchConnection;
  /**
   * Shuts down within `timeoutMs`: in-flight handlers get until then, busy workers are
   * terminated after it. Resolves with the number of queued messages that were never handled.
   */
  close(timeoutMs: number): Promise<{ abandoned: number }>;
}

/**
 * Builds a {@linkcode Dispatcher} for its owner. The engine and the server take one of these.
 *
 * @example
 * ```ts
 * import type { DispatcherFactory } from "./types.ts";
 * import { InlineDispatcher } from "./inline.ts";
 * const factory: DispatcherFactory = () => new InlineDispatcher({ onMessage: () => {} });
 * ```
 */
export type DispatcherFactory = () => Dispatcher;

/**
 * `lease.read()` after the lease was released (by `resume()`, or because its handler or its
 * connection ended).
 *
 * @example
 * ```ts
 * import { LeaseResumedError } from "./types.ts";
 * console.log(new LeaseResumedError().message);
 * ```
 */
export class LeaseResumedError extends Error {
  /** Always `"LeaseResumedError"`. */
  override name = "LeaseResumedError";
  /** The message says what happened; there is nothing to configure. */
  constructor() {
    super("the pause lease was resumed: dispatch goes on, read() takes nothing");
  }
}
