/**
 * {@linkcode WebSocketConnection}: an open RFC 6455 connection on a raw socket. It drives the
 * codec's `ProtocolConnection` over a {@linkcode ByteStream} (a `Deno.Conn` or a `node:net`
 * socket) and keeps to three jobs: the read loop, the write loop and the timers. The codec owns
 * framing and every bit of close state (who started it, both close frames, failures, how the
 * connection ended).
 *
 * - **reads**: the loop reads the socket into the stream's reused buffer and lends it to the codec
 *   (`receiveRaw`), which hands each data message over as it is parsed. Messages go into an
 *   {@linkcode IncomingQueue} (small payloads copied out, big ones handed over, text decoded), or,
 *   while a {@linkcode MessageSink} is set (`setSink`), straight to it as views of the read
 *   buffer: no object, no string, no copy per message. Above the queue's high watermark, or when
 *   the sink refuses a message, the rest of the read is kept (copied, in order) and the socket is
 *   not read (TCP back-pressure on the peer) until the queue drops below its low watermark or the
 *   sink's `writable()` resolves; the kept messages go first.
 * - **writes**: `TCP_NODELAY` on, one write per frame, and every frame queued while a write is in
 *   flight goes out in the next single write (header and payload are never split). Messages of
 *   512 bytes and more are framed by the codec straight into recycled buffers (`tcp_buffers.ts`,
 *   `sendMessageInto`), so steady traffic does not allocate per message. `send()` is awaitable:
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
 * A connection has no timer of its own: its earliest deadline (keep-alive, pong, close resend and
 * give-up, `ping()` timeouts) sits on the one shared timer of `deadlines.ts`, and is cancelled when
 * the connection ends. An idle connection holds little else: a 512-byte read buffer, the codec,
 * and what its user asked for (queue, promises, lists are made on first use).
 *
 * @module
 */

import type { ProtocolConnection } from "../protocol/connection.ts";
import { decodeUtf8 } from "../protocol/utf8.ts";
import { TimeoutError } from "../util/async.ts";
import { Deadline } from "./deadlines.ts";
import { IncomingQueue, type IncomingQueueOptions } from "./incoming_queue.ts";
import { KeptMessages } from "./kept_messages.ts";
import { recycleBuffer, takeBuffer } from "./tcp_buffers.ts";
import type { ByteStream, StreamAddr } from "./tcp_stream.ts";
import {
  type CloseInfo,
  ConnectionClosedError,
  type HandshakeInfo,
  type MessageSink,
  type OutgoingData,
  type OverflowPolicy,
  type ReadOverflowError,
  type WireMessage,
} from "./types.ts";

/**
 * Tuning of a {@linkcode WebSocketConnection}; every field has a default.
 *
 * @example
 * ```ts
 * import type { WebSocketConnectionOptions } from "@wse/engine/transport";
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
 * import type { ConnectionStats, WebSocketConnection } from "@wse/engine/transport";
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
 * import type { ConnectionState } from "@wse/engine/transport";
 * const state: ConnectionState = "closing";
 * console.log(state);
 * ```
 */
export type ConnectionState = "open" | "closing" | "closed";

interface PingWaiter {
  resolve(rtt: number): void;
  reject(e: unknown): void;
  t0: number;
  by: number;
  timeoutMs: number;
}

const RESOLVED = Promise.resolve();
const SMALL = 64 * 1024;
/** Data messages from this size (string length or bytes) on are framed into pooled buffers. */
const POOLED_MIN = 512;
const UTF8 = new TextEncoder();
const BATCH = 256 * 1024;
const KEEPALIVE = UTF8.encode("wse-keepalive");

// Binary payloads queued for poll() are copied out of the read buffer; small ones into a slab
// shared by every connection of this isolate (as Node's Buffer pool does): one ArrayBuffer per
// 64 KiB of small messages instead of one per message, which keeps V8's external-memory GCs (and
// their latency spikes) rare. A view handed out pins its slab.
const SLAB_SIZE = 64 * 1024;
const SLAB_MAX_COPY = 4 * 1024;
/**
 * Binary payloads from this size on are queued without a copy: views of the read buffer itself,
 * which the stream is then told not to reuse (`retain()`), so one buffer per read instead of one
 * per message; or buffers the codec never writes to again (see `receiveRaw`). A queued view pins
 * its read buffer (up to 256 KiB, so at most 32x the payload).
 */
