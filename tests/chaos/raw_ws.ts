/**
 * The server side of RFC 6455, written out by hand on a raw `Deno.Conn` so a test controls every
 * byte: the upgrade, unmasked frames to the client, masked frames from it. No library, no
 * validation beyond what the tests need; faults are whatever the test writes.
 *
 * @module
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Opcodes. */
export const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** One frame from the client, unmasked. */
export interface ClientFrame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/**
 * Reads the HTTP upgrade request and answers 101. Resolves with the request path and the bytes
 * read past the head, or undefined when the peer closed or sent no key first.
 */
export async function acceptUpgrade(
  conn: Deno.Conn,
): Promise<{ path: string; rest: Uint8Array } | undefined> {
  let head = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  // Bounded: a head over 16 KiB is refused.
  while (head.length < 16 * 1024) {
    const n = await conn.read(buf);
    if (n === null) return undefined;
    const next = new Uint8Array(head.length + n);
    next.set(head);
    next.set(buf.subarray(0, n), head.length);
    head = next;
    const text = decoder.decode(head);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const lines = text.slice(0, end).split("\r\n");
    const path = lines[0].split(" ")[1] ?? "/";
    const key = lines.find((l) => /^sec-websocket-key:/i.test(l))?.split(":")[1]?.trim();
    if (!key) return undefined;
    const response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${await acceptKey(key)}\r\n\r\n`;
    await writeAll(conn, encoder.encode(response));
    return { path, rest: head.subarray(encoder.encode(text.slice(0, end + 4)).length) };
  }
  return undefined;
}

/** A frame header as the server writes it (never masked); `length` may be anything up to 2^53. */
export function frameHeader(opcode: number, length: number, fin = true): Uint8Array {
  const first = (fin ? 0x80 : 0) | opcode;
  if (length < 126) return new Uint8Array([first, length]);
  if (length < 65536) return new Uint8Array([first, 126, length >> 8, length & 0xff]);
  const h = new Uint8Array(10);
  h[0] = first;
  h[1] = 127;
  new DataView(h.buffer).setBigUint64(2, BigInt(length));
  return h;
}

/** A whole unmasked frame. */
export function frame(opcode: number, payload: Uint8Array | string): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const header = frameHeader(opcode, body.length);
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

/** A close frame with `code` (and no reason). */
export function closeFrame(code: number): Uint8Array {
  return frame(OP.close, new Uint8Array([code >> 8, code & 0xff]));
}

/** Writes every byte (a Deno write may be partial). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Parses masked client frames from the bytes pushed into it. */
export class ClientFrameReader {
  #buf = new Uint8Array(0);

  /** Appends bytes from the socket. */
  push(bytes: Uint8Array): void {
    const next = new Uint8Array(this.#buf.length + bytes.length);
    next.set(this.#buf);
    next.set(bytes, this.#buf.length);
    this.#buf = next;
  }

  /** The next complete frame, or undefined when more bytes are needed. */
  next(): ClientFrame | undefined {
    const b = this.#buf;
    if (b.length < 2) return undefined;
    const fin = (b[0] & 0x80) !== 0;
    const opcode = b[0] & 0x0f;
    const masked = (b[1] & 0x80) !== 0;
    let length = b[1] & 0x7f;
    let off = 2;
    if (length === 126) {
      if (b.length < 4) return undefined;
      length = (b[2] << 8) | b[3];
      off = 4;
    } else if (length === 127) {
      if (b.length < 10) return undefined;
      length = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
      off = 10;
    }
    const maskOff = off;
    if (masked) off += 4;
    if (b.length < off + length) return undefined;
    const payload = b.slice(off, off + length);
    if (masked) { for (let i = 0; i < length; i++) payload[i] ^= b[maskOff + (i & 3)]; }
    this.#buf = b.slice(off + length);
    return { fin, opcode, payload };
  }
}

/** The close code in a close frame's payload (1005 when it has none). */
export function closeCodeOf(payload: Uint8Array): number {
  return payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
}

/** Text of a payload. */
export function textOf(payload: Uint8Array): string {
  return decoder.decode(payload);
}
