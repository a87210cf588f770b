/**
 * wse: a Deno-first WebSocket engine.
 *
 * - A reconnecting client engine with six callbacks (`onOpen`, `onMessage`, `onClose`,
 *   `onReadError`, `onCloseError`, `onRestartError`), jittered backoff and a graceful `stop()`.
 * - `onMessage` in a pool of Web Workers, fed through a SharedArrayBuffer ring; the read lock and
 *   the pause button are one Atomics mutex.
 * - Its own RFC 6455 client and server on raw TCP.
 *
 * @module
 */

// ---- shared: the adapter contract and async helpers ----
export type {
  AdapterConnection,
  CloseInfo,
  DialOptions,
  HandshakeInfo,
  OutgoingData,
  OverflowPolicy,
  WebSocketAdapter,
  WireMessage,
} from "./src/transport/types.ts";
export {
  ConnectionClosedError,
  DialError,
  NotSupportedError,
  ReadOverflowError,
} from "./src/transport/types.ts";
export { TimeoutError } from "./src/util/async.ts";
export type {
  Dispatcher,
  DispatchHost,
  PauseLease,
  TraceCarrier,
} from "./src/engine/dispatcher.ts";

// ---- engine (issue 2) ----

// ---- pool (issue 3) ----

// ---- protocol and own transport (issue 4) ----
export {
  CloseCode,
  encodeFrame,
  FrameParser,
  HandshakeError,
  Opcode,
  ProtocolConnection,
  ProtocolError,
} from "./src/protocol/mod.ts";
export type {
  DeflateOptions,
  DeflateParams,
  Frame,
  ProtocolEvent,
  ProtocolOptions,
} from "./src/protocol/mod.ts";
