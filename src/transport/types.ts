/**
 * The contract every transport adapter fulfils: dial, read, write, close, ping-and-await-pong, and
 * the underlying socket. The engine (and the pool behind it) only ever talk to this interface, so the
 * WHATWG `WebSocket`, `npm:ws` and our own RFC 6455 client are interchangeable.
 *
 * @module
 */

/**
 * A data message as delivered to handlers: text as a string, binary as bytes.
 *
 * @example
 * ```ts
 * import type { WireMessage } from "./types.ts";
 * const describe = (m: WireMessage) => m.type === "text" ? m.data : `${m.data.length} bytes`;
 * console.log(describe({ type: "text", data: "hi" })); // "hi"
 * ```
 */
export type WireMessage =
  | { readonly type: "text"; readonly data: string }
  | { readonly type: "binary"; readonly data: Uint8Array };

/**
 * What can be sent: a string goes out as a text frame, bytes as a binary frame.
 *
 * @example
 * ```ts
 * import type { OutgoingData } from "./types.ts";
 * const text: OutgoingData = "hello"; // a text frame
 * const bytes: OutgoingData = new Uint8Array([1, 2, 3]); // a binary frame
 * ```
 */
export type OutgoingData = string | Uint8Array;

/**
 * How a connection ended.
 *
 * @example
 * ```ts
 * import type { CloseInfo } from "./types.ts";
 * const explain = (c: CloseInfo) =>
 *   c.initiator === "drop" ? "dropped" : `${c.code} "${c.reason}" from ${c.initiator}`;
 * console.log(explain({ code: 1000, reason: "bye", wasClean: true, initiator: "remote" }));
 * ```
 */
export interface CloseInfo {
  /** The close code: the peer's, ours, 1005 when a close frame had no code, 1006 on a drop. */
  readonly code: number;
  /** The close reason (empty when there was none). */
  readonly reason: string;
  /** True when both close frames were exchanged before the socket closed. */
  readonly wasClean: boolean;
  /** Who started the close: us, the peer, or nobody (the connection dropped). */
  readonly initiator: "local" | "remote" | "drop";
}

/**
 * What the opening handshake gave. Fields an adapter cannot see are left undefined.
 *
 * @example
 * ```ts
 * import type { HandshakeInfo } from "./types.ts";
 * const chosen = (h: HandshakeInfo) => h.protocol || "(no subprotocol)";
 * console.log(chosen({ protocol: "chat.v1", extensions: "" })); // "chat.v1"
 * ```
 */
export interface HandshakeInfo {
  /** The subprotocol the server selected ("" for none). */
  readonly protocol: string;
  /** The extensions the server accepted, as the `Sec-WebSocket-Extensions` header value. */
  readonly extensions: string;
  /** HTTP status of the handshake response (101), where the adapter sees it. */
  readonly status?: number;
  /** Response headers, where the adapter sees them (npm:ws and our own client do; WHATWG does not). */
  readonly headers?: Headers;
}

/**
 * Options an adapter's `dial` receives. Adapters reject options they cannot honour.
 *
 * @example
 * ```ts
 * import type { DialOptions } from "./types.ts";
 * const options: DialOptions = {
 *   protocols: ["chat.v1"],
 *   handshakeTimeoutMs: 5000,
 *   maxPayload: 1 << 20,
 * };
 * ```
 */
export interface DialOptions {
  /** Subprotocols offered, in preference order. */
  readonly protocols?: readonly string[];
  /** Extra request headers (npm:ws and our client; Deno's WebSocket only with `--unstable-net`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Budget for TCP connect + TLS + HTTP upgrade. */
  readonly handshakeTimeoutMs: number;
  /** Largest message accepted; bigger ones close the connection with 1009 where the adapter can. */
  readonly maxPayload?: number;
  /** Read back-pressure: stop reading the socket once this many bytes are queued unread. */
  readonly readHighWaterMark?: number;
  /** Read back-pressure: resume reading once the queue drops below this many bytes. */
  readonly readLowWaterMark?: number;
  /**
   * Hard bound on queued unread bytes for adapters that cannot stop reading (WHATWG `WebSocket`).
   * What happens past it is {@linkcode DialOptions.overflow}.
   */
  readonly maxQueuedBytes?: number;
  /** Policy once `maxQueuedBytes` is exceeded. Default `"close"`. */
  readonly overflow?: OverflowPolicy;
  /** Aborting cancels the dial and closes anything half-open. */
  readonly signal?: AbortSignal;
  /**
   * Read problems that do not end the connection by themselves (a message dropped by the overflow
   * policy, a missed pong). The engine routes them to `onReadError`.
   */
  readonly onError?: (error: unknown) => void;
}

