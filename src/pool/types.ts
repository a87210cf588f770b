/**
 * What a worker module sees: the context its `onMessage` gets, and the shape of the module.
 *
 * @module
 */

import type { MessageContext } from "../engine/context.ts";
import type { TraceCarrier } from "../engine/dispatcher.ts";
import type { WireMessage } from "../transport/types.ts";

/**
 * The context `onMessage` gets in a pool worker: the engine's {@linkcode MessageContext}
 * (`sessionId`, `workerId`, `send`, `restart`, `exit`, `pause`) plus the message's trace context.
 *
 * Binary `message.data` is a view into shared memory, valid until `onMessage` returns (or its
 * promise settles): copy it (`message.data.slice()`) to keep it longer.
 *
 * @example
 * ```ts
 * import type { PoolMessageContext } from "./types.ts";
 * import type { WireMessage } from "../transport/types.ts";
 * export async function onMessage(m: WireMessage, ctx: PoolMessageContext): Promise<void> {
 *   if (m.type === "text" && m.data === "ping") await ctx.send(`pong from ${ctx.workerId}`);
 * }
 * ```
 */
export interface PoolMessageContext extends MessageContext {
  /** W3C trace context of the message's receive span, when telemetry is on. */
  readonly trace?: TraceCarrier;
}

/**
 * What a pool worker module exports: `onMessage` (required) and, optionally, `onReadError`, which
 * runs in the worker when its `onMessage` throws (the error is also reported to the engine's
 * `onReadError` on the main thread).
 *
 * @example
 * ```ts
 * import type { PoolWorkerModule } from "./types.ts";
 * const mod: PoolWorkerModule = {
 *   onMessage: (m, ctx) => void ctx.send(m.type === "text" ? m.data : m.data.slice()),
 * };
 * ```
 */
export interface PoolWorkerModule {
  /** Handles one message. May return a promise; the worker takes no new message until it settles. */
  onMessage(message: WireMessage, ctx: PoolMessageContext): void | Promise<void>;
  /** Called in the worker when `onMessage` throws or rejects. */
  onReadError?(error: unknown, info: { workerId: string; sessionId: string }): void;
}
