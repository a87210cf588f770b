/**
 * The sans-I/O WebSocket state machine (model: Python `websockets`' `connection.py`): the
 * transport feeds it socket bytes and takes back events and bytes to write. It never touches a
 * socket or a timer, so every rule of RFC 6455 is testable byte for byte.
 *
 * @module
 */

import { decodeClosePayload, encodeClosePayload, truncateCloseReason } from "./close.ts";
import { type DeflateParams, PerMessageDeflate } from "./deflate.ts";
import { CloseCode, InvalidStateError, ProtocolError } from "./errors.ts";
import { applyMask, nextMaskKey } from "./mask.ts";
import { decodeUtf8, isValidUtf8, UTF8_ACCEPT, UTF8_REJECT, validateUtf8 } from "./utf8.ts";
import {
  encodedFrameLength,
  encodeFrame,
  encodeFrameHeaderInto,
  encodeFrameInto,
  type Frame,
  FrameParser,
  isControlOpcode,
  MAX_CONTROL_PAYLOAD,
  Opcode,
} from "./frames.ts";

const ENCODER = new TextEncoder();
const INVALID_UTF8 = "invalid UTF-8 in text message";
const EMPTY = new Uint8Array(0);

/** Frames up to this size (header included) are packed into the shared batch buffer. */
const SMALL_FRAME = 4096;
const BATCH_SIZE = 16384;
// Small frames of every connection are packed into one shared buffer, in runs: fewer
// allocations, no batch buffer per connection, and the transport writes a connection's run of
// frames with one syscall. Bytes before batchEnd were handed out and are never touched again.
let batch = new Uint8Array(BATCH_SIZE);
let batchEnd = 0;
/** Strings up to this many UTF-16 units are encoded through one shared scratch buffer. */
const SCRATCH_CHARS = 16384;
const SCRATCH = new Uint8Array(SCRATCH_CHARS * 3);

/**
 * Default largest message: 64 MiB.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_MESSAGE_SIZE } from "./connection.ts";
 * console.log(DEFAULT_MAX_MESSAGE_SIZE); // 67108864
 * ```
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/**
 * Options of a {@linkcode ProtocolConnection}.
 *
 * @example
 * ```ts
 * import type { ProtocolOptions } from "./connection.ts";
 * const opts: ProtocolOptions = { role: "server", maxMessageSize: 1 << 20 };
 * console.log(opts.role); // "server"
 * ```
 */
export interface ProtocolOptions {
  /** A client masks its frames and refuses masked ones; a server the reverse. */
  role: "client" | "server";
  /** Largest message (after decompression); bigger gives close 1009. Default 64 MiB. */
  maxMessageSize?: number;
  /** Negotiated permessage-deflate parameters, or null/undefined when not negotiated. */
  deflate?: DeflateParams | null;
  /** Compression tuning: skip messages under `threshold` bytes (default 1024), zlib level. */
  deflateOptions?: { threshold?: number; level?: number; memLevel?: number };
  /** Source of 4-byte masking keys (client). Default: crypto-random, drawn from a pooled buffer. */
  randomMask?: () => Uint8Array;
  /** Answer pings automatically (default true). */
  autoPong?: boolean;
}

/**
 * What the peer sent, in order. After an `error` event no more events come.
 *
 * @example
 * ```ts
 * import type { ProtocolEvent } from "./connection.ts";
 * const e: ProtocolEvent = { type: "close", code: 1000, reason: "bye" };
 * console.log(e.type); // "close"
 * ```
 */
export type ProtocolEvent =
  | { type: "text"; data: string }
  | { type: "binary"; data: Uint8Array }
  /** A pong is queued automatically (unless autoPong is false or we sent a close). */
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  /** The peer's close frame (1005 when it had no code); our echo is queued if we had not closed. */
  | { type: "close"; code: number; reason: string }
  /** Fatal: a close frame with `error.closeCode` is queued; no more events follow. */
  | { type: "error"; error: ProtocolError };

