/**
 * {@linkcode WebSocketConnection}: an open RFC 6455 connection on a raw socket. It drives the
 * codec's `ProtocolConnection` over a {@linkcode ByteStream} (a `Deno.Conn` or a `node:net`
 * socket):
 *
 * - **reads**: a loop feeds received bytes to the codec; messages go into an
 *   {@linkcode IncomingQueue}. Above the queue's high watermark the loop stops reading the socket
 *   (TCP back-pressure on the peer) and resumes below the low watermark.
 * - **writes**: `TCP_NODELAY` on, one write per frame, and every frame queued while a write is in
 *   flight goes out in the next single write (header and payload are never split). Without
 *   permessage-deflate, messages of 512 bytes and more are framed straight into recycled buffers
 *   (`tcp_buffers.ts`), so steady traffic does not allocate per message. `send()` is awaitable:
 *   it resolves at once under `writeHighWaterMark` buffered bytes, otherwise once the buffer
 *   drained below `writeLowWaterMark`.
 * - **close**: `close(code, reason)` sends a close frame, resends it after `closeRetryMs` if the peer
 *   has not answered, and drops the socket after `closeGiveUpMs` (Tube's timers; 2 s and 10 s by
 *   default). A peer's close is echoed. A socket that ends without a close frame reports 1006.
 * - **keep-alive** (off unless `pingIntervalMs` is set): a ping every `pingIntervalMs`; if no pong
 *   arrives within `pongTimeoutMs` the peer is presumed dead and the socket is dropped at once,
 *   reported as code 1006 with reason `"keep-alive pong timeout"` (no close handshake is attempted:
 *   a peer that cannot answer a ping cannot answer a close either). The deadline is suspended while
 *   read back-pressure holds the socket unread (a pong cannot be seen then).
 *
 * Every timer is cleared when the connection ends.
 *
 * @module
 */

import { encodeClosePayload } from "../protocol/close.ts";
import type { ProtocolConnection } from "../protocol/connection.ts";
import type { ProtocolError } from "../protocol/errors.ts";
import { encodeFrame, encodeFrameHeader, Opcode } from "../protocol/frames.ts";
import { applyMask, nextMaskKey } from "../protocol/mask.ts";
import { recycleBuffer, takeBuffer } from "./tcp_buffers.ts";
import { deferred, TimeoutError } from "../util/async.ts";
import { IncomingQueue } from "./incoming_queue.ts";
import type { ByteStream, StreamAddr } from "./tcp_stream.ts";
import {
  type CloseInfo,
  ConnectionClosedError,
  type HandshakeInfo,
  type OutgoingData,
  type OverflowPolicy,
  type WireMessage,
} from "./types.ts";

/**
 * Tuning of a {@linkcode WebSocketConnection}; every field has a default.
 *
 * @example
 * ```ts
 * import type { WebSocketConnectionOptions } from "../../mod.ts";
 * const tuning: WebSocketConnectionOptions = {
 *   closeRetryMs: 1000,
 *   closeGiveUpMs: 5000,
 *   pingIntervalMs: 15_000,
 *   pongTimeoutMs: 5000,
 *   writeHighWaterMark: 4 << 20,
 * };
 * console.log(tuning.pingIntervalMs); // 15000
 * ```
 */