/**
 * What to do when unread messages exceed `maxQueuedBytes` on a socket that cannot be paused:
 * - `"close"`: close the connection with 1008 and report a {@linkcode ReadOverflowError} (default);
 * - `"drop-newest"` / `"drop-oldest"`: drop a message and report each drop as a {@linkcode ReadOverflowError}.
 *
 * Nothing is ever dropped silently.
 *
 * @example
 * ```ts
 * import type { OverflowPolicy } from "./types.ts";
 * const policy: OverflowPolicy = "drop-oldest"; // keep the newest messages, report each drop
 * ```
 */
export type OverflowPolicy = "close" | "drop-newest" | "drop-oldest";

/**
 * Receives a connection's data messages as they are parsed, with no `WireMessage` per message
 * (the worker pool copies each payload straight into its shared-memory ring).
 *
 * @example
 * ```ts
 * import type { MessageSink } from "./types.ts";
 * let bytes = 0;
 * const sink: MessageSink = {
 *   deliver: (_text, payload) => {
 *     bytes += payload.length;
 *     return true;
 *   },
 *   writable: () => Promise.resolve(),
 * };
 * ```
 */
export interface MessageSink {
  /**
   * One data message. `payload` is valid only during the call: copy what you keep. Text arrives
   * as UTF-8 bytes the connection has already validated (`text` true). Returns false when the sink
   * cannot take it now: the connection keeps this message and the ones after it, in order, stops
   * reading the socket, and offers them again once {@linkcode MessageSink.writable} resolves.
   */
  deliver(text: boolean, payload: Uint8Array): boolean;
  /** Resolves when `deliver` may succeed again. */
  writable(): Promise<void>;
}

/**
 * An open connection made by an adapter.
 *
 * @example
 * ```ts
 * import type { AdapterConnection } from "./types.ts";
 * async function closeNicely(c: AdapterConnection): Promise<void> {
 *   const info = await c.close(1000, "bye", 2000);
 *   console.log(info.code, info.wasClean);
 * }
 * ```
 */
export interface AdapterConnection {
  /** What the handshake gave. */
  readonly handshake: HandshakeInfo;
  /** The runtime's own socket object (a `WebSocket`, a `ws` instance, our `WebSocketConnection`). */
  readonly underlying: unknown;
  /**
   * Takes the next queued message without waiting, or `undefined` when none is queued.
   * Once the connection has closed and the queue is drained, it keeps returning `undefined` and
   * {@linkcode AdapterConnection.closed} is settled.
   */
  poll(): WireMessage | undefined;
  /** Resolves when `poll()` has a message or the connection has closed. */
  readable(): Promise<void>;
  /**
   * Registers the one function called synchronously each time a message is queued or the stream
   * ends (`undefined` removes it). A consumer that drains with `poll()` from it moves messages
   * without a promise per message; `readable()` still works beside it.
   */
  onReadable(listener: (() => void) | undefined): void;
  /**
   * Optional fast path: while a sink is set, data messages go to it instead of the queue (messages
   * already queued go first, in order); `poll()` returns nothing new. `undefined` goes back to the
   * queue. Adapters that cannot hand out raw payloads leave it out.
   */
  setSink?(sink: MessageSink | undefined): void;
  /**
   * Settles (never rejects) once the connection is closed and every queued message was polled
   * (or, while a sink is set, delivered to it).
   */
  readonly closed: Promise<CloseInfo>;
  /** True once the socket is closed (messages may still be queued). */
  readonly isClosed: boolean;
  /** Queues a message; resolves once the runtime accepted it (awaitable send). */
  send(data: OutgoingData): Promise<void>;
  /** Bytes accepted by `send` but not yet written to the socket. */
  readonly bufferedAmount: number;
  /**
   * Sends a ping and resolves with the round-trip time in ms when the pong arrives.
   * Rejects with {@linkcode NotSupportedError} on adapters that cannot ping (WHATWG `WebSocket`).
   */
  ping(timeoutMs: number): Promise<number>;
  /**
   * Starts the close handshake with `code`/`reason`, waits up to `timeoutMs` for the peer's close,
   * then drops the socket. Resolves with how it ended. Calling it twice returns the same promise.
   */
  close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo>;
  /** Drops the socket at once, without a close handshake. */
  terminate(): void;
}

