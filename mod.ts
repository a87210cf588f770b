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
export { type EngineState, WebSocketEngine } from "./src/engine/engine.ts";
export type {
  Awaitable,
  CloseFrame,
  DispatcherFactory,
  EngineClient,
  EngineOptions,
  HeartbeatOptions,
  ReconnectOptions,
} from "./src/engine/options.ts";
export { ENGINE_DEFAULTS } from "./src/engine/options.ts";
export type {
  CloseContext,
  MessageContext,
  OpenContext,
  RestartErrorContext,
  SessionContext,
} from "./src/engine/context.ts";
export {
  CloseError,
  EngineOptionError,
  EngineStartError,
  EngineStateError,
} from "./src/engine/errors.ts";
export type { RequestOptions, ResponseMatcher } from "./src/engine/request.ts";
export { InlineDispatcher, type InlineDispatcherOptions } from "./src/engine/inline_dispatcher.ts";
export { backoffCeiling, type BackoffPolicy, fullJitterDelay } from "./src/engine/backoff.ts";
export {
  type WebSocketConstructor,
  whatwgAdapter,
  type WhatwgAdapterOptions,
} from "./src/transport/whatwg_adapter.ts";
export { wsAdapter, type WsAdapterOptions } from "./src/transport/ws_adapter.ts";

// ---- test kit: a fault-injecting echo server for users' own tests ----
export { type EchoServer, startEchoServer } from "./src/testing/echo_server.ts";

// ---- pool (issue 3) ----
export {
  PoolDispatcher,
  type PoolOptions,
  poolOptionsProblem,
  WorkerDiedError,
} from "./src/pool/pool.ts";
export type { PoolMessageContext, PoolWorkerModule } from "./src/pool/types.ts";

// ---- protocol and own transport (issue 4) ----
export {
  acceptKey,
  buildClientRequest,
  CloseCode,
  encodeFrame,
  FrameParser,
  generateKey,
  HandshakeError,
  HttpHeadReader,
  negotiateServer,
  Opcode,
  ProtocolConnection,
  ProtocolError,
  rejectionResponse,
  validateServerResponse,
} from "./src/protocol/mod.ts";
export type {
  ClientHandshakeOptions,
  DeflateOptions,
  DeflateParams,
  EncodeOptions,
  Frame,
  FrameParserOptions,
  HandshakeRejection,
  HandshakeRequest,
  HandshakeResult,
  ProtocolEvent,
  ProtocolOptions,
  RequestHead,
  ResponseHead,
  ServerHandshakeOptions,
  ServerNegotiation,
} from "./src/protocol/mod.ts";
export { connect, type ConnectOptions } from "./src/transport/tcp_client.ts";
export {
  type ConnectionState,
  type ConnectionStats,
  WebSocketConnection,
  type WebSocketConnectionOptions,
} from "./src/transport/tcp_connection.ts";
export {
  handleNodeUpgrade,
  serve,
  type ServeOptions,
  type UpgradeOptions,
  type UpgradeRequest,
  type WebSocketServer,
} from "./src/transport/tcp_server.ts";
export { wseAdapter, type WseAdapterOptions } from "./src/transport/tcp_adapter.ts";
export type { StreamAddr } from "./src/transport/tcp_stream.ts";
