/**
 * `wseAdapter()`: the client engine's adapter over our own RFC 6455 client (`connect()`).
 *
 * Unlike the WHATWG `WebSocket`, it has real read back-pressure: when the engine's queue passes
 * `readHighWaterMark` the socket is not read any more (TCP stalls the server) until the queue
 * drops below `readLowWaterMark`. It sees the handshake's status and headers, and `ping()` works
 * (resolves with the round-trip time). It offers the `setSink` fast path: payloads handed over as
 * views of the read buffer, with the same back-pressure when the sink refuses one.
 *
 * @module
 */

import { connect, type ConnectOptions } from "./tcp_client.ts";
import type { WebSocketConnection } from "./tcp_connection.ts";
import {
  type AdapterConnection,
  type CloseInfo,
  DialError,
  type DialOptions,
  type HandshakeInfo,
  type MessageSink,
  type OutgoingData,
  type WebSocketAdapter,
  type WireMessage,
} from "./types.ts";

class WseAdapterConnection implements AdapterConnection {
  readonly #ws: WebSocketConnection;
  constructor(ws: WebSocketConnection) {
    this.#ws = ws;
  }
  get handshake(): HandshakeInfo {
    return this.#ws.handshake;
  }
  get underlying(): WebSocketConnection {
    return this.#ws;
  }
  poll(): WireMessage | undefined {
    return this.#ws.poll();
  }
  readable(): Promise<void> {
    return this.#ws.readable();
  }
  onReadable(listener: (() => void) | undefined): void {
    this.#ws.onReadable(listener);
  }
  setSink(sink: MessageSink | undefined): void {
    this.#ws.setSink(sink);
  }
  get closed(): Promise<CloseInfo> {
    return this.#ws.closed;
  }
  get isClosed(): boolean {
    return this.#ws.isClosed;
  }
  send(data: OutgoingData): Promise<void> {
    return this.#ws.send(data);
  }
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }
  ping(timeoutMs: number): Promise<number> {
    return this.#ws.ping(timeoutMs);
  }
  close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo> {
    return this.#ws.close(code, reason, timeoutMs);
  }
  terminate(): void {
    this.#ws.terminate();
  }
}

/**
 * The adapter named "wse": dials with our own RFC 6455 client on the runtime's TCP and TLS sockets.
 *
 * @example
 * ```ts
 * import { wseAdapter } from "@wse/engine";
 * const adapter = wseAdapter({ compression: false, pingIntervalMs: 15_000 });
 * const conn = await adapter.dial(new URL("ws://127.0.0.1:8080/"), { handshakeTimeoutMs: 5000 });
 * await conn.send("hello");
 * console.log(await conn.ping(1000), "ms");
 * await conn.close(1000, "bye");
 * ```
 */
export function wseAdapter(defaults: {
  /** Offer permessage-deflate (default true, as browsers and npm:ws do). */
  compression?: boolean;
  /** Resend our close frame if the peer has not answered after this many ms. Default 2000. */
  closeRetryMs?: number;
  /** Drop the socket if the close handshake has not completed after this many ms. Default 10000. */
  closeGiveUpMs?: number;
  /** Send a keep-alive ping this often (ms). Default 0: off (see the engine's `heartbeat`). */
  pingIntervalMs?: number;
  /** Drop the connection when a keep-alive ping gets no pong within this many ms. */
  pongTimeoutMs?: number;
  /** `send()` waits once more than this many bytes are buffered unwritten. Default 1 MiB. */
  writeHighWaterMark?: number;
  /** Waiting `send()`s resolve once the buffer drained below this. Default 256 KiB. */
  writeLowWaterMark?: number;
  /** Extra PEM CA certificates for `wss://` (e.g. a test CA). */
  caCerts?: string[];
} = {}): WebSocketAdapter {
  return {
    name: "wse",
    async dial(url: URL, options: DialOptions): Promise<AdapterConnection> {
      const o: ConnectOptions = {
        ...defaults,
        protocols: options.protocols,
        headers: options.headers,
        handshakeTimeoutMs: options.handshakeTimeoutMs,
        signal: options.signal,
      };
      if (options.maxPayload !== undefined) o.maxPayload = options.maxPayload;
      if (options.readHighWaterMark !== undefined) o.readHighWaterMark = options.readHighWaterMark;
      if (options.readLowWaterMark !== undefined) o.readLowWaterMark = options.readLowWaterMark;
      if (options.maxQueuedBytes !== undefined) o.maxQueuedBytes = options.maxQueuedBytes;
      if (options.onError !== undefined) o.onError = options.onError;
      if (options.overflow !== undefined) o.overflow = options.overflow;
      try {
        return new WseAdapterConnection(await connect(url, o));
      } catch (e) {
        if (e instanceof DialError) throw e;
        throw new DialError(`wse dial failed: ${(e as Error).message}`, { cause: e });
      }
    },
  };
}