export interface WebSocketConnectionOptions {
  /** Resend our close frame if the peer has not answered after this many ms. Default 2000. */
  closeRetryMs?: number;
  /** Drop the socket if the close handshake has not completed after this many ms. Default 10000. */
  closeGiveUpMs?: number;
  /** Send a keep-alive ping this often (ms). Default 0: off. */
  pingIntervalMs?: number;
  /** Drop the connection (1006) when a keep-alive ping gets no pong within this many ms. Default = `pingIntervalMs`. */
  pongTimeoutMs?: number;
  /** `send()` waits once more than this many bytes are buffered unwritten. Default 1 MiB. */
  writeHighWaterMark?: number;
  /** Waiting `send()`s resolve once the buffer drained below this. Default 256 KiB. */
  writeLowWaterMark?: number;
  /** Stop reading the socket once this many bytes of messages are queued unread. Default 1 MiB. */
  readHighWaterMark?: number;
  /** Resume reading below this many queued bytes. Default half of `readHighWaterMark`. */
  readLowWaterMark?: number;
  /** Hard bound on queued unread bytes (a single message bigger than this is still taken). Default 64 MiB. */
  maxQueuedBytes?: number;
  /** Policy past `maxQueuedBytes`. Default "close" (1008). */
  overflow?: OverflowPolicy;
  /** Called for each ping received (the pong is sent automatically). */
  onPing?: (data: Uint8Array) => void;
  /** Called for each pong received. */
  onPong?: (data: Uint8Array) => void;
  /** Read problems that do not end the connection by themselves (a message dropped by `overflow`). */
  onError?: (error: unknown) => void;
}

/**
 * Bytes and messages that went through a connection.
 *
 * @example
 * ```ts
 * import type { ConnectionStats, WebSocketConnection } from "../../mod.ts";
 * function report(ws: WebSocketConnection): void {
 *   const s: ConnectionStats = ws.stats;
 *   console.log(`${s.messagesIn} in (${s.bytesIn} B), ${s.messagesOut} out (${s.bytesOut} B)`);
 * }
 * ```
 */
export interface ConnectionStats {
  /** Bytes read from the socket. */
  readonly bytesIn: number;
  /** Bytes written to the socket. */
  readonly bytesOut: number;
  /** Data messages received. */
  readonly messagesIn: number;
  /** Data messages sent. */
  readonly messagesOut: number;
}

/**
 * Where a connection stands.
 *
 * @example
 * ```ts
 * import type { ConnectionState } from "../../mod.ts";
 * const state: ConnectionState = "closing";
 * console.log(state);
 * ```
 */
export type ConnectionState = "open" | "closing" | "closed";

interface PingWaiter {
  resolve(rtt: number): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout>;
  t0: number;
}

const RESOLVED = Promise.resolve();
const SMALL = 64 * 1024;
/** Data messages from this size (string length or bytes) on are framed into pooled buffers. */
const FAST_MIN = 512;
const UTF8 = new TextEncoder();
const BATCH = 256 * 1024;

/**
 * An open WebSocket connection on a raw socket, made by `connect()` (client) or `serve()` /
 * `handleNodeUpgrade()` (server). Messages are read with `poll()`/`readable()` or
 * `for await`; `send()` is awaitable; `close()` runs the close handshake.
 *
 * @example
 * ```ts
 * import { connect } from "../../mod.ts";
 * const ws = await connect("ws://127.0.0.1:8080/");
 * await ws.send("hello");
 * for await (const message of ws) {
 *   console.log(message.type, message.data);
 *   break;
 * }
 * console.log(await ws.close(1000, "bye"));
 * ```
 */
export class WebSocketConnection implements AsyncIterable<WireMessage> {
  /** What the opening handshake gave (subprotocol, extensions, status, headers). */
  readonly handshake: HandshakeInfo;
  /** "client" (we dialed) or "server" (we accepted). */
  readonly role: "client" | "server";

  readonly #stream: ByteStream;
  readonly #p: ProtocolConnection;
  readonly #queue: IncomingQueue;
  readonly #opts: WebSocketConnectionOptions;
  readonly #writeHigh: number;
  readonly #writeLow: number;

  // writes
  #pending: Uint8Array[] = [];
  /** Parallel to #pending: the pooled buffer under each frame, to recycle once written. */
  #backing: (Uint8Array | null)[] = [];
  /** Data messages are framed here (pooled buffers) instead of by the codec: no deflate. */
  readonly #fastPath: boolean;
  /** A fragmented message opened with sendFrame is still open. */
  #fragOpen = false;
  #pendingBytes = 0;
  #inflight = 0;
  #writing = false;
  #flushScheduled = false;
  /** The pooled buffer of the write in flight, recycled once the write resolved. */
  #spent: Uint8Array | null = null;
  #idleWaiters: (() => void)[] = [];
  #drainWaiters: { resolve(): void; reject(e: unknown): void }[] = [];