/**
 * One WebSocket connection's protocol state after the opening handshake.
 *
 * Transport loop: `receive(bytes)` for every socket read (any split), then drain `nextEvent()`
 * and write everything `takeOutgoing()` returns; call `receiveEof()` when the peer closes TCP, and
 * close TCP once `shouldCloseTransport` is true.
 *
 * A transport that reuses its read buffer calls `receiveRaw(bytes, onData)` instead: data messages
 * then go to `onData` as they are parsed, with no event object, text as validated UTF-8 bytes (no
 * string), payloads as views valid only during the call; pings, pongs, the close and errors still
 * come from `nextEvent()`.
 *
 * The codec alone keeps the close state (as `websockets`' `protocol.py` does): who started the
 * close, our close frame and the peer's, a failure (`fail()` for the transport's own reasons), a
 * dropped socket (`abort()`), and from all that `closeOutcome`, how the connection ended. Its
 * state is allocated as it is needed: the frame parser with the first bytes received, event and
 * outgoing lists with the first entry, zlib streams with the first compressed message.
 *
 * @example
 * ```ts
 * import { ProtocolConnection } from "./connection.ts";
 * const client = new ProtocolConnection({ role: "client" });
 * const server = new ProtocolConnection({ role: "server" });
 * client.sendText("hello");
 * for (const b of client.takeOutgoing()) server.receive(b);
 * console.log(server.nextEvent()); // { type: "text", data: "hello" }
 * ```
 */
export class ProtocolConnection {
  /** Which end of the connection this is. */
  readonly role: "client" | "server";
  /** Largest message accepted (after decompression). */
  readonly maxMessageSize: number;
  #parser: FrameParser | undefined;
  readonly #deflate: PerMessageDeflate | undefined;
  readonly #randomMask: () => Uint8Array;
  readonly #autoPong: boolean;

  #events: ProtocolEvent[] | undefined;
  #eventHead = 0;
  #outgoing: Uint8Array[] | undefined;
  // This connection's run of frames in the shared batch buffer, not yet taken.
  #batch: Uint8Array | undefined;
  #batchStart = 0;
  #batchEnd = 0;

  // Message being reassembled (opcode 0 = none).
  #msgOpcode = 0;
  #msgCompressed = false;
  #msgParts: Uint8Array[] | undefined;
  #msgSize = 0;
  // Fragmented uncompressed text is validated as it arrives (utf8.ts carries the state across
  // fragments), so a fragment no continuation could make valid fails at once, not at the end.
  #utf8State = UTF8_ACCEPT;
  // Set during receiveRaw(): where data messages go, and a sign that payloads are borrowed.
  #onData: ((text: boolean, payload: Uint8Array) => void) | undefined;

  // Our own manual fragmentation (sendFrame): true while a message is open.
  #sendFragmenting = false;

  #closeSent: { code: number; reason: string } | undefined;
  #closeReceived: { code: number; reason: string } | undefined;
  /** Who sent the first close frame (a failure counts as ours). */
  #initiator: "local" | "remote" | undefined;
  #error: ProtocolError | undefined;
  #eof = false;
  /** The transport dropped TCP itself (give-up, terminate, dead peer): why, and who is to blame. */
  #abort: { reason: string; initiator: "local" | "remote" | "drop" } | undefined;

  /** Creates the state machine for an open connection. */
  constructor(options: ProtocolOptions) {
    this.role = options.role;
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#deflate = options.deflate
      ? new PerMessageDeflate(options.deflate, this.role, options.deflateOptions)
      : undefined;
    this.#randomMask = options.randomMask ?? nextMaskKey;
    this.#autoPong = options.autoPong ?? true;
  }

