/**
 * Test helpers: a raw frame builder that can also build what the encoder refuses to (reserved
 * bits, huge declared lengths, fragmented control frames), and event summaries.
 *
 * @module
 */

import { applyMask } from "../../src/protocol/mask.ts";
import type { ProtocolConnection, ProtocolEvent } from "../../src/protocol/connection.ts";
import { FrameParser } from "../../src/protocol/frames.ts";
import { decodeClosePayload } from "../../src/protocol/close.ts";

export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** Options of {@linkcode rawFrame}. */
export interface RawFrameOptions {
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** Mask with this key; `true` = a fixed key; default: masked (client→server frames). */
  mask?: Uint8Array | boolean;
  /** Declared payload length (default: the real one); lets a header lie. */
  declaredLength?: number | bigint;
  /** Force a length form: 7, 16 or 64 bits (default minimal). */
  lengthForm?: 7 | 16 | 64;
}

const FIXED_KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** Builds one frame byte for byte. Default: FIN, masked (as a client sends). */
export function rawFrame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  o: RawFrameOptions = {},
): Uint8Array {
  const data = typeof payload === "string" ? enc.encode(payload) : payload;
  const key = o.mask === false ? undefined : o.mask instanceof Uint8Array ? o.mask : FIXED_KEY;
  const len = BigInt(o.declaredLength ?? data.length);
  const form = o.lengthForm ?? (len < 126n ? 7 : len < 65536n ? 16 : 64);
  const head: number[] = [
    ((o.fin ?? true) ? 0x80 : 0) | (o.rsv1 ? 0x40 : 0) | (o.rsv2 ? 0x20 : 0) |
    (o.rsv3 ? 0x10 : 0) | opcode,
  ];
  const m = key ? 0x80 : 0;
  if (form === 7) head.push(m | Number(len));
  else if (form === 16) head.push(m | 126, Number(len >> 8n) & 0xff, Number(len) & 0xff);
  else {
    head.push(m | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((len >> BigInt(i * 8)) & 0xffn));
  }
  if (key) head.push(...key);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  if (key) applyMask(out.subarray(head.length), key);
  return out;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** A one-line summary of an event, for comparing against expectations. */
export function summarize(e: ProtocolEvent): string {
  switch (e.type) {
    case "text":
      return `text:${e.data.length > 40 ? e.data.slice(0, 40) + "…" : e.data}`;
    case "binary":
      return `binary:${e.data.length}`;
    case "ping":
    case "pong":
      return `${e.type}:${e.data.length}`;
    case "close":
      return `close:${e.code}`;
    case "error":
      return `error:${e.error.closeCode}`;
  }
}

/** Drains all events. */
export function drain(conn: ProtocolConnection): ProtocolEvent[] {
  const out: ProtocolEvent[] = [];
  let e: ProtocolEvent | undefined;
  while ((e = conn.nextEvent()) !== undefined) out.push(e);
  return out;
}

/** Parses the frames a connection queued (as its peer would, without mask checks). */
export function outgoingFrames(
  conn: ProtocolConnection,
): { opcode: number; payload: Uint8Array }[] {
  const parser = new FrameParser({ allowRsv1: true });
  for (const b of conn.takeOutgoing()) parser.push(b.slice());
  const frames = [];
  let f;
  while ((f = parser.next()) !== undefined) frames.push({ opcode: f.opcode, payload: f.payload });
  return frames;
}

/** The close code of the close frame among `frames`, or undefined. 1005 for an empty payload. */
export function sentCloseCode(
  frames: { opcode: number; payload: Uint8Array }[],
): number | undefined {
  const c = frames.find((f) => f.opcode === 8);
  if (!c) return undefined;
  if (c.payload.length < 2) return 1005;
  return decodeClosePayload(c.payload).code;
}