/**
 * A way to open connections: one per runtime WebSocket implementation.
 *
 * @example
 * ```ts
 * import type { AdapterConnection, WebSocketAdapter } from "./types.ts";
 * import { whatwgAdapter } from "./whatwg_adapter.ts";
 * const adapter: WebSocketAdapter = whatwgAdapter();
 * function open(url: string): Promise<AdapterConnection> {
 *   return adapter.dial(new URL(url), { handshakeTimeoutMs: 5000 });
 * }
 * ```
 */
export interface WebSocketAdapter {
  /** A short name used in logs, spans and errors ("whatwg", "ws", "wse"). */
  readonly name: string;
  /** Opens a connection, or rejects with a {@linkcode DialError}. */
  dial(url: URL, options: DialOptions): Promise<AdapterConnection>;
}

/**
 * A dial that failed: refused, timed out, or a handshake the server answered with an HTTP error.
 *
 * @example
 * ```ts
 * import { DialError } from "./types.ts";
 * const e = new DialError("the server answered 403", { status: 403 });
 * console.log(e.status); // 403
 * ```
 */
export class DialError extends Error {
  /** Always `"DialError"`. */
  override name = "DialError";
  /** The HTTP status the server answered with, when it answered. */
  readonly status?: number;
  /** `options.cause` is the underlying error (a refused socket, a `TimeoutError`...). */
  constructor(message: string, options?: { status?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.status = options?.status;
  }
}

// An operation the adapter or the runtime cannot perform: defined with the runtime differences.
export { NotSupportedError } from "../platform/types.ts";

/**
 * A send or read on a connection that is already closed.
 *
 * @example
 * ```ts
 * import { ConnectionClosedError } from "./types.ts";
 * const e = new ConnectionClosedError("gone", {
 *   code: 1006,
 *   reason: "",
 *   wasClean: false,
 *   initiator: "drop",
 * });
 * console.log(e.close?.code); // 1006
 * ```
 */
export class ConnectionClosedError extends Error {
  /** Always `"ConnectionClosedError"`. */
  override name = "ConnectionClosedError";
  /** How the connection ended, when known. */
  readonly close?: CloseInfo;
  /** `close` says how the connection ended, when that is known. */
  constructor(message = "the connection is closed", close?: CloseInfo) {
    super(message);
    this.close = close;
  }
}

/**
 * Unread messages exceeded their bound on a socket that cannot be paused.
 *
 * @example
 * ```ts
 * import { ReadOverflowError } from "./types.ts";
 * const e = new ReadOverflowError("drop-oldest", 70 << 20, 64 << 20);
 * console.log(e.policy, e.queuedBytes);
 * ```
 */
export class ReadOverflowError extends Error {
  /** Always `"ReadOverflowError"`. */
  override name = "ReadOverflowError";
  /** The policy that was applied. */
  readonly policy: OverflowPolicy;
  /** Bytes queued when the bound was hit. */
  readonly queuedBytes: number;
  /** The policy applied, the bytes queued and the bound they exceeded. */
  constructor(policy: OverflowPolicy, queuedBytes: number, limit: number) {
    super(
      `unread messages exceeded maxQueuedBytes (${queuedBytes} > ${limit}); policy "${policy}" applied`,
    );
    this.policy = policy;
    this.queuedBytes = queuedBytes;
  }
}

/** Byte size of a message as it counts against queue limits (UTF-16 length ×2 is close enough for text). */
export function messageSize(message: WireMessage): number {
  return message.type === "text" ? message.data.length * 2 : message.data.byteLength;
}