  /** "open", "closing" (a close frame went either way), "closed" (done; see the class doc). */
  get state(): "open" | "closing" | "closed" {
    if (this.#eof) return "closed";
    if (this.#error) return this.#hasOutgoing() ? "closing" : "closed";
    if (this.#closeSent && this.#closeReceived) return "closed";
    if (this.#closeSent || this.#closeReceived) return "closing";
    return "open";
  }

  /** Our close frame, once queued. */
  get closeSent(): { code: number; reason: string } | undefined {
    return this.#closeSent;
  }

  /** The peer's close frame, once received. */
  get closeReceived(): { code: number; reason: string } | undefined {
    return this.#closeReceived;
  }

  /** The fatal protocol error, if one happened. */
  get error(): ProtocolError | undefined {
    return this.#error;
  }

  /**
   * True when the transport should close TCP now: after a fatal error (once its close frame was
   * taken), after EOF, and for a server once both close frames were exchanged. A client waits for
   * the server to close TCP first (RFC 6455 §7.1.1) and should apply its own timeout.
   */
  get shouldCloseTransport(): boolean {
    if (this.#eof) return true;
    if (this.#error) return !this.#hasOutgoing();
    return this.role === "server" && this.#closeSent !== undefined &&
      this.#closeReceived !== undefined && !this.#hasOutgoing();
  }

  /** Who started the close: "local" (our close frame went first, or we failed), "remote", or `undefined` while nobody has. */
  get closeInitiator(): "local" | "remote" | undefined {
    return this.#initiator;
  }

  /**
   * How the connection ended, once TCP is closed (`receiveEof()` or `abort()`), else `undefined`:
   * - the transport dropped it (`abort`): 1006 with its reason, not clean;
   * - a failure (the peer's bad input, or `fail()`): its code and reason, not clean, ours;
   * - both close frames exchanged: the peer's code and reason, clean;
   * - anything else: 1006, not clean, "local" when we had started a close, else "drop".
   */
  get closeOutcome():
    | {
      readonly code: number;
      readonly reason: string;
      readonly wasClean: boolean;
      readonly initiator: "local" | "remote" | "drop";
    }
    | undefined {
    if (!this.#eof) return undefined;
    const abort = this.#abort;
    if (abort) return { code: CloseCode.Abnormal, ...abort, wasClean: false };
    const error = this.#error;
    if (error) {
      return { code: error.closeCode, reason: error.message, wasClean: false, initiator: "local" };
    }
    const received = this.#closeReceived;
    if (received && this.#closeSent) {
      return { ...received, wasClean: true, initiator: this.#initiator ?? "remote" };
    }
    return {
      code: CloseCode.Abnormal,
      reason: "",
      wasClean: false,
      initiator: this.#initiator === "local" ? "local" : "drop",
    };
  }

  /** True while a message opened with `sendFrame` is not finished. */
  get fragmenting(): boolean {
    return this.#sendFragmenting;
  }

  /** True while the connection can still send data (no close sent, no error, no EOF). */
  get canSend(): boolean {
    return !this.#closeSent && !this.#error && !this.#eof;
  }

  /** Feeds bytes read from the socket, in any split. Takes ownership of `bytes`. */
  receive(bytes: Uint8Array): void {
    if (this.#error || this.#eof || this.#closeReceived) return; // nothing counts after close
    this.#frameParser().push(bytes);
    this.#parse();
  }

  /**
   * Feeds bytes read from the socket, in any split, and hands each data message to `onData` as it
   * is parsed: `text` true for a text message, whose bytes are valid UTF-8 (checked, not decoded:
   * invalid text fails the connection with 1007 as in `receive`), `payload` a view valid only
   * during the call. No event object is made for them; other events queue for `nextEvent()` as
   * usual. `bytes` is only borrowed: the codec copies what it keeps (a frame cut by the end of the
   * chunk, fragments of an unfinished message) before returning, so the caller may reuse it. A
   * payload over 4 KiB that is not a view of `bytes` (a frame completed across reads, a
   * reassembled or inflated message) is never written to again by the codec: it may be kept
   * without a copy. A throw from `onData` fails the connection with 1011.
   */
  receiveRaw(bytes: Uint8Array, onData: (text: boolean, payload: Uint8Array) => void): void {
    if (this.#error || this.#eof || this.#closeReceived) return;
    this.#frameParser().push(bytes, true);
    this.#onData = onData;
    try {
      this.#parse();
    } finally {
      this.#onData = undefined;
    }
  }

  #frameParser(): FrameParser {
    return this.#parser ??= new FrameParser({
      maxFrameSize: this.maxMessageSize,
      allowRsv1: this.#deflate !== undefined,
      expectMasked: this.role === "server",
    });
  }

  #parse(): void {
    const parser = this.#parser!;
    try {
      let frame: Frame | undefined;
      while ((frame = parser.next()) !== undefined) {
        this.#handleFrame(frame);
        if (this.#closeReceived || this.#error || this.#eof) break;
      }
    } catch (e) {
      this.#fail(
        e instanceof ProtocolError
          ? e
          : new ProtocolError(CloseCode.InternalError, `internal error: ${(e as Error)?.message}`),
      );
    }
  }

  /** The peer closed TCP. Without a prior close frame this is an abnormal closure (1006). */
  receiveEof(): void {
    this.#eof = true;
    this.#dropMessage();
    this.#parser = undefined;
    this.#deflate?.dispose();
  }

  /**
   * The transport drops TCP itself, without finishing the close handshake: `reason` goes into
   * `closeOutcome` (code 1006), blamed on `initiator` (default: whoever started the close, else
   * us). Ends the connection as `receiveEof()` does; nothing once it has ended.
   */
  abort(reason: string, initiator?: "local" | "drop"): void {
    if (this.#eof) return;
    this.#abort = { reason, initiator: initiator ?? this.#initiator ?? "local" };
    this.receiveEof();
  }

  /**
   * Fails the connection for a reason of the transport's own (a read overflow, a broken message
   * sink): a close frame with `code` is queued, an `error` event follows, and nothing more is
   * received. Nothing once the connection failed or ended.
   */
  fail(code: number, reason: string): void {
    if (this.#eof) return;
    this.#fail(new ProtocolError(code, reason));
  }

  /**
   * Queues our close frame once more, for a peer that has not answered it yet; nothing when no
   * close frame was sent, or the peer's came, or the connection ended.
   */
  resendClose(): void {
    const sent = this.#closeSent;
    if (!sent || this.#closeReceived || this.#eof) return;
    this.#queueFrame(Opcode.Close, encodeClosePayload(sent.code, sent.reason), true, false);
  }

  /** Takes the next event, or `undefined` when none is queued. */
  nextEvent(): ProtocolEvent | undefined {
    const events = this.#events;
    if (events === undefined) return undefined;
    if (this.#eventHead >= events.length) {
      this.#events = undefined;
      this.#eventHead = 0;
      return undefined;
    }
    const e = events[this.#eventHead];
    (events as (ProtocolEvent | undefined)[])[this.#eventHead++] = undefined;
    return e;
  }

  /** Takes the bytes to write, in order (an empty array when there are none). */
  takeOutgoing(): Uint8Array[] {
    this.#flushBatch();
    const out = this.#outgoing;
    if (out === undefined) return [];
    this.#outgoing = undefined;
    return out;
  }

  /** Sends a text message (compressed when negotiated and over the threshold). */
  sendText(text: string): void {
    if (text.length <= SCRATCH_CHARS) {
      // encodeInto a reused scratch buffer: no allocation for the UTF-8 bytes (the frame copies).
      const { written } = ENCODER.encodeInto(text, SCRATCH);
      this.#sendMessage(Opcode.Text, SCRATCH.subarray(0, written));
    } else {
      this.#sendMessage(Opcode.Text, ENCODER.encode(text));
    }
  }

  /** Sends a binary message (compressed when negotiated and over the threshold). */
  sendBinary(data: Uint8Array): void {
    this.#sendMessage(Opcode.Binary, data);
  }

  /**
   * Sends a whole message (text for a string) like `sendText`/`sendBinary`, but framed into a
   * buffer of the caller's: `take(size)` returns one of at least `size` bytes (a transport gives
   * pooled buffers it recycles once written). Returns the frame, a view of that buffer, which the
   * caller writes after what `takeOutgoing()` returned so far. Uncompressed text is encoded
   * straight into it.
   */
  sendMessageInto(data: string | Uint8Array, take: (size: number) => Uint8Array): Uint8Array {
    this.#checkCanSend();
    if (this.#sendFragmenting) throw new TypeError("a fragmented message is still open");
    const mask = this.role === "client" ? this.#randomMask() : undefined;
    let opcode: number = Opcode.Binary;
    let payload: Uint8Array;
    if (typeof data === "string") {
      opcode = Opcode.Text;
      if (this.#deflate === undefined) {
        // The UTF-8 goes behind room for the longest header; the header goes right before it.
        const room = mask ? 14 : 10;
        const out = take(room + data.length * 3);
        const length = ENCODER.encodeInto(data, out.subarray(room)).written;
        const start = room - (encodedFrameLength(length, mask !== undefined) - length);
        encodeFrameHeaderInto(out, start, opcode, length, { mask });
        if (mask) applyMask(out.subarray(room, room + length), mask);
        return out.subarray(start, room + length);
      }
      payload = data.length <= SCRATCH_CHARS
        ? SCRATCH.subarray(0, ENCODER.encodeInto(data, SCRATCH).written)
        : ENCODER.encode(data);
    } else payload = data;
    let rsv1 = false;
    if (this.#deflate?.shouldCompress(payload.length)) {
      payload = this.#deflate.compress(payload);
      rsv1 = true;
    }
    const size = encodedFrameLength(payload.length, mask !== undefined);
    const out = take(size);
    encodeFrameInto(out, 0, opcode, payload, { rsv1, mask });
    return out.subarray(0, size);
  }

  /**
   * Sends one raw frame for manual fragmentation: a Text/Binary frame starts a message,
   * Continuation frames continue it, `fin` ends it; control frames may go in between.
   * Never compressed. Throws `TypeError` on an out-of-order frame.
   */
  sendFrame(opcode: number, data: Uint8Array, fin: boolean): void {
    this.#checkCanSend();
    if (isControlOpcode(opcode)) {
      if (opcode !== Opcode.Ping && opcode !== Opcode.Pong) {
        throw new TypeError("use close() to send a close frame");
      }
      if (!fin) throw new TypeError("control frames cannot be fragmented");
      if (data.length > MAX_CONTROL_PAYLOAD) {
        throw new RangeError("control frame payload over 125 bytes");
      }
    } else if (opcode === Opcode.Continuation) {
      if (!this.#sendFragmenting) throw new TypeError("continuation frame without a message");
      this.#sendFragmenting = !fin;
    } else if (opcode === Opcode.Text || opcode === Opcode.Binary) {
      if (this.#sendFragmenting) throw new TypeError("a fragmented message is still open");
      this.#sendFragmenting = !fin;
    } else {
      throw new TypeError(`reserved opcode ${opcode}`);
    }
    this.#queueFrame(opcode, data, fin, false);
  }

  /** Sends a ping (payload up to 125 bytes). */
  ping(data: Uint8Array = EMPTY): void {
    this.sendFrame(Opcode.Ping, data, true);
  }

  /** Sends an unsolicited pong (payload up to 125 bytes). */
  pong(data: Uint8Array = EMPTY): void {
    this.sendFrame(Opcode.Pong, data, true);
  }

  /**
   * Queues our close frame (default 1000; 1005 sends an empty payload). Throws `RangeError` for a
   * code that may not be sent or a reason over 123 bytes. A second call does nothing.
   */
  close(code: number = CloseCode.Normal, reason: string = ""): void {
    if (this.#closeSent || this.#error || this.#eof) return;
    const payload = encodeClosePayload(code, reason);
    this.#queueFrame(Opcode.Close, payload, true, false);
    this.#closeSent = { code, reason };
    this.#initiator ??= "local";
  }

  #checkCanSend(): void {
    if (this.#error) throw new InvalidStateError("the connection failed: " + this.#error.message);
    if (this.#eof) throw new InvalidStateError("the peer closed the TCP connection");
    if (this.#closeSent) throw new InvalidStateError("a close frame was already sent");
  }

  #sendMessage(opcode: number, data: Uint8Array): void {
    this.#checkCanSend();
    if (this.#sendFragmenting) throw new TypeError("a fragmented message is still open");
    if (this.#deflate?.shouldCompress(data.length)) {
      this.#queueFrame(opcode, this.#deflate.compress(data), true, true);
    } else {
      this.#queueFrame(opcode, data, true, false);
    }
  }

  #queueFrame(opcode: number, data: Uint8Array, fin: boolean, rsv1: boolean): void {
    const mask = this.role === "client" ? this.#randomMask() : undefined;
    const total = encodedFrameLength(data.length, mask !== undefined);
    if (total > SMALL_FRAME) {
      this.#flushBatch();
      (this.#outgoing ??= []).push(encodeFrame(opcode, data, { fin, rsv1, mask }));
      return;
    }
    // Go on with our run only if it ends where the shared buffer does (nobody wrote since).
    if (this.#batch !== batch || this.#batchEnd !== batchEnd || batch.length - batchEnd < total) {
      this.#flushBatch();
      if (batch.length - batchEnd < total) {
        batch = new Uint8Array(BATCH_SIZE);
        batchEnd = 0;
      }
      this.#batch = batch;
      this.#batchStart = batchEnd;
    }
    batchEnd = this.#batchEnd = encodeFrameInto(batch, batchEnd, opcode, data, {
      fin,
      rsv1,
      mask,
    });
  }

  #flushBatch(): void {
    const b = this.#batch;
    if (b === undefined) return;
    if (this.#batchEnd > this.#batchStart) {
      (this.#outgoing ??= []).push(b.subarray(this.#batchStart, this.#batchEnd));
    }
    this.#batch = undefined; // do not pin the shared buffer
    this.#batchStart = this.#batchEnd = 0;
  }

  #hasOutgoing(): boolean {
    return this.#outgoing !== undefined || this.#batchEnd > this.#batchStart;
  }

  #emit(event: ProtocolEvent): void {
    (this.#events ??= []).push(event);
  }

  #fail(error: ProtocolError): void {
    if (this.#error) return;
    this.#error = error;
    this.#initiator ??= "local";
    this.#dropMessage();
    this.#emit({ type: "error", error });
    if (!this.#closeSent && !this.#eof) {
      const reason = truncateCloseReason(error.message);
      this.#queueFrame(Opcode.Close, encodeClosePayload(error.closeCode, reason), true, false);
      this.#closeSent = { code: error.closeCode, reason };
    }
    this.#deflate?.dispose();
  }

  #dropMessage(): void {
    this.#utf8State = UTF8_ACCEPT;
    this.#msgOpcode = 0;
    this.#msgParts = undefined;
    this.#msgSize = 0;
  }

  #handleFrame(frame: Frame): void {
    const opcode = frame.opcode;
    if (opcode >= 8) return this.#handleControl(frame);
    const payload = frame.payload;
    if (opcode === Opcode.Continuation) {
      if (this.#msgOpcode === 0) {
        throw new ProtocolError(CloseCode.ProtocolError, "continuation frame without a message");
      }
      if (frame.rsv1) {
        throw new ProtocolError(CloseCode.ProtocolError, "RSV1 set on a continuation frame");
      }
    } else {
      if (this.#msgOpcode !== 0) {
        throw new ProtocolError(
          CloseCode.ProtocolError,
          "new data frame while a fragmented message is open",
        );
      }
      if (frame.fin && !frame.rsv1) {
        // Fast path: one whole uncompressed frame, delivered without copying.
        this.#message(opcode === Opcode.Text, payload, false);
        return;
      }
      this.#msgOpcode = opcode;
      this.#msgCompressed = frame.rsv1;
    }
    this.#msgSize += payload.length;
    if (this.#msgSize > this.maxMessageSize) {
      throw new ProtocolError(
        CloseCode.MessageTooBig,
        `message over ${this.maxMessageSize} bytes`,
      );
    }
    const plainText = this.#msgOpcode === Opcode.Text && !this.#msgCompressed;
    if (plainText && payload.length > 0) {
      // Validate as the fragments arrive: an impossible sequence fails now, not at the end.
      this.#utf8State = validateUtf8(payload, this.#utf8State);
      if (this.#utf8State === UTF8_REJECT) {
        throw new ProtocolError(CloseCode.InvalidPayload, INVALID_UTF8);
      }
    }
    // A borrowed payload dies with the read buffer: keep a copy until the message is whole.
    if (payload.length > 0) {
      (this.#msgParts ??= []).push(this.#onData !== undefined ? payload.slice() : payload);
    }
    if (!frame.fin) return;
    if (plainText && this.#utf8State !== UTF8_ACCEPT) {
      throw new ProtocolError(CloseCode.InvalidPayload, INVALID_UTF8);
    }
    this.#finishMessage(plainText);
  }

  #finishMessage(validated: boolean): void {
    const opcode = this.#msgOpcode;
    const compressed = this.#msgCompressed;
    let data = concat(this.#msgParts ?? [], this.#msgSize);
    this.#dropMessage();
    if (compressed) data = this.#deflate!.decompress(data, this.maxMessageSize);
    this.#message(opcode === Opcode.Text, data, validated);
  }

  /** A whole data message: to the raw handler, or as an event (text decoded, or 1007). */
  #message(text: boolean, payload: Uint8Array, validated: boolean): void {
    const onData = this.#onData;
    if (onData !== undefined) {
      if (text && !validated && !isValidUtf8(payload)) {
        throw new ProtocolError(CloseCode.InvalidPayload, INVALID_UTF8);
      }
      onData(text, payload);
    } else if (text) {
      this.#emit({ type: "text", data: decodeText(payload) });
    } else {
      this.#emit({ type: "binary", data: payload });
    }
  }

  #handleControl(frame: Frame): void {
    // Control payloads go out in events, which outlive a borrowed read buffer.
    const payload = this.#onData !== undefined ? frame.payload.slice() : frame.payload;
    switch (frame.opcode) {
      case Opcode.Ping:
        this.#emit({ type: "ping", data: payload });
        if (this.#autoPong && !this.#closeSent) {
          this.#queueFrame(Opcode.Pong, payload, true, false);
        }
        return;
      case Opcode.Pong:
        this.#emit({ type: "pong", data: payload });
        return;
      case Opcode.Close: {
        const { code, reason } = decodeClosePayload(payload);
        this.#closeReceived = { code, reason };
        this.#initiator ??= "remote";
        this.#dropMessage();
        if (!this.#closeSent) {
          // Echo the code (RFC 6455 §5.5.1); no code received means none sent back.
          this.#queueFrame(
            Opcode.Close,
            encodeClosePayload(code === CloseCode.NoStatus ? CloseCode.NoStatus : code),
            true,
            false,
          );
          this.#closeSent = { code, reason: "" };
        }
        this.#emit({ type: "close", code, reason });
        if (this.state === "closed") this.#deflate?.dispose();
        return;
      }
    }
  }
}

/** Decodes a whole text message, or throws ProtocolError 1007. */
function decodeText(bytes: Uint8Array): string {
  try {
    return decodeUtf8(bytes);
  } catch {
    throw new ProtocolError(CloseCode.InvalidPayload, INVALID_UTF8);
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  if (parts.length === 0) return EMPTY;
  const out = new Uint8Array(size);
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}
