/**
 * {@linkcode WebSocketConnection}: an open RFC 6455 connection on a raw socket. It drives the
 * codec's `ProtocolConnection` over a {@linkcode ByteStream} (a `Deno.Conn` or a `node:net`
 * socket):
 *
 * - **reads**: a loop reads the socket into the stream's reused buffer and lends it to the codec
 *   (`receiveRaw`), which hands each data message over as it is parsed. Messages go into an
 *   {@linkcode IncomingQueue} (payloads copied out, text decoded), or, while a
 *   {@linkcode MessageSink} is set (`setSink`), straight to it as views of the read buffer: no
 *   object, no string, no copy per message. Above the queue's high watermark, or when the sink
 *   refuses a message, the rest of the read is kept (copied, in order) and the loop stops reading
 *   the socket (TCP back-pressure on the peer) until the queue drops below its low watermark or
 *   the sink's `writable()` resolves; the kept messages go first.
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
import { decodeUtf8 } from "../protocol/utf8.ts";
import { deferred, TimeoutError } from "../util/async.ts";
import { IncomingQueue } from "./incoming_queue.ts";
import { KeptMessages } from "./kept_messages.ts";
import type { ByteStream, StreamAddr } from "./tcp_stream.ts";
import {
  type CloseInfo,
  ConnectionClosedError,
  type HandshakeInfo,
  type MessageSink,
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
  #sink: MessageSink | undefined;
  /** Bumped when the sink changes: a stale `writable()` must not offer anything. */
  #sinkEpoch = 0;
  #awaitingSink = false;
  /** Messages the queue or the sink could not take yet, in order; reading waits for them. */
  #kept = new KeptMessages();
  #offering = false;
  /** The memory of the bytes being parsed, and whether views of it may be queued as they are. */
  #readBuffer: ArrayBufferLike | undefined;
  #readKept = false;
  /** How the socket closed, once it did; the queue ends when nothing is kept any more. */
  #endInfo?: CloseInfo;
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
      // In a microtask, as a socket read would come: a consumer polling in a loop sees the queue
      // drain, not refill under its feet.
      onResume: () => queueMicrotask(() => this.#offerKept()),
      onOverflow: (e) => {
        if (e.policy === "close") this.#fail(1008, "unread messages exceeded maxQueuedBytes");
        else this.#opts.onError?.(e); // a drop is never silent
      },
    });
    this.#fastPath = !/permessage-deflate/i.test(init.handshake.extensions);
    if (init.initial && init.initial.length) this.#feed(init.initial, true);
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
    return this.#kept.length > 0 || (this.#sink === undefined && this.#queue.paused);
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
    if (sink !== undefined && this.#queue.length > 0) {
      // Queued messages are older than kept ones: both go to the sink, queued first. (Polling may
      // move kept messages into the queue behind them; any left are appended after.)
      const moved = new KeptMessages();
      for (let m = this.#queue.poll(); m !== undefined; m = this.#queue.poll()) {
        moved.push(m.type === "text", m.type === "text" ? UTF8.encode(m.data) : m.data);
      }
      this.#kept.offer((text, payload) => (moved.push(text, payload), true));
      this.#kept = moved;
    }
    this.#sink = sink;
    this.#sinkEpoch++;
    this.#awaitingSink = false;
    this.#offerKept();
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
          continue;
        }
        const chunk = await this.#stream.read();
        if (chunk === null) {
          this.#onEof();
          break;
        }
        this.#feed(chunk, false);
      }
    } finally {
      this.#readDone.resolve();
    }
  }

  /** Parses bytes: the stream's reused read buffer, or (`owned`) bytes nobody else holds. */
  #feed(chunk: Uint8Array, owned: boolean): void {
    this.#bytesIn += chunk.length;
    this.#readBuffer = chunk.buffer;
    this.#readKept = owned;
    try {
      this.#p.receiveRaw(chunk, this.#onData); // a throw from the sink comes back as a 1011 event
    } finally {
      this.#readBuffer = undefined;
    }
    this.#drainEvents();
  }

  /** Each data message, as the codec parses it (`payload` is a view of the read buffer). */
  readonly #onData = (text: boolean, payload: Uint8Array): void => {
    this.#messagesIn++;
    if (this.#kept.length === 0 && this.#take(text, payload)) return;
    // A read can hold many messages: past the queue's high watermark or a refusal, the rest of
    // it waits here, in order, instead of going past the bound (a socket that can stop reading
    // never needs the overflow policy).
    this.#kept.push(text, payload);
  };

  /** Hands one message to the sink or the queue; false when it cannot be taken now. */
  readonly #take = (text: boolean, payload: Uint8Array): boolean => {
    const sink = this.#sink;
    if (sink !== undefined) {
      if (sink.deliver(text, payload)) return true;
      this.#awaitSink(sink);
      return false;
    }
    if (this.#queue.paused) return false;
    if (text) {
      this.#queue.push({ type: "text", data: decodeUtf8(payload) });
    } else if (payload.length >= HAND_OVER && !this.#offering) {
      // From the codec (kept messages are views of a buffer that is reused: copied below).
      if (payload.buffer === this.#readBuffer && !this.#readKept) {
        this.#stream.retain();
        this.#readKept = true;
      }
      this.#queue.push({ type: "binary", data: payload });
    } else {
      this.#queue.push({ type: "binary", data: copyOut(payload) });
    }
    return true;
  };

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
    this.#offering = true;
    try {
      if (this.#kept.length > 0 && !this.#kept.offer(this.#take)) return;
    } catch (e) {
      this.#fail(1011, `message sink failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    } finally {
      this.#offering = false;
    }
    if (this.#endInfo !== undefined) this.#queue.end(this.#endInfo);
    this.#openGate();
  }

  /**
   * True while read back-pressure holds: the consumer is behind and no close is under way (a
   * close must be read even when the consumer is behind).
   */
  #holdingBack(): boolean {
    return this.readPaused && this.#state === "open" && !this.#p.closeSent;
  }

  #drainEvents(): void {
    const p = this.#p;
    for (let ev = p.nextEvent(); ev; ev = p.nextEvent()) {
      switch (ev.type) {
        case "text":
        case "binary":
          break; // data comes through #onData
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
      if (this.#state !== "open" || this.#kaDeadline !== undefined || this.readPaused) return;
      this.#p.ping(new TextEncoder().encode("wse-keepalive"));
      this.#collect();
      this.#kaDeadline = setTimeout(() => this.#onPongDeadline(timeout), timeout);
    }, interval);
  }

  #onPongDeadline(timeout: number): void {
    this.#kaDeadline = undefined;
    if (this.#state === "closed") return;
    if (this.readPaused) {
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
      this.#endInfo = info;
      if (this.#kept.length === 0) this.#queue.end(info); // else once the kept ones were taken
      this.#finished.resolve(info);
    });
  }
}

function keyOf(data: Uint8Array): string {
  let s = "";
  for (let i = 0; i < data.length; i++) s += String.fromCharCode(data[i]);
  return s;
}