const HAND_OVER = 8 * 1024;
let slab = new Uint8Array(SLAB_SIZE);
let slabOffset = 0;

function copyOut(src: Uint8Array): Uint8Array {
  const n = src.length;
  if (n > SLAB_MAX_COPY) return src.slice();
  if (slabOffset + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabOffset = 0;
  }
  const out = slab.subarray(slabOffset, slabOffset + n);
  out.set(src);
  slabOffset += (n + 7) & ~7; // keep views 8-byte aligned
  return out;
}

// Set by WebSocketConnection's static block: how QueueHooks reach two of its private methods.
let offerKeptOf: (ws: WebSocketConnection) => void;
let failOf: (ws: WebSocketConnection, code: number, reason: string) => void;

/** Connections with frames to write, flushed together at the end of the turn. */
let FLUSHING: WebSocketConnection[] = [];
let flushOne: (ws: WebSocketConnection) => void;

function flushAll(): void {
  // Connections listed while this runs go into the next round (their own microtask).
  const list = FLUSHING;
  FLUSHING = [];
  for (let i = 0; i < list.length; i++) flushOne(list[i]);
}

/**
 * An open WebSocket connection on a raw socket, made by `connect()` (client) or `serve()` /
 * `handleNodeUpgrade()` (server). Messages are read with `poll()`/`readable()` or
 * `for await`, or handed to a {@linkcode MessageSink} (`setSink`); `send()` is awaitable;
 * `close()` runs the close handshake.
 *
 * @example
 * ```ts
 * import { connect } from "@wse/engine/transport";
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
  readonly #opts: WebSocketConnectionOptions;
  #queue: IncomingQueue | undefined;
  #listener: (() => void) | undefined;

  // writes
  #pending: Uint8Array[] | undefined;
  /** Parallel to #pending: the pooled buffer under each frame, to recycle once written. */
  #backing: (Uint8Array | null)[] | undefined;
  /** The pooled buffer the codec framed the last message into (see `send`). */
  #taken: Uint8Array | undefined;
  #takeBufferFn: ((size: number) => Uint8Array) | undefined;
  #pendingBytes = 0;
  #inflight = 0;
  #writing = false;
  #flushScheduled = false;
  #writingBytes = 0;
  #wroteFn: (() => void) | undefined;
  #writeFailedFn: (() => void) | undefined;
  /** The pooled buffer of the write in flight, recycled once the write resolved. */
  #spent: Uint8Array | null = null;
  #idleWaiters: (() => void)[] | undefined;
  #drainWaiters: { resolve(): void; reject(e: unknown): void }[] | undefined;

  // reads
  /** A `read()` is in flight. */
  #reading = false;
  #sink: MessageSink | undefined;
  /** Bumped when the sink changes: a stale `writable()` must not offer anything. */
  #sinkEpoch = 0;
  #awaitingSink = false;
  /** Messages the queue or the sink could not take yet, in order; reading waits for them. */
  #kept: KeptMessages | undefined;
  #offering = false;
  /** The memory of the bytes being parsed, and whether views of it may be queued as they are. */
  #readBuffer: ArrayBufferLike | undefined;
  #readKept = false;
  #onReadFn: ((chunk: Uint8Array | null) => void) | undefined;
  #onDataFn: ((text: boolean, payload: Uint8Array) => void) | undefined;
  #takeFn: ((text: boolean, payload: Uint8Array) => boolean) | undefined;

  // the end
  /** The socket is closed (the codec has the outcome). */
  #ended = false;
  /** ... and the read and write loops have returned: `socketClosed` settles. */
  #settled = false;
  #info: CloseInfo | undefined;
  #finished: Promise<CloseInfo> | undefined;
  #resolveFinished: ((info: CloseInfo) => void) | undefined;
  #closePromise: Promise<CloseInfo> | undefined;
  #onSettled: ((ws: WebSocketConnection, info: CloseInfo) => void) | undefined;
  #transportClosing = false;

  // timers: the earliest of these is the connection's one deadline on the shared timer (times in
  // performance.now() ms; 0 = not set, a small integer, so an idle connection boxes no doubles)
  #deadline: Deadline | undefined;
  #retryAt = 0;
  #giveUpAt = 0;
  #eofAt = 0;
  #pingAt = 0;
  #pongBy = 0;
  #pingSeq = 0;
  #pings: Map<string, PingWaiter> | undefined;

  // stats
  #bytesIn = 0;
  #bytesOut = 0;
  #messagesIn = 0;
  #messagesOut = 0;

  /**
   * Wraps an upgraded socket. Normally called by `connect()`, `serve()` and `handleNodeUpgrade()`;
   * `initial` holds bytes already read past the HTTP head; `onSettled` is called once, when
   * `socketClosed` settles (a server uses one function for all its connections instead of a
   * promise and a callback each).
   */
  constructor(
    stream: ByteStream,
    protocol: ProtocolConnection,
    init: {
      role: "client" | "server";
      handshake: HandshakeInfo;
      initial?: Uint8Array;
      options?: WebSocketConnectionOptions;
      onSettled?: (ws: WebSocketConnection, info: CloseInfo) => void;
    },
  ) {
    this.#stream = stream;
    this.#p = protocol;
    this.role = init.role;
    this.handshake = init.handshake;
    this.#onSettled = init.onSettled;
    const o = this.#opts = init.options ?? {};
    if (init.initial && init.initial.length) this.#feed(init.initial, true);
    if (o.pingIntervalMs && o.pingIntervalMs > 0) {
      this.#pingAt = performance.now() + o.pingIntervalMs;
      this.#arm();
    }
    this.#pump();
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
    if (this.#ended) return "closed";
    return this.#p.state === "open" ? "open" : "closing";
  }

  /** True once the socket is closed (messages may still be queued). */
  get isClosed(): boolean {
    return this.#ended;
  }

  /** Bytes accepted by `send` and not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#pendingBytes + this.#inflight;
  }

  /** Bytes of received messages waiting to be polled. */
  get queuedBytes(): number {
    return this.#queue?.queuedBytes ?? 0;
  }

  /** True while read back-pressure keeps the socket unread. */
  get readPaused(): boolean {
    if (this.#kept !== undefined && this.#kept.length > 0) return true;
    return this.#sink === undefined && this.#queue !== undefined && this.#queue.paused;
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

  /** Settles once the connection is closed and every received message was polled or delivered. */
  get closed(): Promise<CloseInfo> {
    return this.#q().closed;
  }

  /** Settles once the socket is closed, whether or not queued messages were polled. */
  get socketClosed(): Promise<CloseInfo> {
    if (this.#finished === undefined) {
      this.#finished = this.#settled
        ? Promise.resolve(this.#info!)
        : new Promise<CloseInfo>((resolve) => (this.#resolveFinished = resolve));
    }
    return this.#finished;
  }

  /** Takes the next received message without waiting, or `undefined`. */
  poll(): WireMessage | undefined {
    return this.#queue?.poll();
  }

  /** Resolves when `poll()` has a message or the connection has ended. */
  readable(): Promise<void> {
    return this.#q().readable();
  }

  /**
   * Registers the one function called synchronously each time a message is queued or the stream
   * ends (`undefined` removes it); it may `poll()` from inside the call.
   */
  onReadable(listener: (() => void) | undefined): void {
    this.#listener = listener;
    if (listener !== undefined || this.#queue !== undefined) this.#q().listen(listener);
  }

  /**
   * Sets the fast path (`undefined` goes back to the queue): while a sink is set, every data
   * message goes to `sink.deliver(text, payload)` synchronously as it is parsed, with `payload` a
   * view of the read buffer valid only during the call and text as validated UTF-8 bytes. Messages
   * already queued (or kept) are delivered first. When `deliver` returns false, that message and
   * the rest of the read are kept (copied) in order, the socket is not read (TCP back-pressure),
   * and once `sink.writable()` resolves the kept messages are offered again before reading
   * resumes. `closed` settles once the socket closed and nothing is left undelivered. A throw from
   * the sink (or a rejected `writable()`) closes the connection with 1011.
   */
  setSink(sink: MessageSink | undefined): void {
    if (sink === this.#sink) return;
    const queue = this.#queue;
    if (sink !== undefined && queue !== undefined && queue.length > 0) {
      // Queued messages are older than kept ones: both go to the sink, queued first. (Polling may
      // move kept messages into the queue behind them; any left are appended after.)
      const moved = new KeptMessages();
      for (let m = queue.poll(); m !== undefined; m = queue.poll()) {
        moved.push(m.type === "text", m.type === "text" ? UTF8.encode(m.data) : m.data);
      }
      this.#kept?.offer((text, payload) => (moved.push(text, payload), true));
      this.#kept = moved;
    }
    this.#sink = sink;
    this.#sinkEpoch++;
    this.#awaitingSink = false;
    this.#offerKept();
  }

  /** Iterates received messages until the connection ends. */
  async *[Symbol.asyncIterator](): AsyncGenerator<WireMessage, void, undefined> {
    const queue = this.#q();
    while (true) {
      const m = queue.poll();
      if (m) {
        yield m;
        continue;
      }
      if (queue.ended) return;
      await queue.readable();
    }
  }

  /**
   * Sends a text (string) or binary (bytes) message. Resolves at once while under
   * `writeHighWaterMark` buffered bytes, otherwise once the buffer drained below
   * `writeLowWaterMark`. Rejects with `ConnectionClosedError` once closing or closed.
   */
  send(data: OutgoingData): Promise<void> {
    if (this.#ended || !this.#p.canSend) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    if (data.length >= POOLED_MIN && this.#stream.reusableAfterWrite) {
      this.#collect(); // keep order with whatever the codec queued (pongs)
      let frame;
      try {
        frame = this.#p.sendMessageInto(
          data,
          this.#takeBufferFn ??= (size) => (this.#taken = takeBuffer(size)),
        );
      } catch (e) {
        return Promise.reject(e); // e.g. a fragmented message opened with sendFrame is still open
      }
      this.#push(frame, this.#taken!);
      this.#taken = undefined;
      this.#messagesOut++;
      return this.#afterQueue();
    }
    try {
      if (typeof data === "string") this.#p.sendText(data);
      else this.#p.sendBinary(data);
    } catch (e) {
      return Promise.reject(e); // e.g. a fragmented message opened with sendFrame is still open
    }
    this.#messagesOut++;
    this.#collect();
    return this.#afterQueue();
  }

  /**
   * True when {@linkcode WebSocketConnection.sendEncoded} may be used: a server connection with no
   * extension (frames go out unmasked and uncompressed, so one encoding fits every such peer).
   */
  get canSendEncoded(): boolean {
    return this.role === "server" && !this.#p.fragmenting &&
      !/permessage-deflate/i.test(this.handshake.extensions);
  }

  /**
   * Sends one complete data frame the caller encoded (`encodeFrame` from the protocol module), as
   * is: a server frames a broadcast once and hands the same bytes to every connection. The bytes
   * must not change afterwards. Only where {@linkcode WebSocketConnection.canSendEncoded} holds
   * (otherwise rejects with `TypeError`); same back-pressure as `send()`.
   */
  sendEncoded(frame: Uint8Array): Promise<void> {
    if (this.#ended || !this.#p.canSend) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    if (!this.canSendEncoded) {
      return Promise.reject(
        new TypeError("sendEncoded needs a server connection without extensions"),
      );
    }
    this.#collect(); // keep order with whatever the codec queued (pongs)
    this.#enqueue([frame]); // shared by many connections: never recycled
    this.#messagesOut++;
    return this.#afterQueue();
  }

  /**
   * Sends one raw data frame (`Opcode.Text`, `Opcode.Binary` or `Opcode.Continuation`), for
   * fragmented messages: the first fragment carries the type, the rest are continuations, the last
   * has `fin` set. Same back-pressure as `send()`.
   */
  sendFrame(opcode: number, data: Uint8Array, fin: boolean): Promise<void> {
    if (this.#ended || !this.#p.canSend) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    try {
      this.#p.sendFrame(opcode, data, fin);
    } catch (e) {
      return Promise.reject(e); // out-of-order fragment, reserved opcode, oversized control frame
    }
    if (fin) this.#messagesOut++;
    this.#collect();
    return this.#afterQueue();
  }

  #afterQueue(): Promise<void> {
    if (this.bufferedAmount <= (this.#opts.writeHighWaterMark ?? 1 << 20)) return RESOLVED;
    return new Promise<void>((resolve, reject) =>
      (this.#drainWaiters ??= []).push({ resolve, reject })
    );
  }

  /**
   * Sends a ping and resolves with the round-trip time (ms) when its pong arrives; rejects with
   * a `TimeoutError` after `timeoutMs`, or a `ConnectionClosedError` if the connection ends
   * first.
   */
  ping(timeoutMs = 10_000): Promise<number> {
    if (this.#ended || !this.#p.canSend) {
      return Promise.reject(new ConnectionClosedError("the connection is closing", this.#info));
    }
    const payload = new Uint8Array(8);
    const seq = ++this.#pingSeq;
    new DataView(payload.buffer).setUint32(0, 0x77736570); // "wsep"
    new DataView(payload.buffer).setUint32(4, seq);
    return new Promise<number>((resolve, reject) => {
      try {
        this.#p.ping(payload);
      } catch (e) {
        reject(e);
        return;
      }
      const t0 = performance.now();
      (this.#pings ??= new Map()).set(keyOf(payload), {
        resolve,
        reject,
        t0,
        by: t0 + timeoutMs,
        timeoutMs,
      });
      this.#collect();
      this.#arm();
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
    if (this.#ended) return this.#closePromise = this.socketClosed;
    const p = this.#p;
    if (!p.closeSent) {
      try {
        p.close(code, reason);
      } catch (e) {
        return Promise.reject(e); // a code that may not be sent, or a reason over 123 bytes
      }
      this.#collect();
      this.#pump(); // the peer's close must be read even if the consumer is behind
    }
    this.#closePromise = this.socketClosed;
    const now = performance.now();
    const retry = this.#opts.closeRetryMs ?? 2000;
    const giveUp = timeoutMs ?? this.#opts.closeGiveUpMs ?? 10_000;
    if (!p.closeReceived && retry > 0 && retry < giveUp) this.#retryAt = now + retry;
    this.#giveUpAt = now + giveUp;
    this.#arm();
    return this.#closePromise;
  }

  /** Drops the socket at once, without a close handshake (reported as 1006). */
  terminate(): void {
    this.#finish("terminated", "local");
  }

  // ---- reading ----

  /** The queue, made on first use. */
  #q(): IncomingQueue {
    if (this.#queue !== undefined) return this.#queue;
    const queue = this.#queue = new IncomingQueue(new QueueHooks(this, this.#opts));
    if (this.#listener !== undefined) queue.listen(this.#listener);
    if (this.#settled && !(this.#kept !== undefined && this.#kept.length > 0)) {
      queue.end(this.#info!);
    }
    return queue;
  }

  /** Starts the next read unless one is in flight, the socket closed, or back-pressure holds. */
  #pump(): void {
    if (this.#reading || this.#ended || this.#holdingBack()) return;
    this.#reading = true;
    this.#stream.read(this.#onReadFn ??= (chunk) => this.#onRead(chunk));
  }

  #onRead(chunk: Uint8Array | null): void {
    this.#reading = false;
    if (this.#ended) return this.#settle(); // closed under the read
    if (chunk === null) return this.#finish();
    this.#feed(chunk, false);
    this.#pump();
  }

  /** Parses bytes: the stream's reused read buffer, or (`owned`) bytes nobody else holds. */
  #feed(chunk: Uint8Array, owned: boolean): void {
    this.#bytesIn += chunk.length;
    this.#readBuffer = chunk.buffer;
    this.#readKept = owned;
    try {
      // A throw from the sink comes back as a 1011 error event.
      this.#p.receiveRaw(chunk, this.#onDataFn ??= (text, payload) => this.#onData(text, payload));
    } finally {
      this.#readBuffer = undefined;
    }
    this.#afterEvents();
  }

  /** Each data message, as the codec parses it (`payload` is a view of the read buffer). */
  #onData(text: boolean, payload: Uint8Array): void {
    this.#messagesIn++;
    const kept = this.#kept;
    if ((kept === undefined || kept.length === 0) && this.#take(text, payload)) return;
    // A read can hold many messages: past the queue's high watermark or a refusal, the rest of
    // it waits here, in order, instead of going past the bound (a socket that can stop reading
    // never needs the overflow policy).
    (this.#kept ??= new KeptMessages()).push(text, payload);
  }

  /** Hands one message to the sink or the queue; false when it cannot be taken now. */
  #take(text: boolean, payload: Uint8Array): boolean {
    const sink = this.#sink;
    if (sink !== undefined) {
      if (sink.deliver(text, payload)) return true;
      this.#awaitSink(sink);
      return false;
    }
    const queue = this.#q();
    if (queue.paused) return false;
    if (text) {
      queue.push({ type: "text", data: decodeUtf8(payload) });
    } else if (payload.length >= HAND_OVER && !this.#offering) {
      // From the codec (kept messages are views of a buffer that is reused: copied below).
      if (payload.buffer === this.#readBuffer && !this.#readKept) {
        this.#stream.retain();
        this.#readKept = true;
      }
      queue.push({ type: "binary", data: payload });
    } else {
      queue.push({ type: "binary", data: copyOut(payload) });
    }
    return true;
  }

  #awaitSink(sink: MessageSink): void {
    if (this.#awaitingSink) return;
    this.#awaitingSink = true;
    const epoch = this.#sinkEpoch;
    sink.writable().then(
      () => {
        if (epoch !== this.#sinkEpoch) return;
        this.#awaitingSink = false;
        this.#offerKept();
      },
      (e) => {
        if (epoch !== this.#sinkEpoch) return;
        this.#awaitingSink = false;
        this.#fail(1011, `message sink failed: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  }

  /**
   * Offers the kept messages again; once all were taken, reading resumes (and, after the socket
   * closed, the queue ends so `closed` can settle).
   */
  #offerKept(): void {
    if (this.#offering) return; // the outer call goes on offering, in order
    const kept = this.#kept;
    if (kept !== undefined && kept.length > 0) {
      this.#offering = true;
      try {
        if (!kept.offer(this.#takeFn ??= (text, payload) => this.#take(text, payload))) return;
      } catch (e) {
        this.#fail(1011, `message sink failed: ${e instanceof Error ? e.message : String(e)}`);
        return;
      } finally {
        this.#offering = false;
      }
    }
    if (this.#settled) this.#queue?.end(this.#info!);
    this.#pump();
  }

  /**
   * True while read back-pressure holds: the consumer is behind and no close is under way (a
   * close must be read even when the consumer is behind).
   */
  #holdingBack(): boolean {
    return this.readPaused && this.#p.canSend;
  }

  /** After the codec ran: pings, pongs, and whether the socket should close now. */
  #afterEvents(): void {
    const p = this.#p;
    for (let ev = p.nextEvent(); ev; ev = p.nextEvent()) {
      if (ev.type === "ping") this.#opts.onPing?.(ev.data);
      else if (ev.type === "pong") this.#onPong(ev.data);
      // Data comes through #onData; the close and errors are the codec's state.
    }
    this.#collect();
    this.#checkTransport();
  }

  static {
    offerKeptOf = (ws) => ws.#offerKept();
    failOf = (ws, code, reason) => ws.#fail(code, reason);
  }

  #onPong(data: Uint8Array): void {
    if (this.#pongBy !== 0) {
      this.#pongBy = 0;
      this.#arm();
    }
    const pings = this.#pings;
    const w = pings?.get(keyOf(data));
    if (w) {
      pings!.delete(keyOf(data));
      w.resolve(performance.now() - w.t0);
    }
    this.#opts.onPong?.(data);
  }

  /** Fails the connection ourselves (overflow, broken sink): close frame, then drop. */
  #fail(code: number, reason: string): void {
    if (this.#ended) return;
    this.#p.fail(code, reason);
    this.#afterEvents();
  }

  /** Closes the socket once the codec says the close handshake (or a failure) is over. */
  #checkTransport(): void {
    if (this.#transportClosing || this.#ended) return;
    const p = this.#p;
    if (p.error) {
      this.#transportClosing = true;
      this.#endAfterFlush(1000);
      return;
    }
    if (!(p.closeSent && p.closeReceived)) return;
    this.#transportClosing = true;
    this.#retryAt = 0;
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
      if (this.#ended) return;
      this.#eofAt = performance.now() + Math.min(this.#opts.closeRetryMs ?? 2000, ms);
      this.#arm();
    });
  }

  async #closeAfterFlush(): Promise<void> {
    await this.#writeIdleNow();
    this.#finish();
  }

  #writeIdleNow(): Promise<void> {
    if (!this.#writing && !this.#pending?.length) return RESOLVED;
    this.#scheduleFlush();
    return new Promise<void>((resolve) => (this.#idleWaiters ??= []).push(resolve));
  }

  // ---- writing ----

  #collect(): void {
    const out = this.#p.takeOutgoing();
    if (out.length) this.#enqueue(out);
  }

  #enqueue(frames: Uint8Array[]): void {
    if (this.#ended) return;
    const pending = this.#pending ??= [];
    const backing = this.#backing ??= [];
    for (const f of frames) {
      pending.push(f);
      backing.push(null);
      this.#pendingBytes += f.length;
    }
    this.#scheduleFlush();
  }

  #push(frame: Uint8Array, backing: Uint8Array): void {
    (this.#pending ??= []).push(frame);
    (this.#backing ??= []).push(backing);
    this.#pendingBytes += frame.length;
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#writing || this.#flushScheduled) return;
    this.#flushScheduled = true;
    // One microtask flushes every connection written to in this turn: a broadcast to 10,000
    // connections queues one, and each connection's sends of the turn go out as one write.
    FLUSHING.push(this);
    if (FLUSHING.length === 1) queueMicrotask(flushAll);
  }

  static {
    flushOne = (ws) => ws.#flushNow();
  }

  /** Starts writing what is pending (from the shared flush). */
  #flushNow(): void {
    this.#flushScheduled = false;
    if (this.#writing) return;
    this.#writing = true;
    this.#writeNext();
  }

  // A chain of callbacks, not an async loop: no generator or promise of ours per write.
  #writeNext(): void {
    if (!this.#pending?.length || this.#ended) {
      this.#writeIdle();
      return;
    }
    const buf = this.#takeBatch();
    this.#writingBytes = buf.length;
    this.#stream.write(buf).then(
      this.#wroteFn ??= () => this.#wrote(),
      this.#writeFailedFn ??= () => this.#writeFailed(),
    );
  }

  #wrote(): void {
    const spent = this.#spent;
    this.#spent = null;
    if (spent) recycleBuffer(spent); // the runtime is done with it
    this.#bytesOut += this.#writingBytes;
    this.#inflight = 0;
    this.#wakeDrainWaiters();
    this.#writeNext();
  }

  #writeFailed(): void {
    this.#spent = null;
    this.#inflight = 0;
    this.#pending = this.#backing = undefined;
    this.#pendingBytes = 0;
    this.#finish(); // broken pipe: the peer is gone
    this.#writeIdle();
  }

  #writeIdle(): void {
    this.#writing = false;
    if (this.#pending?.length === 0) this.#pending = this.#backing = undefined;
    const ws = this.#idleWaiters;
    this.#idleWaiters = undefined;
    if (ws) { for (const w of ws) w(); }
    this.#settle();
  }

  /** The next write: one big frame alone, or small frames coalesced into one buffer. */
  #takeBatch(): Uint8Array {
    const pending = this.#pending!;
    const first = pending[0];
    let n = 1;
    let total = first.length;
    if (first.length < SMALL) {
      while (n < pending.length) {
        const next = pending[n];
        if (total + next.length > BATCH) break;
        total += next.length;
        n++;
      }
    }
    const chunks = pending.splice(0, n);
    const backings = this.#backing!.splice(0, n);
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
    const ws = this.#drainWaiters;
    if (ws === undefined || this.bufferedAmount > this.#writeLow()) return;
    this.#drainWaiters = undefined;
    for (const w of ws) w.resolve();
  }

  #writeLow(): number {
    const o = this.#opts;
    return Math.min(o.writeLowWaterMark ?? 256 * 1024, o.writeHighWaterMark ?? 1 << 20);
  }

  // ---- timers ----

  /** Puts the connection's earliest deadline on the shared timer (or takes it off). */
  #arm(): void {
    let at = Infinity;
    for (const t of [this.#retryAt, this.#giveUpAt, this.#eofAt, this.#pingAt, this.#pongBy]) {
      if (t !== 0 && t < at) at = t;
    }
    if (this.#pings) { for (const w of this.#pings.values()) at = Math.min(at, w.by); }
    if (at === Infinity) this.#deadline?.cancel();
    else (this.#deadline ??= new Deadline(() => this.#onDeadline())).set(at);
  }

  #onDeadline(): void {
    if (this.#ended) return;
    const now = performance.now() + 1;
    const due = (t: number) => t !== 0 && t <= now;
    if (due(this.#giveUpAt)) return this.#finish("close handshake timed out");
    if (due(this.#eofAt)) return this.#finish();
    if (due(this.#retryAt)) {
      this.#retryAt = 0;
      this.#p.resendClose();
      this.#collect();
    }
    const o = this.#opts;
    const timeout = o.pongTimeoutMs ?? o.pingIntervalMs ?? 0;
    if (due(this.#pongBy)) {
      // While we are not reading, a pong cannot be seen: wait again.
      if (!this.readPaused) return this.#finish("keep-alive pong timeout", "drop");
      this.#pongBy = now + timeout;
    }
    if (due(this.#pingAt)) {
      this.#pingAt = now + o.pingIntervalMs!;
      if (this.#p.state === "open" && this.#pongBy === 0 && !this.readPaused) {
        this.#p.ping(KEEPALIVE);
        this.#collect();
        this.#pongBy = now + timeout;
      }
    }
    const pings = this.#pings;
    if (pings) {
      for (const [key, w] of pings) {
        if (w.by > now) continue;
        pings.delete(key);
        w.reject(new TimeoutError("ping", w.timeoutMs));
      }
    }
    this.#arm();
  }

  // ---- the end ----

  /**
   * Ends the connection exactly once: the codec records how (EOF, or `abort` for a drop of our
   * own), the deadline is cancelled, the socket closed, and waiters are settled.
   */
  #finish(abort?: string, initiator?: "local" | "drop"): void {
    if (this.#ended) return;
    this.#ended = true;
    if (abort === undefined) this.#p.receiveEof();
    else this.#p.abort(abort, initiator);
    const info: CloseInfo = this.#p.closeOutcome!;
    this.#info = info;
    this.#retryAt =
      this.#giveUpAt =
      this.#eofAt =
      this.#pingAt =
      this.#pongBy =
        0;
    this.#deadline?.cancel();
    this.#stream.close();
    const closedError = new ConnectionClosedError("the connection is closed", info);
    const pings = this.#pings;
    this.#pings = undefined;
    if (pings) { for (const w of pings.values()) w.reject(closedError); }
    const ws = this.#drainWaiters;
    this.#drainWaiters = undefined;
    if (ws) { for (const w of ws) w.reject(closedError); }
    this.#pending = this.#backing = undefined;
    this.#pendingBytes = 0;
    this.#settle();
  }

  /** Once ended and the read and write loops have returned (no op outlives the connection). */
  #settle(): void {
    if (!this.#ended || this.#settled || this.#reading || this.#writing) return;
    this.#settled = true;
    const info = this.#info!;
    if (!(this.#kept !== undefined && this.#kept.length > 0)) this.#queue?.end(info); // else once taken
    const resolve = this.#resolveFinished;
    this.#resolveFinished = undefined;
    resolve?.(info);
    const onSettled = this.#onSettled;
    this.#onSettled = undefined;
    onSettled?.(this, info);
  }
}

/** A connection's queue settings and hooks: methods of one object, not closures per connection. */
class QueueHooks implements IncomingQueueOptions {
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly maxQueuedBytes?: number;
  readonly overflow?: OverflowPolicy;
  readonly #ws: WebSocketConnection;
  readonly #onError: ((error: unknown) => void) | undefined;

  constructor(ws: WebSocketConnection, o: WebSocketConnectionOptions) {
    this.#ws = ws;
    this.highWaterMark = o.readHighWaterMark ?? 1 << 20;
    this.lowWaterMark = Math.min(
      o.readLowWaterMark ?? Math.floor(this.highWaterMark / 2),
      this.highWaterMark,
    );
    this.maxQueuedBytes = o.maxQueuedBytes;
    this.overflow = o.overflow;
    this.#onError = o.onError;
  }

  onResume(): void {
    // In a microtask, as a socket read would come: a consumer polling in a loop sees the queue
    // drain, not refill under its feet.
    queueMicrotask(() => offerKeptOf(this.#ws));
  }

  onOverflow(e: ReadOverflowError): void {
    if (e.policy === "close") failOf(this.#ws, 1008, "unread messages exceeded maxQueuedBytes");
    else this.#onError?.(e); // a drop is never silent
  }
}

function keyOf(data: Uint8Array): string {
  let s = "";
  for (let i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}
