/**
 * RFC 6455 framing: the opcodes, a serializer with minimal length encoding, and an incremental
 * parser that gives the same frames for any split of the byte stream. No I/O.
 *
 * @module
 */

import { applyMask } from "./mask.ts";
import { CloseCode, ProtocolError } from "./errors.ts";

/**
 * Frame opcodes (RFC 6455 §5.2).
 *
 * @example
 * ```ts
 * import { Opcode } from "./frames.ts";
 * console.log(Opcode.Text, Opcode.Close); // 1 8
 * ```
 */
export const Opcode = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
} as const;

/**
 * True for control opcodes (close, ping, pong and the reserved 0xB..0xF).
 *
 * @example
 * ```ts
 * import { isControlOpcode, Opcode } from "./frames.ts";
 * console.log(isControlOpcode(Opcode.Ping), isControlOpcode(Opcode.Text)); // true false
 * ```
 */
export function isControlOpcode(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

/**
 * Largest payload a control frame may carry (RFC 6455 §5.5).
 *
 * @example
 * ```ts
 * import { MAX_CONTROL_PAYLOAD } from "./frames.ts";
 * console.log(MAX_CONTROL_PAYLOAD); // 125
 * ```
 */
export const MAX_CONTROL_PAYLOAD = 125;

/**
 * One decoded frame. `payload` is already unmasked; `masked` says whether it came masked.
 *
 * @example
 * ```ts
 * import { type Frame, Opcode } from "./frames.ts";
 * const f: Frame = {
 *   fin: true, rsv1: false, rsv2: false, rsv3: false,
 *   opcode: Opcode.Text, masked: false, payload: new TextEncoder().encode("hi"),
 * };
 * console.log(f.payload.length); // 2
 * ```
 */
export interface Frame {
  /** Final fragment of its message. */
  fin: boolean;
  /** RSV1 (permessage-deflate: the message is compressed). */
  rsv1: boolean;
  /** RSV2 (always false: the parser refuses it). */
  rsv2: boolean;
  /** RSV3 (always false: the parser refuses it). */
  rsv3: boolean;
  /** One of {@linkcode Opcode}. */
  opcode: number;
  /** Whether the frame came masked. */
  masked: boolean;
  /** The unmasked payload (may be a view into the pushed bytes). */
  payload: Uint8Array;
}

/**
 * Options of {@linkcode encodeFrame} and {@linkcode encodeFrameHeader}.
 *
 * @example
 * ```ts
 * import type { EncodeOptions } from "./frames.ts";
 * const opts: EncodeOptions = { fin: false, mask: new Uint8Array(4) };
 * console.log(opts.fin); // false
 * ```
 */
export interface EncodeOptions {
  /** Final fragment (default true). */
  fin?: boolean;
  /** RSV1, set on the first frame of a compressed message (permessage-deflate). */
  rsv1?: boolean;
  /** 4-byte masking key (clients must mask); absent = unmasked. */
  mask?: Uint8Array;
}

function headerLength(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

function writeHeader(
  out: Uint8Array,
  opcode: number,
  length: number,
  options: EncodeOptions | undefined,
): number {
  const fin = options?.fin ?? true;
  const mask = options?.mask;
  out[0] = (fin ? 0x80 : 0) | (options?.rsv1 ? 0x40 : 0) | (opcode & 0x0f);
  const maskBit = mask ? 0x80 : 0;
  let p: number;
  if (length < 126) {
    out[1] = maskBit | length;
    p = 2;
  } else if (length < 0x10000) {
    out[1] = maskBit | 126;
    out[2] = length >>> 8;
    out[3] = length & 0xff;
    p = 4;
  } else {
    out[1] = maskBit | 127;
    const hi = Math.floor(length / 0x100000000);
    const lo = length >>> 0;
    out[2] = hi >>> 24;
    out[3] = (hi >>> 16) & 0xff;
    out[4] = (hi >>> 8) & 0xff;
    out[5] = hi & 0xff;
    out[6] = lo >>> 24;
    out[7] = (lo >>> 16) & 0xff;
    out[8] = (lo >>> 8) & 0xff;
    out[9] = lo & 0xff;
    p = 10;
  }
  if (mask) {
    if (mask.length !== 4) throw new RangeError("a masking key is 4 bytes");
    out.set(mask, p);
    p += 4;
  }
  return p;
}

/**
 * Serializes one frame (header + payload) into a single new buffer, with the minimal 7/16/64-bit
 * length encoding. With `mask`, the payload copy is masked (the input is left untouched).
 *
 * @example
 * ```ts
 * import { encodeFrame, Opcode } from "./frames.ts";
 * const bytes = encodeFrame(Opcode.Binary, new TextEncoder().encode("Hello Client"));
 * console.log(bytes[0], bytes[1], bytes.length); // 130 12 14
 * ```
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options?: EncodeOptions,
): Uint8Array {
  const length = payload.length;
  const out = new Uint8Array(headerLength(length, options?.mask !== undefined) + length);
  const p = writeHeader(out, opcode, length, options);
  out.set(payload, p);
  if (options?.mask) applyMask(out.subarray(p), options.mask);
  return out;
}

/**
 * Bytes {@linkcode encodeFrame} produces for a payload of `payloadLength` bytes.
 *
 * @example
 * ```ts
 * import { encodedFrameLength } from "./frames.ts";
 * console.log(encodedFrameLength(200, true)); // 208
 * ```
 */
export function encodedFrameLength(payloadLength: number, masked: boolean): number {
  return headerLength(payloadLength, masked) + payloadLength;
}

/**
 * Serializes one frame into `out` at `offset` (which must have room for
 * {@linkcode encodedFrameLength} bytes) and returns the offset just past it. Lets a sender pack
 * many small frames into one buffer, and so one socket write.
 *
 * @example
 * ```ts
 * import { encodeFrameInto, Opcode } from "./frames.ts";
 * const out = new Uint8Array(16);
 * let end = encodeFrameInto(out, 0, Opcode.Text, new TextEncoder().encode("a"));
 * end = encodeFrameInto(out, end, Opcode.Ping, new Uint8Array(0));
 * console.log(end, out.subarray(0, end)); // 5 Uint8Array(5) [ 129, 1, 97, 137, 0 ]
 * ```
 */
export function encodeFrameInto(
  out: Uint8Array,
  offset: number,
  opcode: number,
  payload: Uint8Array,
  options?: EncodeOptions,
): number {
  const length = payload.length;
  const p = offset +
    writeHeader(
      out.subarray(offset, offset + headerLength(length, !!options?.mask)),
      opcode,
      length,
      options,
    );
  out.set(payload, p);
  if (options?.mask) applyMask(out.subarray(p, p + length), options.mask);
  return p + length;
}

/**
 * Serializes only a frame header, for writing a large payload without copying it (the caller
 * writes header then payload; with `mask` the caller must mask the payload itself).
 *
 * @example
 * ```ts
 * import { encodeFrameHeader, Opcode } from "./frames.ts";
 * console.log(encodeFrameHeader(Opcode.Binary, 70000).length); // 10
 * ```
 */
export function encodeFrameHeader(
  opcode: number,
  payloadLength: number,
  options?: EncodeOptions,
): Uint8Array {
  const out = new Uint8Array(headerLength(payloadLength, options?.mask !== undefined));
  writeHeader(out, opcode, payloadLength, options);
  return out;
}

/**
 * Writes only a frame header into `out` at `offset` (room for it is the caller's: the frame
 * length minus the payload length) and returns the offset just past it, where the payload goes
 * (with `mask`, the caller masks the payload itself). For framing a payload already in place.
 *
 * @example
 * ```ts
 * import { encodeFrameHeaderInto, Opcode } from "./frames.ts";
 * const out = new Uint8Array(2 + 3);
 * out.set(new TextEncoder().encode("abc"), encodeFrameHeaderInto(out, 0, Opcode.Text, 3));
 * console.log(out); // Uint8Array(5) [ 129, 3, 97, 98, 99 ]
 * ```
 */
export function encodeFrameHeaderInto(
  out: Uint8Array,
  offset: number,
  opcode: number,
  payloadLength: number,
  options?: EncodeOptions,
): number {
  const end = offset + headerLength(payloadLength, options?.mask !== undefined);
  return offset + writeHeader(out.subarray(offset, end), opcode, payloadLength, options);
}

/**
 * Options of {@linkcode FrameParser}. The header checks run as soon as the first two bytes are
 * in, so a hostile frame is refused before its payload is buffered.
 *
 * @example
 * ```ts
 * import type { FrameParserOptions } from "./frames.ts";
 * const server: FrameParserOptions = { maxFrameSize: 1 << 20, expectMasked: true };
 * console.log(server.expectMasked); // true
 * ```
 */
export interface FrameParserOptions {
  /** Largest payload of one frame; larger gives ProtocolError 1009. Default 64 MiB. */
  maxFrameSize?: number;
  /** An extension (permessage-deflate) claimed RSV1; otherwise RSV1 gives 1002. */
  allowRsv1?: boolean;
  /** true: frames must be masked (server); false: must not be (client); undefined: no check. */
  expectMasked?: boolean;
}

const EMPTY = new Uint8Array(0);
const DEFAULT_MAX = 64 * 1024 * 1024;
/** Longest frame header: 2 + 8 (64-bit length) + 4 (mask). */
const MAX_HEADER = 14;
/** An empty carry buffer bigger than this is dropped once a read is parsed (idle memory). */
const CARRY_KEEP = 4096;

/**
 * Incremental frame parser: `push` socket bytes in any split, then call `next` until it returns
 * `undefined`. Violations throw a {@linkcode ProtocolError} (and keep throwing it).
 *
 * Frames that sit whole in one pushed chunk come out as views of it (no copy). Only a frame cut by
 * the end of a chunk is copied, into a carry buffer the parser allocates then (sized from the
 * frame's header, never trusting a huge declared length up front) and completes from the next
 * chunk with just the bytes it still needs.
 *
 * Two ways to push:
 * - `push(bytes)` takes ownership: payloads may be views of `bytes` (unmasked in place) and stay
 *   valid for good, so do not reuse a pushed buffer.
 * - `push(bytes, true)` only borrows: call `next()` until it returns `undefined` before reusing
 *   `bytes` (what is left is copied by then). Each returned frame, the same object every time, and
 *   its payload are valid until the next call: the parser reuses its carry buffer, and a socket
 *   read buffer can be reused for every read. Except: a payload over 4 KiB that is not a view of
 *   a pushed chunk (it was completed in the carry buffer) is never written to again.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameParser, Opcode } from "./frames.ts";
 * const wire = encodeFrame(Opcode.Text, new TextEncoder().encode("hi"));
 * const parser = new FrameParser({});
 * parser.push(wire.subarray(0, 1));
 * console.log(parser.next()); // undefined
 * parser.push(wire.subarray(1));
 * console.log(new TextDecoder().decode(parser.next()!.payload)); // "hi"
 * ```
 */
export class FrameParser {
  // The chunk being parsed, from #start to #end.
  #buf: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;
  // A frame cut by the end of a chunk, from #cStart to #cEnd (#inCarry: parse from here first).
  #carry: Uint8Array = EMPTY;
  #cStart = 0;
  #cEnd = 0;
  #inCarry = false;
  // A payload view of #carry was handed out by an owning push: never write into it again.
  #carryLent = false;
  // Chunks pushed while a carried frame waits for bytes (several pushes without next()).
  #pending: Uint8Array[] = [];
  #pendingPos = 0;
  #pendingBytes = 0;
  #borrowed = false;
  #frame: Frame | undefined;
  #error: ProtocolError | undefined;
  // The last header read by #header: total frame bytes, header bytes (with the mask key).
  #total = 0;
  #headerLength = 0;
  readonly #maxFrameSize: number;
  readonly #allowRsv1: boolean;
  readonly #expectMasked: boolean | undefined;

  /** Creates a parser. */
  constructor(opts: FrameParserOptions = {}) {
    this.#maxFrameSize = opts.maxFrameSize ?? DEFAULT_MAX;
    this.#allowRsv1 = opts.allowRsv1 ?? false;
    this.#expectMasked = opts.expectMasked;
  }

  /** Bytes pushed but not yet returned as frames. */
  get buffered(): number {
    return (this.#cEnd - this.#cStart) + (this.#end - this.#start) + this.#pendingBytes;
  }

  /**
   * Appends bytes from the socket: owned by the parser from now on, or with `borrowed` only until
   * `next()` returned `undefined` (see the class doc).
   */
  push(bytes: Uint8Array, borrowed = false): void {
    if (bytes.length === 0) return;
    this.#borrowed = borrowed;
    if (this.buffered === 0) {
      this.#buf = bytes;
      this.#start = 0;
      this.#end = bytes.length;
      this.#inCarry = false;
      return;
    }
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
  }

  #fail(code: number, message: string): never {
    this.#error = new ProtocolError(code, message);
    this.#buf = this.#carry = EMPTY;
    this.#start =
      this.#end =
      this.#cStart =
      this.#cEnd =
        0;
    this.#pending = [];
    this.#pendingBytes = this.#pendingPos = 0;
    throw this.#error;
  }

  /** Returns the next complete frame, or `undefined` when more bytes are needed. */
  next(): Frame | undefined {
    if (this.#error) throw this.#error;
    for (;;) {
      if (!this.#inCarry) {
        const s = this.#start;
        const avail = this.#end - s;
        if (this.#header(this.#buf, s, avail) && avail >= this.#total) {
          this.#start = s + this.#total;
          return this.#emit(this.#buf, s, false);
        }
        // The chunk ends inside a frame: carry that tail, then complete it from what follows.
        if (avail > 0) {
          this.#carryIn(this.#buf, s, avail);
          this.#inCarry = true;
        }
        this.#buf = EMPTY;
        this.#start = this.#end = 0;
        if (!this.#inCarry && !this.#nextChunk()) return this.#idle();
        continue;
      }
      const live = this.#cEnd - this.#cStart;
      if (live === 0) {
        this.#inCarry = false;
        this.#cStart = this.#cEnd = 0;
        if (!this.#nextChunk()) return this.#idle();
        continue;
      }
      const known = this.#header(this.#carry, this.#cStart, live);
      if (known && live >= this.#total) {
        const s = this.#cStart;
        this.#cStart = s + this.#total;
        return this.#emit(this.#carry, s, true);
      }
      if (this.#pending.length === 0) return this.#idle();
      // Pull only what the carried frame still needs (a header's worth while its size is unknown).
      const chunk = this.#pending[0];
      const want = (known ? this.#total : MAX_HEADER) - live;
      const take = Math.min(want, chunk.length - this.#pendingPos);
      this.#carryIn(chunk, this.#pendingPos, take);
      this.#pendingPos += take;
      this.#pendingBytes -= take;
      if (this.#pendingPos === chunk.length) {
        this.#pending.shift();
        this.#pendingPos = 0;
      }
    }
  }

  /** Makes the first pending chunk the one being parsed; false when there is none. */
  #nextChunk(): boolean {
    const chunk = this.#pending.shift();
    if (chunk === undefined) return false;
    this.#buf = chunk;
    this.#start = this.#pendingPos;
    this.#end = chunk.length;
    this.#pendingBytes -= chunk.length - this.#pendingPos;
    this.#pendingPos = 0;
    return true;
  }

  /** Everything pushed is parsed or carried: let go of what an idle parser need not keep. */
  #idle(): undefined {
    if (this.#cEnd === this.#cStart && this.#carry.length > CARRY_KEEP) {
      this.#carry = EMPTY;
      this.#cStart = this.#cEnd = 0;
    }
    return undefined;
  }

  /** Appends `n` bytes of `src` from `at` to the carried frame, growing or replacing the buffer. */
  #carryIn(src: Uint8Array, at: number, n: number): void {
    const live = this.#cEnd - this.#cStart;
    const need = live + n;
    let carry = this.#carry;
    if (this.#carryLent || carry.length < need) {
      // Grow towards the frame's declared size, but geometrically in what actually arrived: a
      // header declaring 64 MiB followed by one byte must not cost 64 MiB.
      const declared = this.#total > need ? this.#total : need;
      const size = Math.max(need, Math.min(declared, 2 * need + 65536));
      const next = new Uint8Array(this.#carryLent ? size : Math.max(size, carry.length));
      next.set(carry.subarray(this.#cStart, this.#cEnd));
      carry = this.#carry = next;
      this.#carryLent = false;
      this.#cStart = 0;
      this.#cEnd = live;
    } else if (carry.length - this.#cEnd < n) {
      carry.copyWithin(0, this.#cStart, this.#cEnd); // nothing before #cStart is still lent out
      this.#cStart = 0;
      this.#cEnd = live;
    }
    carry.set(n === src.length && at === 0 ? src : src.subarray(at, at + n), this.#cEnd);
    this.#cEnd += n;
  }

  /** The frame of `this.#total` bytes at `s` in `buf` (its header was read by #header). */
  #emit(buf: Uint8Array, s: number, fromCarry: boolean): Frame {
    const b0 = buf[s];
    const masked = (buf[s + 1] & 0x80) !== 0;
    const h = this.#headerLength;
    const payload = buf.subarray(s + h, s + this.#total);
    if (masked && payload.length > 0) applyMask(payload, buf.subarray(s + h - 4, s + h));
    // A payload handed out of the carry is never overwritten when its push owned the bytes, nor
    // when it is big: the next carried frame gets a new buffer, so the payload may be kept.
    if (fromCarry && (!this.#borrowed || payload.length > CARRY_KEEP)) this.#carryLent = true;
    let f = this.#frame;
    if (!this.#borrowed || f === undefined) {
      f = { fin: false, rsv1: false, rsv2: false, rsv3: false, opcode: 0, masked, payload };
      if (this.#borrowed) this.#frame = f;
    }
    f.fin = (b0 & 0x80) !== 0;
    f.rsv1 = (b0 & 0x40) !== 0;
    f.opcode = b0 & 0x0f;
    f.masked = masked;
    f.payload = payload;
    return f;
  }

  /**
   * Checks the header at `s` and returns true once it is whole, with the frame's size in
   * `#total` and `#headerLength`. The checks run on the first two bytes.
   */
  #header(buf: Uint8Array, s: number, avail: number): boolean {
    this.#total = 0;
    if (avail < 2) return false;
    const b0 = buf[s];
    const b1 = buf[s + 1];
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    if ((b0 & 0x30) !== 0) this.#fail(CloseCode.ProtocolError, "reserved bits RSV2/RSV3 set");
    if (rsv1 && !this.#allowRsv1) {
      this.#fail(CloseCode.ProtocolError, "reserved bit RSV1 set without a negotiated extension");
    }
    if ((opcode > 2 && opcode < 8) || opcode > 10) {
      this.#fail(CloseCode.ProtocolError, `reserved opcode ${opcode}`);
    }
    if (opcode >= 8) {
      if (!fin) this.#fail(CloseCode.ProtocolError, "fragmented control frame");
      if (length > MAX_CONTROL_PAYLOAD) {
        this.#fail(CloseCode.ProtocolError, "control frame payload over 125 bytes");
      }
      if (rsv1) this.#fail(CloseCode.ProtocolError, "RSV1 set on a control frame");
    }
    if (this.#expectMasked !== undefined && masked !== this.#expectMasked) {
      this.#fail(
        CloseCode.ProtocolError,
        masked ? "masked frame from a server" : "unmasked frame from a client",
      );
    }
    let header = 2;
    if (length === 126) {
      if (avail < 4) return false;
      length = (buf[s + 2] << 8) | buf[s + 3];
      header = 4;
    } else if (length === 127) {
      if (avail < 10) return false;
      const hi = ((buf[s + 2] << 24) | (buf[s + 3] << 16) | (buf[s + 4] << 8) | buf[s + 5]) >>> 0;
      const lo = ((buf[s + 6] << 24) | (buf[s + 7] << 16) | (buf[s + 8] << 8) | buf[s + 9]) >>> 0;
      if (hi > 0x7fffffff) this.#fail(CloseCode.ProtocolError, "64-bit length with the MSB set");
      length = hi * 0x100000000 + lo;
      header = 10;
    }
    if (length > this.#maxFrameSize) {
      this.#fail(CloseCode.MessageTooBig, `frame of ${length} bytes over the limit`);
    }
    if (masked) header += 4;
    this.#headerLength = header;
    this.#total = header + length;
    return true;
  }
}
