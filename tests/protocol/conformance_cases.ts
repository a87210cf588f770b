/**
 * The conformance table: malformed and hostile inputs (plus the few that must be accepted), in
 * the Autobahn testsuite's categories and handshake abuse, as data. `conformance_runner.ts` runs
 * them; `conformance_test.ts` asserts them; `gen_conformance_doc.ts` writes docs/protocol.md.
 *
 * @module
 */

import zlib from "node:zlib";
import type { DeflateParams } from "../../src/protocol/deflate.ts";
import { DEFAULT_DEFLATE_PARAMS, PerMessageDeflate } from "../../src/protocol/deflate.ts";
import { acceptKey } from "../../src/protocol/handshake.ts";
import { concat, enc, rawFrame } from "./helpers.ts";

/** Autobahn-like categories plus the handshake. */
export type Category =
  | "framing"
  | "pings"
  | "reserved-bits"
  | "opcodes"
  | "fragmentation"
  | "utf8"
  | "close"
  | "limits"
  | "compression"
  | "handshake";

/** Bytes fed to a {@linkcode ProtocolConnection} (whole, then again one byte at a time). */
export interface FramesInput {
  kind: "frames";
  role: "server" | "client";
  bytes: Uint8Array;
  maxMessageSize?: number;
  deflate?: DeflateParams;
  /** Feed an EOF after the bytes. */
  eof?: boolean;
}

/** A raw HTTP request head fed to the server handshake. */
export interface RequestInput {
  kind: "request";
  raw: string;
  protocols?: string[];
  deflate?: boolean;
}

/** A raw HTTP response head checked by the client handshake (offer: key below, protocols). */
export interface ResponseInput {
  kind: "response";
  raw: string;
  protocols?: string[];
  deflate?: boolean;
}

/** What must come out. */
export type Expectation =
  /** A fatal ProtocolError with this close code, and a close frame with it queued. */
  | { close: number; events?: string[] }
  /** Exactly these events (see helpers.summarize), no error. */
  | { events: string[]; sent?: string[] }
  /** The server handshake answers this HTTP status (101 = accepted). */
  | { status: number; protocol?: string; extensions?: string }
  /** The client handshake fails with a HandshakeError (with `status` when the server sent one). */
  | { handshakeError: true; status?: number }
  /** The client handshake succeeds. */
  | { handshakeOk: true; protocol?: string; deflate?: boolean };

/** One row of the table. */
export interface ConformanceCase {
  id: string;
  category: Category;
  description: string;
  input: FramesInput | RequestInput | ResponseInput;
  expect: Expectation;
}

// ---- builders -------------------------------------------------------------------------------

const T = 1, B = 2, C = 0, CLOSE = 8, PING = 9, PONG = 10;
const srv = (bytes: Uint8Array, extra: Partial<FramesInput> = {}): FramesInput => ({
  kind: "frames",
  role: "server",
  bytes,
  ...extra,
});
const u8 = (...b: number[]) => new Uint8Array(b);
const closePayload = (code: number, reason: string | Uint8Array = "") =>
  concat(u8(code >> 8, code & 0xff), typeof reason === "string" ? enc.encode(reason) : reason);
const textOf = (bytes: Uint8Array) => rawFrame(T, bytes);

function deflateRaw(data: Uint8Array): Uint8Array {
  const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return new Uint8Array(out.buffer, out.byteOffset, out.length - 4); // strip 00 00 ff ff
}

const DEFLATE: DeflateParams = { ...DEFAULT_DEFLATE_PARAMS };
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = acceptKey(KEY);

const REQ = (
  lines: string[],
  first = "GET /chat HTTP/1.1",
) => [first, ...lines].join("\r\n") + "\r\n\r\n";
const GOOD_HEADERS = [
  "Host: example.com",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13",
];
const without = (name: string) =>
  GOOD_HEADERS.filter((h) => !h.toLowerCase().startsWith(name.toLowerCase() + ":"));
const replace = (name: string, line: string) => [...without(name), line];
const RES = (status: string, lines: string[]) =>
  [`HTTP/1.1 ${status}`, ...lines].join("\r\n") + "\r\n\r\n";
