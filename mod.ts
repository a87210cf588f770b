/**
 * wse: a Deno-first WebSocket engine.
 *
 * - A reconnecting client, {@linkcode WebSocketEngine}, with six callbacks (`onOpen`, `onMessage`,
 *   `onClose`, `onReadError`, `onCloseError`, `onRestartError`), jittered backoff, a pause button,
 *   an opt-in offline send buffer and a graceful `stop()`; errors no callback handles go to a
 *   rate-limited `logger`.
 * - `onMessage` in a pool of workers (the `workers` option; Web Workers, `worker_threads` on
 *   Node), fed through a SharedArrayBuffer ring; the read lock and the pause button are one
 *   Atomics mutex.
 * - Its own RFC 6455 client (the default adapter where the runtime has TCP: Deno, Node, Bun), or
 *   the runtime's `WebSocket`, or `npm:ws`.
 *
 * Other entry points: `@wse/engine/transport` (our client and server on raw TCP),
 * `@wse/engine/protocol` (the sans-I/O codec), `@wse/engine/testing` (a test kit).
 *
 * @example
 * ```ts ignore
 * import { WebSocketEngine } from "@wse/engine";
 * const engine = new WebSocketEngine({
 *   url: "ws://127.0.0.1:8080/",
 *   client: {
 *     onOpen: (ctx) => ctx.send("hello"),
 *     onMessage: (msg, ctx) => console.log(ctx.sessionId, msg.data),
 *   },
 * });
 * await engine.start();
 * await engine.stop();
 * ```
 *
 * @module
 */

// ---- the engine ----
export { type EngineState, WebSocketEngine } from "./src/engine/engine.ts";
export { SendBufferFullError, type SendBufferOptions } from "./src/engine/send_buffer.ts";
export type {
  EngineClient,
  EngineOptions,
  EngineWorkersOptions,
  ReconnectOptions,
  WorkerModule,
} from "./src/engine/options.ts";
export type {
  CloseContext,
  MessageContext,
  OpenContext,
  SessionContext,
} from "./src/engine/context.ts";
export type { RequestOptions } from "./src/engine/request.ts";
export type { PoolOptions } from "./src/dispatch/pool.ts";
export type { PauseLease, TraceCarrier } from "./src/dispatch/types.ts";

// ---- adapters and their contract ----
export { whatwgAdapter } from "./src/transport/whatwg_adapter.ts";
export { wsAdapter } from "./src/transport/ws_adapter.ts";
export { wseAdapter } from "./src/transport/tcp_adapter.ts";
export type {
  AdapterConnection,
  CloseInfo,
  DialOptions,
  HandshakeInfo,
  MessageSink,
  OutgoingData,
  OverflowPolicy,
  WebSocketAdapter,
  WireMessage,
} from "./src/transport/types.ts";

// ---- errors ----
export {
  CloseError,
  EngineOptionError,
  EngineStartError,
  EngineStateError,
  UndeliveredError,
} from "./src/engine/errors.ts";
export {
  ConnectionClosedError,
  DialError,
  NotSupportedError,
  ReadOverflowError,
} from "./src/transport/types.ts";
export { TimeoutError } from "./src/util/async.ts";
export { WorkerDiedError } from "./src/dispatch/pool.ts";
export { LeaseResumedError } from "./src/dispatch/types.ts";
