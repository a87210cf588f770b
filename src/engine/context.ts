/**
 * What the engine's callbacks receive. {@linkcode MessageContext} is the shape `onMessage` gets,
 * on the main thread (`InlineDispatcher`) and in a worker (the pool's worker-side context
 * implements the same interface).
 *
 * @module
 */

import type { HandlerContext, PauseLease, TraceCarrier } from "../dispatch/types.ts";
import type { HandshakeInfo, OutgoingData } from "../transport/types.ts";

/**
 * The controls `onMessage` gets, for the session the message arrived on, on the main thread and
 * in a worker alike.
 *
 * @example
 * ```ts
 * import type { MessageContext } from "./context.ts";
 * async function onMessage(_msg: unknown, ctx: MessageContext): Promise<void> {
 *   if (ctx.workerId === "main") await ctx.send("handled on the main thread");
 * }
 * ```
 */
export interface MessageContext {
  /** The session (one per connection; `crypto.randomUUID()`), new after every reconnect. */
  readonly sessionId: string;
  /** Who runs this handler: `"main"` on the main thread, the worker's id in a pool. */
  readonly workerId: string;
  /** W3C trace context of the message's receive span, when telemetry is on. */
  readonly trace?: TraceCarrier;
  /**
   * Sends on this session's socket. Rejects with `ConnectionClosedError` once the session ended,
   * so a handler that outlives its connection never writes to the next one.
   */
  send(data: OutgoingData): Promise<void>;
  /**
   * Drops this session and reconnects (or stops, if auto-reconnect is off). The name is gowse's,
   * where a reconnect is a _restart_.
   */
  restart(): void;
  /**
   * Closes this session and stops the engine for good (also ends a retry loop). The name is
   * gowse's: the way out of its restart loop.
   */
  exit(): void;
  /**
   * The pause button: takes the read lock. Until `lease.resume()`, nothing is dispatched and
   * `lease.read()` returns the next messages in arrival order. In a handler, the lease ends with
   * the handler at the latest; outside one, with the session.
   */
  pause(signal?: AbortSignal): Promise<PauseLease>;
}

const noop = () => {};

/**
 * Shapes the dispatch layer's handler context into the engine's {@linkcode MessageContext}: the
 * connection id is the session id; `restart` and `exit` are the engine's own operations, carried
 * to it by name. Runs on the main thread and in every pool worker.
 *
 * @example
 * ```ts
 * import { context } from "./context.ts";
 * const ctx = context({
 *   connectionId: "s1",
 *   workerId: "main",
 *   send: () => Promise.resolve(),
 *   pause: () => Promise.reject(new Error("not in this example")),
 *   call: (op) => Promise.resolve(console.log("engine asked to", op)),
 * });
 * ctx.restart(); // "engine asked to restart"
 * ```
 */
export function context(base: HandlerContext): MessageContext {
  return Object.assign(base, {
    sessionId: base.connectionId,
    restart: () => void base.call("restart").catch(noop),
    exit: () => void base.call("exit").catch(noop),
  });
}

/**
 * The controls the main-thread lifecycle callbacks (`onOpen`, `onReadError`, `onClose`) get:
 * {@linkcode MessageContext} plus what the handshake gave.
 *
 * @example
 * ```ts
 * import type { SessionContext } from "./context.ts";
 * function log(ctx: SessionContext): void {
 *   console.log(ctx.sessionId, ctx.handshake.protocol, ctx.handshake.headers?.get("server"));
 * }
 * ```
 */
export interface SessionContext extends MessageContext {
  /** Subprotocol, extensions, and (where the adapter sees them) status and response headers. */
  readonly handshake: HandshakeInfo;
}

/**
 * What `onOpen` gets. In `onOpen` dispatch has not started yet: `pause()` gives a lease that
 * reads straight from the new connection (request/response before any `onMessage`).
 *
 * @example
 * ```ts
 * import type { OpenContext } from "./context.ts";
 * async function onOpen(ctx: OpenContext): Promise<void> {
 *   await ctx.send(ctx.restarting ? "hello again" : "hello");
 * }
 * ```
 */
export interface OpenContext extends SessionContext {
  /** False for the connection `start()` opens, true for every reconnect. */
  readonly restarting: boolean;
}

/**
 * What `onClose` gets. When the engine closes (stop, restart, exit), `send` still works: the
 * close frame has not been sent yet. When the peer closed or the connection dropped, it rejects.
 *
 * @example
 * ```ts
 * import type { CloseContext } from "./context.ts";
 * function onClose(_peer: unknown, ctx: CloseContext): void {
 *   console.log(`session ${ctx.sessionId} ends; reconnecting: ${ctx.willReconnect}`);
 * }
 * ```
 */
export interface CloseContext extends SessionContext {
  /** True when the engine will reconnect after this close (as things stand now). */
  readonly willReconnect: boolean;
}

/** What `onRestartError` gets beside the error and the retry count. */
export type RestartErrorContext = { exit(): void; readonly willRetry: boolean };