const GOOD_RESPONSE = [
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Accept: ${ACCEPT}`,
];

// Context takeover: the second message is compressed against the first one's window.
const takeover = new PerMessageDeflate(DEFLATE, "client", { threshold: 0 });
const TAKEOVER_1 = takeover.compress(enc.encode("context takeover context takeover"));
const TAKEOVER_2 = takeover.compress(enc.encode("context takeover context takeover"));
takeover.dispose();

const BOMB = deflateRaw(new Uint8Array(32 * 1024 * 1024)); // 32 MiB of zeros in ~32 KiB

const INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
const VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999];

// ---- the table ------------------------------------------------------------------------------

/** All cases. */
export const CONFORMANCE_CASES: ConformanceCase[] = [
  // framing
  {
    id: "F01",
    category: "framing",
    description: "text frame split byte by byte is reassembled",
    input: srv(rawFrame(T, "Hello, world")),
    expect: { events: ["text:Hello, world"] },
  },
  {
    id: "F02",
    category: "framing",
    description: "unmasked frame from a client",
    input: srv(rawFrame(T, "hi", { mask: false })),
    expect: { close: 1002 },
  },
  {
    id: "F03",
    category: "framing",
    description: "masked frame from a server",
    input: { kind: "frames", role: "client", bytes: rawFrame(T, "hi") },
    expect: { close: 1002 },
  },
  {
    id: "F04",
    category: "framing",
    description: "64-bit length with the most significant bit set",
    input: srv(rawFrame(B, u8(1, 2, 3), { declaredLength: 1n << 63n })),
    expect: { close: 1002 },
  },
  {
    id: "F05",
    category: "framing",
    description: "two frames coalesced, third split across reads",
    input: srv(concat(rawFrame(B, u8(1)), rawFrame(T, "a"), rawFrame(B, new Uint8Array(70000)))),
    expect: { events: ["binary:1", "text:a", "binary:70000"] },
  },
  {
    id: "F06",
    category: "framing",
    description: "EOF in the middle of a frame delivers nothing and throws nothing",
    input: srv(rawFrame(T, "Hello").subarray(0, 5), { eof: true }),
    expect: { events: [] },
  },
  {
    id: "F07",
    category: "framing",
    description: "valid frames then garbage: messages delivered, then 1002",
    input: srv(concat(rawFrame(T, "ok"), u8(0xff, 0xff, 0xff))),
    expect: { close: 1002, events: ["text:ok"] },
  },
  // pings
  {
    id: "P01",
    category: "pings",
    description: "ping with 125-byte payload is answered with an identical pong",
    input: srv(rawFrame(PING, new Uint8Array(125).fill(0xfe))),
    expect: { events: ["ping:125"], sent: ["pong:125"] },
  },
  {
    id: "P02",
    category: "pings",
    description: "ping with 126-byte payload",
    input: srv(rawFrame(PING, new Uint8Array(126))),
    expect: { close: 1002 },
  },
  {
    id: "P03",
    category: "pings",
    description: "fragmented ping (FIN=0)",
    input: srv(concat(rawFrame(PING, "ab", { fin: false }), rawFrame(C, "cd"))),
    expect: { close: 1002 },
  },
  {
    id: "P04",
    category: "pings",
    description: "unsolicited pong is reported, not answered",
    input: srv(rawFrame(PONG, "unsolicited")),
    expect: { events: ["pong:11"], sent: [] },
  },
  {
    id: "P05",
    category: "pings",
    description: "pong with 126-byte payload",
    input: srv(rawFrame(PONG, new Uint8Array(126))),
    expect: { close: 1002 },
  },
  {
    id: "P06",
    category: "pings",
    description: "ten pings in a row get ten pongs",
    input: srv(concat(...Array.from({ length: 10 }, () => rawFrame(PING, "x")))),
    expect: {
      events: Array(10).fill("ping:1"),
      sent: Array(10).fill("pong:1"),
    },
  },
  {
    id: "P07",
    category: "pings",
    description: "ping declaring a 64-bit length (control frames are at most 125 bytes)",
    input: srv(rawFrame(PING, u8(1), { declaredLength: 70000, lengthForm: 64 })),
    expect: { close: 1002 },
  },
  // reserved bits
  ...(["rsv1", "rsv2", "rsv3"] as const).map((bit, i): ConformanceCase => ({
    id: `R0${i + 1}`,
    category: "reserved-bits",
    description: `${bit.toUpperCase()} set on a text frame, no extension negotiated`,
    input: srv(rawFrame(T, "hi", { [bit]: true })),
    expect: { close: 1002 },
  })),
  {
    id: "R04",
    category: "reserved-bits",
    description: "RSV1+RSV2+RSV3 on a ping",
    input: srv(rawFrame(PING, "", { rsv1: true, rsv2: true, rsv3: true })),
    expect: { close: 1002 },
  },
  {
    id: "R05",
    category: "reserved-bits",
    description: "RSV2 on a close frame",
    input: srv(rawFrame(CLOSE, closePayload(1000), { rsv2: true })),
    expect: { close: 1002 },
  },
  {
    id: "R06",
    category: "reserved-bits",
    description: "RSV3 on a binary frame after a valid message",
    input: srv(concat(rawFrame(T, "first"), rawFrame(B, "x", { rsv3: true }))),
    expect: { close: 1002, events: ["text:first"] },
  },
  // opcodes
  ...[3, 4, 5, 6, 7, 11, 12, 13, 14, 15].map((op, i): ConformanceCase => ({
    id: `O${String(i + 1).padStart(2, "0")}`,
    category: "opcodes",
    description: `reserved ${op < 8 ? "data" : "control"} opcode 0x${op.toString(16)}`,
    input: srv(rawFrame(op, "x")),
    expect: { close: 1002 },
  })),
  {
    id: "O11",
    category: "opcodes",
    description: "reserved opcode 0x5 inside a fragmented message",
    input: srv(concat(rawFrame(T, "a", { fin: false }), rawFrame(5, ""), rawFrame(C, "b"))),
    expect: { close: 1002 },
  },
  // fragmentation
  {
    id: "G01",
    category: "fragmentation",
    description: "continuation frame without a message",
    input: srv(rawFrame(C, "x", { fin: false })),
    expect: { close: 1002 },
  },
  {
    id: "G02",
    category: "fragmentation",
    description: "final continuation frame without a message",
    input: srv(rawFrame(C, "x")),
    expect: { close: 1002 },
  },
  {
    id: "G03",
    category: "fragmentation",
    description: "new text frame while a fragmented text message is open",
    input: srv(concat(rawFrame(T, "a", { fin: false }), rawFrame(T, "b"))),
    expect: { close: 1002 },
  },
  {
    id: "G04",
    category: "fragmentation",
    description: "new binary frame while a fragmented binary message is open",
    input: srv(concat(rawFrame(B, "a", { fin: false }), rawFrame(B, "b"))),
    expect: { close: 1002 },
  },
  {
    id: "G05",
    category: "fragmentation",
    description: "ping and pong interleaved in a fragmented message",
    input: srv(concat(
      rawFrame(T, "frag", { fin: false }),
      rawFrame(PING, "p"),
      rawFrame(C, "ment", { fin: false }),
      rawFrame(PONG, ""),
      rawFrame(C, "ed"),
    )),
    expect: { events: ["ping:1", "pong:0", "text:fragmented"], sent: ["pong:1"] },
  },
  {
    id: "G06",
    category: "fragmentation",
    description: "fragmented close frame (FIN=0)",
    input: srv(rawFrame(CLOSE, closePayload(1000), { fin: false })),
    expect: { close: 1002 },
  },
  {
    id: "G07",
    category: "fragmentation",
    description: "text message in 1-byte fragments",
    input: srv(concat(
      ...[..."fragments"].map((ch, i, a) =>
        rawFrame(i === 0 ? T : C, ch, { fin: i === a.length - 1 })
      ),
    )),
    expect: { events: ["text:fragments"] },
  },
  {
    id: "G08",
    category: "fragmentation",
    description: "text message whose fragments are all empty",
    input: srv(
      concat(rawFrame(T, "", { fin: false }), rawFrame(C, "", { fin: false }), rawFrame(C, "")),
    ),
    expect: { events: ["text:"] },
  },
  {
    id: "G09",
    category: "fragmentation",
    description: "continuation frame after a completed fragmented message",
    input: srv(concat(rawFrame(T, "a", { fin: false }), rawFrame(C, "b"), rawFrame(C, "c"))),
    expect: { close: 1002, events: ["text:ab"] },
  },
  {
    id: "G10",
    category: "fragmentation",
    description: "close in the middle of a fragmented message drops the partial message",
    input: srv(concat(rawFrame(T, "a", { fin: false }), rawFrame(CLOSE, closePayload(1000)))),
    expect: { events: ["close:1000"], sent: ["close:1000"] },
  },
  // UTF-8
  {
    id: "U01",
    category: "utf8",
    description: "valid multi-byte text (κόσμε)",
    input: srv(rawFrame(T, "κόσμε")),
    expect: { events: ["text:κόσμε"] },
  },
  ...([
    ["0xFF byte", [0x61, 0xff]],
    ["overlong '/' (C0 AF)", [0xc0, 0xaf]],
    ["overlong 3-byte NUL (E0 80 80)", [0xe0, 0x80, 0x80]],
    ["overlong 4-byte (F0 80 80 80)", [0xf0, 0x80, 0x80, 0x80]],
    ["high surrogate U+D800 (ED A0 80)", [0xed, 0xa0, 0x80]],
    ["low surrogate U+DC00 (ED B0 80)", [0xed, 0xb0, 0x80]],
    ["code point over U+10FFFF (F4 90 80 80)", [0xf4, 0x90, 0x80, 0x80]],
    ["5-byte sequence (F8 88 80 80 80)", [0xf8, 0x88, 0x80, 0x80, 0x80]],
    ["lone continuation byte 0x80", [0x80]],
    ["truncated sequence at the end of the message (E2 82)", [0x61, 0xe2, 0x82]],
  ] as [string, number[]][]).map(([what, bytes], i): ConformanceCase => ({
    id: `U${String(i + 2).padStart(2, "0")}`,
    category: "utf8",
    description: `invalid UTF-8: ${what}`,
    input: srv(textOf(u8(...bytes))),
    expect: { close: 1007 },
  })),
  {
    id: "U12",
    category: "utf8",
    description: "invalid sequence split across fragments (F4 | 90 80 80)",
    input: srv(
      concat(rawFrame(T, u8(0x61, 0xf4), { fin: false }), rawFrame(C, u8(0x90, 0x80, 0x80))),
    ),
    expect: { close: 1007 },
  },
  {
    id: "U13",
    category: "utf8",
    description:
      "fail fast: first fragment can never be completed (CE BA E1 BD B9 CE BC CE B5 ED A0), no FIN yet",
    input: srv(rawFrame(T, u8(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0), {
      fin: false,
    })),
    expect: { close: 1007 },
  },
  {
    id: "U14",
    category: "utf8",
    description: "valid 3-byte character split across fragments (E2 82 | AC)",
    input: srv(concat(rawFrame(T, u8(0xe2, 0x82), { fin: false }), rawFrame(C, u8(0xac)))),
    expect: { events: ["text:€"] },
  },
  {
    id: "U15",
    category: "utf8",
    description: "valid 4-byte character split over three fragments",
    input: srv(concat(
      rawFrame(T, u8(0xf0), { fin: false }),
      rawFrame(C, u8(0x9f, 0x98), { fin: false }),
      rawFrame(C, u8(0x80)),
    )),
    expect: { events: ["text:😀"] },
  },
  {
    id: "U16",
    category: "utf8",
    description: "fragmented text ending inside a character",
    input: srv(concat(rawFrame(T, "ok", { fin: false }), rawFrame(C, u8(0xf0, 0x9f)))),
    expect: { close: 1007 },
  },
  {
    id: "U17",
    category: "utf8",
    description: "noncharacter U+FFFF is valid UTF-8",
    input: srv(textOf(u8(0xef, 0xbf, 0xbf))),
    expect: { events: ["text:\uffff"] },
  },
  // close
  {
    id: "C01",
    category: "close",
    description: "close with an empty payload is echoed empty (1005)",
    input: srv(rawFrame(CLOSE)),
    expect: { events: ["close:1005"], sent: ["close:1005"] },
  },
  {
    id: "C02",
    category: "close",
    description: "close with a 1-byte payload",
    input: srv(rawFrame(CLOSE, u8(0x03))),
    expect: { close: 1002 },
  },
  ...INVALID_CLOSE_CODES.map((code, i): ConformanceCase => ({
    id: `C${String(i + 3).padStart(2, "0")}`,
    category: "close",
    description: `close with invalid code ${code}`,
    input: srv(rawFrame(CLOSE, closePayload(code))),
    expect: { close: 1002 },
  })),
  ...VALID_CLOSE_CODES.map((code, i): ConformanceCase => ({
    id: `C${String(i + 3 + INVALID_CLOSE_CODES.length).padStart(2, "0")}`,
    category: "close",
    description: `close with valid code ${code} is echoed`,
    input: srv(rawFrame(CLOSE, closePayload(code, "bye"))),
    expect: { events: [`close:${code}`], sent: [`close:${code}`] },
  })),
  {
    id: "C24",
    category: "close",
    description: "close reason that is not valid UTF-8",
    input: srv(rawFrame(CLOSE, closePayload(1000, u8(0xce, 0xba, 0xed, 0xa0, 0x80)))),
    expect: { close: 1007 },
  },
  {
    id: "C25",
    category: "close",
    description: "close with a 123-byte reason (125-byte payload)",
    input: srv(rawFrame(CLOSE, closePayload(1000, "r".repeat(123)))),
    expect: { events: ["close:1000"], sent: ["close:1000"] },
  },
  {
    id: "C26",
    category: "close",
    description: "close with a 124-byte reason (126-byte control payload)",
    input: srv(rawFrame(CLOSE, closePayload(1000, "r".repeat(124)))),
    expect: { close: 1002 },
  },
  {
    id: "C27",
    category: "close",
    description: "frames after the close frame are ignored",
    input: srv(concat(rawFrame(CLOSE, closePayload(1000)), rawFrame(T, "late"), rawFrame(PING))),
    expect: { events: ["close:1000"], sent: ["close:1000"] },
  },
  {
    id: "C28",
    category: "close",
    description: "garbage after the close frame is ignored",
    input: srv(concat(rawFrame(CLOSE, closePayload(1001)), u8(0xff, 0xff, 0xff, 0xff))),
    expect: { events: ["close:1001"], sent: ["close:1001"] },
  },
  // limits
  {
    id: "L01",
    category: "limits",
    description: "frame header declaring more than maxMessageSize (refused before the payload)",
    input: srv(rawFrame(B, u8(1), { declaredLength: 2_000_000 }), { maxMessageSize: 1 << 20 }),
    expect: { close: 1009 },
  },
  {
    id: "L02",
    category: "limits",
    description: "fragmented message growing past maxMessageSize",
    input: srv(
      concat(
        rawFrame(B, new Uint8Array(600), { fin: false }),
        rawFrame(C, new Uint8Array(600), { fin: false }),
      ),
      { maxMessageSize: 1000 },
    ),
    expect: { close: 1009 },
  },
  {
    id: "L03",
    category: "limits",
    description: "message of exactly maxMessageSize is accepted",
    input: srv(rawFrame(B, new Uint8Array(1000)), { maxMessageSize: 1000 }),
    expect: { events: ["binary:1000"] },
  },
  {
    id: "L04",
    category: "limits",
    description: "declared length 2^53 (largest a 64-bit header may claim here)",
    input: srv(rawFrame(B, u8(), { declaredLength: 1n << 53n })),
    expect: { close: 1009 },
  },
  // compression
  {
    id: "Z01",
    category: "compression",
    description: "compressed text message (RSV1) is inflated",
    input: srv(rawFrame(T, deflateRaw(enc.encode("Hello, compressed world")), { rsv1: true }), {
      deflate: DEFLATE,
    }),
    expect: { events: ["text:Hello, compressed world"] },
  },
  {
    id: "Z02",
    category: "compression",
    description: "compressed message in fragments, RSV1 on the first only",
    input: (() => {
      const z = deflateRaw(enc.encode("fragmented and compressed ".repeat(20)));
      const h = z.length >> 1;
      return srv(
        concat(
          rawFrame(B, z.subarray(0, h), { rsv1: true, fin: false }),
          rawFrame(C, z.subarray(h)),
        ),
        {
          deflate: DEFLATE,
        },
      );
    })(),
    expect: { events: ["binary:520"] },
  },
  {
    id: "Z03",
    category: "compression",
    description: "RSV1 on a continuation frame",
    input: srv(concat(rawFrame(T, "a", { fin: false }), rawFrame(C, "b", { rsv1: true })), {
      deflate: DEFLATE,
    }),
    expect: { close: 1002 },
  },
  {
    id: "Z04",
    category: "compression",
    description: "RSV1 on a control frame",
    input: srv(rawFrame(PING, "", { rsv1: true }), { deflate: DEFLATE }),
    expect: { close: 1002 },
  },
  {
    id: "Z05",
    category: "compression",
    description: "corrupt deflate data",
    input: srv(rawFrame(B, u8(0xff, 0xff, 0xff, 0x00, 0x11), { rsv1: true }), { deflate: DEFLATE }),
    expect: { close: 1007 },
  },
  {
    id: "Z06",
    category: "compression",
    description: "decompression bomb: 32 KiB inflating to 32 MiB, limit 1 MiB",
    input: srv(rawFrame(B, BOMB, { rsv1: true }), { deflate: DEFLATE, maxMessageSize: 1 << 20 }),
    expect: { close: 1009 },
  },
  {
    id: "Z07",
    category: "compression",
    description: "context takeover: second message refers to the first one's window",
    input: srv(
      concat(rawFrame(T, TAKEOVER_1, { rsv1: true }), rawFrame(T, TAKEOVER_2, { rsv1: true })),
      {
        deflate: DEFLATE,
      },
    ),
    expect: {
      events: ["text:context takeover context takeover", "text:context takeover context takeover"],
    },
  },
  {
    id: "Z08",
    category: "compression",
    description: "compressed text that inflates to invalid UTF-8",
    input: srv(rawFrame(T, deflateRaw(u8(0x61, 0xed, 0xa0, 0x80)), { rsv1: true }), {
      deflate: DEFLATE,
    }),
    expect: { close: 1007 },
  },
  {
    id: "Z09",
    category: "compression",
    description: "uncompressed message (RSV1 clear) on a deflate connection",
    input: srv(rawFrame(T, "plain"), { deflate: DEFLATE }),
    expect: { events: ["text:plain"] },
  },
  {
    id: "Z10",
    category: "compression",
    description: "messages ending with a BFINAL block (RFC 7692 §7.2.3.3)",
    input: srv(
      concat(
        rawFrame(T, new Uint8Array(zlib.deflateRawSync(enc.encode("final one"))), { rsv1: true }),
        rawFrame(T, new Uint8Array(zlib.deflateRawSync(enc.encode("final two"))), { rsv1: true }),
      ),
      { deflate: DEFLATE },
    ),
    expect: { events: ["text:final one", "text:final two"] },
  },
  {
    id: "Z11",
    category: "compression",
    description: "decompression bomb split over four fragments with a ping between",
    input: srv(
      concat(
        rawFrame(B, BOMB.subarray(0, 8000), { rsv1: true, fin: false }),
        rawFrame(C, BOMB.subarray(8000, 16000), { fin: false }),
        rawFrame(PING, "p"),
        rawFrame(C, BOMB.subarray(16000, 24000), { fin: false }),
        rawFrame(C, BOMB.subarray(24000)),
      ),
      { deflate: DEFLATE, maxMessageSize: 1 << 20 },
    ),
    expect: { close: 1009, events: ["ping:1"] },
  },
  {
    id: "Z12",
    category: "compression",
    description: "compressed payload itself larger than maxMessageSize",
    input: srv(rawFrame(B, BOMB, { rsv1: true }), { deflate: DEFLATE, maxMessageSize: 1000 }),
    expect: { close: 1009 },
  },
  // handshake (server side)
  {
    id: "H01",
    category: "handshake",
    description: "valid upgrade request",
    input: { kind: "request", raw: REQ(GOOD_HEADERS) },
    expect: { status: 101 },
  },
  {
    id: "H02",
    category: "handshake",
    description: "Connection: keep-alive, Upgrade (Firefox) is accepted",
    input: { kind: "request", raw: REQ(replace("Connection", "Connection: keep-alive, Upgrade")) },
    expect: { status: 101 },
  },
  {
    id: "H03",
    category: "handshake",
    description: "Upgrade: WebSocket (mixed case) is accepted",
    input: { kind: "request", raw: REQ(replace("Upgrade", "Upgrade: WebSocket")) },
    expect: { status: 101 },
  },
  {
    id: "H04",
    category: "handshake",
    description: "POST instead of GET",
    input: { kind: "request", raw: REQ(GOOD_HEADERS, "POST /chat HTTP/1.1") },
    expect: { status: 405 },
  },
  {
    id: "H05",
    category: "handshake",
    description: "missing Upgrade header",
    input: { kind: "request", raw: REQ(without("Upgrade")) },
    expect: { status: 400 },
  },
  {
    id: "H06",
    category: "handshake",
    description: "Connection: keep-alive only (no Upgrade token)",
    input: { kind: "request", raw: REQ(replace("Connection", "Connection: keep-alive")) },
    expect: { status: 400 },
  },
  {
    id: "H07",
    category: "handshake",
    description: "Sec-WebSocket-Version: 8",
    input: {
      kind: "request",
      raw: REQ(replace("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")),
    },
    expect: { status: 426 },
  },
  {
    id: "H08",
    category: "handshake",
    description: "missing Sec-WebSocket-Version",
    input: { kind: "request", raw: REQ(without("Sec-WebSocket-Version")) },
    expect: { status: 426 },
  },
  {
    id: "H09",
    category: "handshake",
    description: "missing Sec-WebSocket-Key",
    input: { kind: "request", raw: REQ(without("Sec-WebSocket-Key")) },
    expect: { status: 400 },
  },
  {
    id: "H10",
    category: "handshake",
    description: "key that is base64 of 15 bytes",
    input: {
      kind: "request",
      raw: REQ(replace("Sec-WebSocket-Key", `Sec-WebSocket-Key: ${btoa("x".repeat(15))}`)),
    },
    expect: { status: 400 },
  },
  {
    id: "H11",
    category: "handshake",
    description: "key that is not base64",
    input: {
      kind: "request",
      raw: REQ(replace("Sec-WebSocket-Key", "Sec-WebSocket-Key: !!not-base64!!!!!!!!!!==")),
    },
    expect: { status: 400 },
  },
  {
    id: "H12",
    category: "handshake",
    description: "request head over 16 KiB",
    input: { kind: "request", raw: REQ([...GOOD_HEADERS, `X-Big: ${"a".repeat(17000)}`]) },
    expect: { status: 431 },
  },
  {
    id: "H13",
    category: "handshake",
    description: "HTTP/1.0 request",
    input: { kind: "request", raw: REQ(GOOD_HEADERS, "GET /chat HTTP/1.0") },
    expect: { status: 400 },
  },
  {
    id: "H14",
    category: "handshake",
    description: "malformed request line",
    input: { kind: "request", raw: REQ(GOOD_HEADERS, "GET/chat") },
    expect: { status: 400 },
  },
  {
    id: "H15",
    category: "handshake",
    description: "header line without a colon",
    input: { kind: "request", raw: REQ([...GOOD_HEADERS, "NoColonHere"]) },
    expect: { status: 400 },
  },
  {
    id: "H16",
    category: "handshake",
    description: "obsolete line folding",
    input: { kind: "request", raw: REQ([...GOOD_HEADERS, "X-A: 1", " continued"]) },
    expect: { status: 400 },
  },
  {
    id: "H17",
    category: "handshake",
    description: "missing Host",
    input: { kind: "request", raw: REQ(without("Host")) },
    expect: { status: 400 },
  },
  {
    id: "H18",
    category: "handshake",
    description: "subprotocol: the first offered that the server supports is selected",
    input: {
      kind: "request",
      raw: REQ([...GOOD_HEADERS, "Sec-WebSocket-Protocol: a.v1, b.v1, c.v1"]),
      protocols: ["c.v1", "b.v1"],
    },
    expect: { status: 101, protocol: "b.v1" },
  },
  {
    id: "H19",
    category: "handshake",
    description: "permessage-deflate offer with a duplicate parameter is declined",
    input: {
      kind: "request",
      raw: REQ([
        ...GOOD_HEADERS,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      ]),
      deflate: true,
    },
    expect: { status: 101, extensions: "" },
  },
  {
    id: "H20",
    category: "handshake",
    description: "bad offer declined, next acceptable offer taken",
    input: {
      kind: "request",
      raw: REQ([
        ...GOOD_HEADERS,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits",
      ]),
      deflate: true,
    },
    expect: { status: 101, extensions: "permessage-deflate" },
  },
  // handshake (client side)
  {
    id: "H21",
    category: "handshake",
    description: "valid 101 response",
    input: { kind: "response", raw: RES("101 Switching Protocols", GOOD_RESPONSE) },
    expect: { handshakeOk: true },
  },
  {
    id: "H22",
    category: "handshake",
    description: "302 redirect is not followed",
    input: { kind: "response", raw: RES("302 Found", ["Location: ws://elsewhere/"]) },
    expect: { handshakeError: true, status: 302 },
  },
  {
    id: "H23",
    category: "handshake",
    description: "403 Forbidden",
    input: { kind: "response", raw: RES("403 Forbidden", ["Content-Length: 0"]) },
    expect: { handshakeError: true, status: 403 },
  },
  {
    id: "H24",
    category: "handshake",
    description: "101 with a wrong Sec-WebSocket-Accept",
    input: {
      kind: "response",
      raw: RES("101 Switching Protocols", [
        ...GOOD_RESPONSE.slice(0, 2),
        `Sec-WebSocket-Accept: ${acceptKey("x")}`,
      ]),
    },
    expect: { handshakeError: true },
  },
  {
    id: "H25",
    category: "handshake",
    description: "101 without Upgrade: websocket",
    input: { kind: "response", raw: RES("101 Switching Protocols", GOOD_RESPONSE.slice(1)) },
    expect: { handshakeError: true },
  },
  {
    id: "H26",
    category: "handshake",
    description: "101 selecting a subprotocol that was not offered",
    input: {
      kind: "response",
      raw: RES("101 Switching Protocols", [...GOOD_RESPONSE, "Sec-WebSocket-Protocol: evil"]),
      protocols: ["chat"],
    },
    expect: { handshakeError: true },
  },
  {
    id: "H27",
    category: "handshake",
    description: "101 with an extension that was not offered",
    input: {
      kind: "response",
      raw: RES("101 Switching Protocols", [
        ...GOOD_RESPONSE,
        "Sec-WebSocket-Extensions: permessage-deflate",
      ]),
    },
    expect: { handshakeError: true },
  },
  {
    id: "H28",
    category: "handshake",
    description: "101 with permessage-deflate and a bad window size",
    input: {
      kind: "response",
      raw: RES("101 Switching Protocols", [
        ...GOOD_RESPONSE,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7",
      ]),
      deflate: true,
    },
    expect: { handshakeError: true },
  },
  {
    id: "H29",
    category: "handshake",
    description: "101 accepting the offered permessage-deflate",
    input: {
      kind: "response",
      raw: RES("101 Switching Protocols", [
        ...GOOD_RESPONSE,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12",
      ]),
      deflate: true,
    },
    expect: { handshakeOk: true, deflate: true },
  },
  {
    id: "H30",
    category: "handshake",
    description: "garbage instead of an HTTP status line",
    input: { kind: "response", raw: "SSH-2.0-OpenSSH_9.2\r\n\r\n" },
    expect: { handshakeError: true },
  },
];

/** The client key the response cases were made for. */
export const CASE_KEY = KEY;