  // reads
  #readPaused = false;
  #gate?: () => void;
  #readDone = deferred<void>();

  // close
  #state: ConnectionState = "open";
  #initiator?: "local" | "remote";
  #remoteClose?: { code: number; reason: string };
  #failure?: { code: number; reason: string };
  #info?: CloseInfo;
  #finished = deferred<CloseInfo>();
  #closePromise?: Promise<CloseInfo>;
  #closeFrame?: { code: number; reason: string };
  #retryTimer?: ReturnType<typeof setTimeout>;
  #giveUpTimer?: ReturnType<typeof setTimeout>;
  #eofTimer?: ReturnType<typeof setTimeout>;
  #transportClosing = false;

  // pings
  #pingSeq = 0;
  #pings = new Map<string, PingWaiter>();
  #kaInterval?: ReturnType<typeof setInterval>;
  #kaDeadline?: ReturnType<typeof setTimeout>;

  // stats
  #bytesIn = 0;
  #bytesOut = 0;
  #messagesIn = 0;
  #messagesOut = 0;

  /**
   * Wraps an upgraded socket. Normally called by `connect()`, `serve()` and `handleNodeUpgrade()`;
   * `initial` holds bytes already read past the HTTP head.
   */
  constructor(
    stream: ByteStream,
    protocol: ProtocolConnection,
    init: {
      role: "client" | "server";
      handshake: HandshakeInfo;
      initial?: Uint8Array;
      options?: WebSocketConnectionOptions;
    },
  ) {
    this.#stream = stream;
    this.#p = protocol;
    this.role = init.role;
    this.handshake = init.handshake;
    const o = this.#opts = init.options ?? {};
    this.#writeHigh = o.writeHighWaterMark ?? 1 << 20;
    this.#writeLow = Math.min(o.writeLowWaterMark ?? 256 * 1024, this.#writeHigh);
    const readHigh = o.readHighWaterMark ?? 1 << 20;
    this.#queue = new IncomingQueue({
      highWaterMark: readHigh,
      lowWaterMark: Math.min(o.readLowWaterMark ?? Math.floor(readHigh / 2), readHigh),
      maxQueuedBytes: o.maxQueuedBytes,
      overflow: o.overflow,
      onPause: () => {
        this.#readPaused = true;
      },
      onResume: () => {
        this.#readPaused = false;
        this.#openGate();
      },
      onOverflow: (e) => {
        if (e.policy === "close") this.#fail(1008, "unread messages exceeded maxQueuedBytes");
        else this.#opts.onError?.(e); // a drop is never silent
      },
    });
    this.#fastPath = !/permessage-deflate/i.test(init.handshake.extensions);
    if (init.initial && init.initial.length) this.#feed(init.initial);
    if (o.pingIntervalMs && o.pingIntervalMs > 0) this.#startKeepAlive(o.pingIntervalMs);
    void this.#readLoop();
  }

  /** The subprotocol the handshake selected ("" for none). */
  get protocol(): string {
    return this.handshake.protocol;
  }

  /** The negotiated extensions (`Sec-WebSocket-Extensions` value, "" for none). */
  get extensions(): string {
    return this.handshake.extensions;
  }

  /** Where the connection stands: "open", "closing" (a close frame went out or came in), "closed". */
  get state(): ConnectionState {
    return this.#state;
  }

  /** True once the socket is closed (messages may still be queued). */
  get isClosed(): boolean {
    return this.#state === "closed";
  }

  /** Bytes accepted by `send` and not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#pendingBytes + this.#inflight;
  }

  /** Bytes of received messages waiting to be polled. */
  get queuedBytes(): number {
    return this.#queue.queuedBytes;
  }

  /** True while read back-pressure keeps the socket unread. */
  get readPaused(): boolean {
    return this.#readPaused;
  }

  /** Local socket address, when known. */
  get localAddr(): StreamAddr | undefined {
    return this.#stream.localAddr;
  }

  /** Remote socket address, when known. */
  get remoteAddr(): StreamAddr | undefined {
    return this.#stream.remoteAddr;
  }

  /** Bytes and messages in and out so far. */
  get stats(): ConnectionStats {
    return {
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      messagesIn: this.#messagesIn,
      messagesOut: this.#messagesOut,
    };
  }

  /** Settles once the connection is closed and every queued message was polled. */
  get closed(): Promise<CloseInfo> {
    return this.#queue.closed;
  }

  /** Settles once the socket is closed, whether or not queued messages were polled. */
  get socketClosed(): Promise<CloseInfo> {
    return this.#finished.promise;
  }

  /** Takes the next received message without waiting, or `undefined`. */
  poll(): WireMessage | undefined {
    return this.#queue.poll();
  }

  /** Resolves when `poll()` has a message or the connection has ended. */
  readable(): Promise<void> {
    return this.#queue.readable();
  }

  /**
   * Registers the one function called synchronously each time a message is queued or the stream
   * ends (`undefined` removes it); it may `poll()` from inside the call.
   */
  onReadable(listener: (() => void) | undefined): void {
    this.#queue.listen(listener);
  }

  /** Iterates received messages until the connection ends. */
  async *[Symbol.asyncIterator](): AsyncGenerator<WireMessage, void, undefined> {
    while (true) {
      const m = this.#queue.poll();
      if (m) {
        yield m;
        continue;
      }
      if (this.#queue.ended) return;
      await this.#queue.readable();
    }
  }

  /**
   * Sends a text (string) or binary (bytes) message. Resolves at once while under
   * `writeHighWaterMark` buffered bytes, otherwise once the buffer drained below
   * `writeLowWaterMark`. Rejects with `ConnectionClosedError` once closing or closed.
   */
  send(data: OutgoingData): Promise<void> {
    if (this.#state !== "open" || this.#p.closeSent) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    if (
      this.#fastPath && !this.#fragOpen && data.length >= FAST_MIN &&
      this.#stream.reusableAfterWrite
    ) {
      this.#collect(); // keep order with whatever the codec queued (pongs)
      if (typeof data === "string") this.#enqueueText(data);
      else this.#enqueueBinary(data);
      this.#messagesOut++;
      return this.bufferedAmount <= this.#writeHigh
        ? RESOLVED
        : new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
    }
    try {
      if (typeof data === "string") this.#p.sendText(data);
      else this.#p.sendBinary(data);
    } catch (e) {
      return Promise.reject(e); // e.g. a fragmented message opened with sendFrame is still open
    }
    this.#messagesOut++;
    return this.#afterQueue();
  }

  /**
   * True when {@linkcode WebSocketConnection.sendEncoded} may be used: a server connection with no
   * extension (frames go out unmasked and uncompressed, so one encoding fits every such peer).
   */
  get canSendEncoded(): boolean {
    return this.role === "server" && this.#fastPath && !this.#fragOpen;
  }

  /**
   * Sends one complete data frame the caller encoded (`encodeFrame` from the protocol module), as
   * is: a server frames a broadcast once and hands the same bytes to every connection. The bytes
   * must not change afterwards. Only where {@linkcode WebSocketConnection.canSendEncoded} holds
   * (otherwise rejects with `TypeError`); same back-pressure as `send()`.
   */
  sendEncoded(frame: Uint8Array): Promise<void> {
    if (this.#state !== "open" || this.#p.closeSent) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    if (!this.canSendEncoded) {
      return Promise.reject(
        new TypeError("sendEncoded needs a server connection without extensions"),
      );
    }
    this.#collect(); // keep order with whatever the codec queued (pongs)
    this.#pending.push(frame);
    this.#backing.push(null); // shared by many connections: never recycled
    this.#pendingBytes += frame.length;
    this.#scheduleFlush();
    this.#messagesOut++;
    return this.bufferedAmount <= this.#writeHigh
      ? RESOLVED
      : new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  /**
   * Sends one raw data frame (`Opcode.Text`, `Opcode.Binary` or `Opcode.Continuation`), for
   * fragmented messages: the first fragment carries the type, the rest are continuations, the last
   * has `fin` set. Same back-pressure as `send()`.
   */
  sendFrame(opcode: number, data: Uint8Array, fin: boolean): Promise<void> {
    if (this.#state !== "open" || this.#p.closeSent) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    try {
      this.#p.sendFrame(opcode, data, fin);
    } catch (e) {
      return Promise.reject(e); // out-of-order fragment, reserved opcode, oversized control frame
    }
    if (opcode !== Opcode.Ping && opcode !== Opcode.Pong) this.#fragOpen = !fin;
    if (fin) this.#messagesOut++;
    return this.#afterQueue();
  }

  #afterQueue(): Promise<void> {
    this.#collect();
    if (this.bufferedAmount <= this.#writeHigh) return RESOLVED;
    return new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  /**
   * Sends a ping and resolves with the round-trip time (ms) when its pong arrives. Rejects with
   * `TimeoutError` after `timeoutMs`, with `ConnectionClosedError` if the connection ends first.
   * While read back-pressure holds the socket unread the pong cannot be seen, so poll first.
   */
  ping(timeoutMs = 10_000): Promise<number> {
    if (this.#state !== "open" || this.#p.closeSent) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    const payload = new Uint8Array(8);
    const seq = ++this.#pingSeq;
    new DataView(payload.buffer).setUint32(0, 0x77736570); // "wsep"
    new DataView(payload.buffer).setUint32(4, seq);
    const key = keyOf(payload);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pings.delete(key);
        reject(new TimeoutError("ping", timeoutMs));
      }, timeoutMs);
      this.#pings.set(key, { resolve, reject, timer, t0: performance.now() });
      try {
        this.#p.ping(payload);
      } catch (e) {
        clearTimeout(timer);
        this.#pings.delete(key);
        reject(e);
        return;
      }
      this.#collect();
    });
  }

  /**
   * Starts the close handshake: sends a close frame with `code` and `reason`, resends it after
   * `closeRetryMs`, and drops the socket if the peer has not answered within `timeoutMs` (default
   * `closeGiveUpMs`). Resolves with how the connection ended. Calling it again returns the same
   * promise.
   */
  close(code = 1000, reason = "", timeoutMs?: number): Promise<CloseInfo> {
    if (this.#closePromise) return this.#closePromise;
    this.#closePromise = this.#finished.promise;
    if (this.#state === "closed") return this.#closePromise;
    if (!this.#p.closeSent) {
      try {
        this.#p.close(code, reason);
      } catch (e) {
        this.#closePromise = undefined;
        return Promise.reject(e); // a code that may not be sent, or a reason over 123 bytes
      }
      this.#initiator ??= "local";
      this.#state = "closing";
      this.#closeFrame = { code, reason };
      this.#collect();
      this.#openGate(); // the peer's close must be read even if the consumer is behind
    }
    const retry = this.#opts.closeRetryMs ?? 2000;
    const giveUp = timeoutMs ?? this.#opts.closeGiveUpMs ?? 10_000;
    if (!this.#p.closeReceived && retry > 0 && retry < giveUp) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        const f = this.#closeFrame;
        if (this.#state === "closed" || this.#p.closeReceived || !f) return;
        this.#enqueue([encodeFrame(Opcode.Close, encodeClosePayload(f.code, f.reason), {
          mask: this.role === "client" ? crypto.getRandomValues(new Uint8Array(4)) : undefined,
        })]);
      }, retry);
    }
    this.#giveUpTimer = setTimeout(() => {
      this.#giveUpTimer = undefined;
      this.#end({
        code: 1006,
        reason: "close handshake timed out",
        wasClean: false,
        initiator: this.#initiator ?? "local",
      });
    }, giveUp);
    return this.#closePromise;
  }

  /** Drops the socket at once, without a close handshake (reported as 1006). */
  terminate(): void {
    this.#end({ code: 1006, reason: "terminated", wasClean: false, initiator: "local" });
  }

  // ---- reading ----

  #openGate(): void {
    const g = this.#gate;
    this.#gate = undefined;
    g?.();
  }

  async #readLoop(): Promise<void> {
    try {
      while (this.#state !== "closed") {
        if (this.#holdingBack()) {
          await new Promise<void>((resolve) => (this.#gate = resolve));
          this.#drainEvents(); // what the last read parsed while we were paused comes first
          continue;
        }
        const chunk = await this.#stream.read();
        if (chunk === null) {
          this.#onEof();
          break;
        }
        this.#feed(chunk);
      }
    } finally {
      this.#readDone.resolve();
    }
  }

  #feed(chunk: Uint8Array): void {
    this.#bytesIn += chunk.length;
    try {
      this.#p.receive(chunk);
    } catch (e) {
      // The codec reports bad input as events; anything thrown is a bug we still must not leak.
      this.#fail(1011, e instanceof Error ? e.message : String(e));
      return;
    }
    this.#drainEvents();
  }

  /**
   * True while read back-pressure holds: the consumer is behind and no close is under way (a
   * close must be read even when the consumer is behind).
   */
  #holdingBack(): boolean {
    return this.#readPaused && this.#state === "open" && !this.#p.closeSent;
  }

  #drainEvents(): void {
    const p = this.#p;
    // One socket read can hold many frames. While paused, leave the rest parsed in the codec
    // (bounded by one read) instead of pushing them past the queue's bound: a socket that can
    // stop reading never needs the overflow policy.
    for (let ev = p.nextEvent(); ev; ev = this.#holdingBack() ? undefined : p.nextEvent()) {
      switch (ev.type) {
        case "text":
        case "binary":
          this.#messagesIn++;
          this.#queue.push(ev as WireMessage);
          break;
        case "ping":
          this.#opts.onPing?.(ev.data);
          break;
        case "pong":
          this.#onPong(ev.data);
          break;
        case "close":
          this.#remoteClose = { code: ev.code, reason: ev.reason };
          this.#initiator ??= "remote";
          if (this.#state === "open") this.#state = "closing";
          break;
        case "error":
          this.#onProtocolError(ev.error);
          break;
      }
    }
    this.#collect();
    this.#checkTransport();
  }

  #onPong(data: Uint8Array): void {
    if (this.#kaDeadline !== undefined) {
      clearTimeout(this.#kaDeadline);
      this.#kaDeadline = undefined;
    }
    const w = this.#pings.get(keyOf(data));
    if (w) {
      this.#pings.delete(keyOf(data));
      clearTimeout(w.timer);
      w.resolve(performance.now() - w.t0);
    }
    this.#opts.onPong?.(data);
  }

  #onProtocolError(error: ProtocolError): void {
    this.#failure ??= { code: error.closeCode, reason: error.message };
    this.#initiator ??= "local";
    if (this.#state === "open") this.#state = "closing";
    if (!this.#p.closeSent) this.#p.close(error.closeCode, error.message.slice(0, 120));
  }

  /** Fails the connection ourselves (overflow, internal error): close frame, then drop. */
  #fail(code: number, reason: string): void {
    if (this.#state === "closed") return;
    this.#failure ??= { code, reason };
    this.#initiator ??= "local";
    this.#state = "closing";
    if (!this.#p.closeSent) this.#p.close(code, reason);
    this.#collect();
    this.#transportClosing = true;
    this.#endAfterFlush(1000);
  }

  #onEof(): void {
    if (this.#state === "closed") return;
    if (this.#failure) {
      this.#end({ ...this.#failure, wasClean: false, initiator: "local" });
    } else if (this.#remoteClose && this.#p.closeSent) {
      this.#end({ ...this.#remoteClose, wasClean: true, initiator: this.#initiator ?? "remote" });
    } else {
      this.#end({
        code: 1006,
        reason: "",
        wasClean: false,
        initiator: this.#initiator === "local" ? "local" : "drop",
      });
    }
  }

  /** After events: close the socket once the codec says the close handshake is over. */
  #checkTransport(): void {
    if (this.#transportClosing) return;
    if (this.#failure) {
      this.#transportClosing = true;
      this.#endAfterFlush(1000);
      return;
    }
    if (!(this.#p.closeSent && this.#p.closeReceived)) return;
    this.#transportClosing = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.role === "server") {
      void this.#closeAfterFlush();
    } else {
      // RFC 6455 §7.1.1: the server closes TCP first; give it a moment, then close ourselves.
      this.#endAfterFlush(2000);
    }
  }

  /**
   * Once our frames are written, waits up to `ms` (at most `closeRetryMs`) for the peer to hang
   * up, reading and discarding what it still sends, then closes. After failing a connection this
   * matters: closing with the peer's frames still arriving resets the connection (RST), and the
   * peer would never read our close code.
   */
  #endAfterFlush(ms: number): void {
    void this.#writeIdleNow().then(() => {
      if (this.#state === "closed") return;
      this.#eofTimer = setTimeout(() => {
        this.#eofTimer = undefined;
        this.#onEof();
      }, Math.min(this.#opts.closeRetryMs ?? 2000, ms));
    });
  }

  async #closeAfterFlush(): Promise<void> {
    await this.#writeIdleNow();
    this.#onEof();
  }

  #writeIdleNow(): Promise<void> {
    if (!this.#writing && this.#pending.length === 0) return RESOLVED;
    this.#scheduleFlush();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  // ---- writing ----

  #collect(): void {
    const out = this.#p.takeOutgoing();
    if (out.length) this.#enqueue(out);
  }

  #enqueue(frames: Uint8Array[]): void {
    if (this.#state === "closed") return;
    for (const f of frames) {
      this.#pending.push(f);
      this.#backing.push(null);
      this.#pendingBytes += f.length;
    }
    this.#scheduleFlush();
  }

  /** One text frame, UTF-8 encoded straight into a pooled buffer behind room for the header. */
  #enqueueText(text: string): void {
    const room = this.role === "client" ? 14 : 10;
    const backing = takeBuffer(room + text.length * 3);
    const { written } = UTF8.encodeInto(text, backing.subarray(room));
    const mask = this.role === "client" ? nextMaskKey() : undefined;
    const header = encodeFrameHeader(Opcode.Text, written, { mask });
    const start = room - header.length;
    backing.set(header, start);
    const frame = backing.subarray(start, room + written);
    if (mask) applyMask(frame.subarray(header.length), mask);
    this.#pending.push(frame);
    this.#backing.push(backing);
    this.#pendingBytes += frame.length;
    this.#scheduleFlush();
  }

  /** One binary frame, encoded into a pooled buffer (masked with a fresh key on the client). */
  #enqueueBinary(data: Uint8Array): void {
    const mask = this.role === "client" ? nextMaskKey() : undefined;
    const header = encodeFrameHeader(Opcode.Binary, data.length, { mask });
    const size = header.length + data.length;
    const backing = takeBuffer(size);
    backing.set(header);
    backing.set(data, header.length);
    const frame = backing.subarray(0, size);
    if (mask) applyMask(frame.subarray(header.length), mask);
    this.#pending.push(frame);
    this.#backing.push(backing);
    this.#pendingBytes += size;
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#writing || this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => void this.#writeLoop());
  }

  async #writeLoop(): Promise<void> {
    this.#flushScheduled = false;
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#pending.length && this.#state !== "closed") {
        const buf = this.#takeBatch();
        await this.#stream.write(buf);
        const spent = this.#spent;
        this.#spent = null;
        if (spent) recycleBuffer(spent); // the runtime is done with it
        this.#bytesOut += buf.length;
        this.#inflight = 0;
        this.#wakeDrainWaiters();
      }
    } catch {
      this.#spent = null;
      this.#inflight = 0;
      this.#pending = [];
      this.#backing = [];
      this.#pendingBytes = 0;
      if (this.#state !== "closed") this.#onEof(); // broken pipe: the peer is gone
    } finally {
      this.#writing = false;
      if (this.#idleWaiters.length) {
        const ws = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const w of ws) w();
      }
    }
  }

  /** The next write: one big frame alone, or small frames coalesced into one buffer. */
  #takeBatch(): Uint8Array {
    const first = this.#pending[0];
    let n = 1;
    let total = first.length;
    if (first.length < SMALL) {
      while (n < this.#pending.length) {
        const next = this.#pending[n];
        if (total + next.length > BATCH) break;
        total += next.length;
        n++;
      }
    }
    const chunks = this.#pending.splice(0, n);
    const backings = this.#backing.splice(0, n);
    this.#pendingBytes -= total;
    this.#inflight = total;
    if (n === 1) {
      this.#spent = backings[0];
      return first;
    }
    const batch = takeBuffer(total);
    let off = 0;
    for (let i = 0; i < n; i++) {
      batch.set(chunks[i], off);
      off += chunks[i].length;
      const b = backings[i];
      if (b) recycleBuffer(b); // copied: free at once
    }
    this.#spent = this.#stream.reusableAfterWrite ? batch : null;
    return batch.subarray(0, total);
  }

  #wakeDrainWaiters(): void {
    if (this.#drainWaiters.length === 0 || this.bufferedAmount > this.#writeLow) return;
    const ws = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of ws) w.resolve();
  }

  // ---- keep-alive ----

  #startKeepAlive(interval: number): void {
    const timeout = this.#opts.pongTimeoutMs ?? interval;
    this.#kaInterval = setInterval(() => {
      if (this.#state !== "open" || this.#kaDeadline !== undefined || this.#readPaused) return;
      this.#p.ping(new TextEncoder().encode("wse-keepalive"));
      this.#collect();
      this.#kaDeadline = setTimeout(() => this.#onPongDeadline(timeout), timeout);
    }, interval);
  }

  #onPongDeadline(timeout: number): void {
    this.#kaDeadline = undefined;
    if (this.#state === "closed") return;
    if (this.#readPaused) {
      // We are not reading, so we cannot know: wait again.
      this.#kaDeadline = setTimeout(() => this.#onPongDeadline(timeout), timeout);
      return;
    }
    this.#end({
      code: 1006,
      reason: "keep-alive pong timeout",
      wasClean: false,
      initiator: "drop",
    });
  }

  // ---- the end ----

  /** Ends the connection exactly once: timers cleared, socket closed, waiters settled. */
  #end(info: CloseInfo): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#info = info;
    for (const t of [this.#retryTimer, this.#giveUpTimer, this.#eofTimer, this.#kaDeadline]) {
      if (t !== undefined) clearTimeout(t);
    }
    if (this.#kaInterval !== undefined) clearInterval(this.#kaInterval);
    this.#retryTimer =
      this.#giveUpTimer =
      this.#eofTimer =
      this.#kaDeadline =
        undefined;
    this.#kaInterval = undefined;
    this.#stream.close();
    this.#p.receiveEof(); // frees the codec's zlib streams
    this.#openGate();
    const closedError = new ConnectionClosedError("the connection is closed", info);
    for (const [, w] of this.#pings) {
      clearTimeout(w.timer);
      w.reject(closedError);
    }
    this.#pings.clear();
    const ws = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of ws) w.reject(closedError);
    this.#pending = [];
    this.#backing = [];
    this.#pendingBytes = 0;
    // Settle only once the read and write loops have returned, so no op outlives the connection.
    const writeDone = this.#writing
      ? new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
      : RESOLVED;
    void Promise.all([this.#readDone.promise, writeDone]).then(() => {
      this.#queue.end(info);
      this.#finished.resolve(info);
    });
  }
}

function keyOf(data: Uint8Array): string {
  let s = "";
  for (let i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}
