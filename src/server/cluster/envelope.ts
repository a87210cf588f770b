/**
 * What nodes say to each other through the broker. Data (a send, a broadcast, a publish) travels
 * in a compact binary form — a kind byte, length-prefixed UTF-8 fields, then the payload as is —
 * so a message costs one copy and no JSON; the rare control talk (acks, requests, heartbeats) is
 * JSON behind a kind byte.
 *
 * @module
 */

import type { OutgoingData } from "../../transport/types.ts";

/** Envelope kinds (the first byte). */
export const K = {
  /** A message for one connection on the receiving node; answered by an ack. */
  SEND: 1,
  /** A message for every inbound connection of every node. */
  BROADCAST: 2,
  /** A message for every subscriber of a topic. */
  PUBLISH: 3,
  /** JSON: acks, requests and replies, heartbeats. */
  CONTROL: 4,
} as const;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A data envelope, decoded. `fields` are the kind's strings, in order. */
export interface DataEnvelope {
  kind: number;
  fields: string[];
  /** A number carried beside the fields (the send's id, for its ack). */
  n: number;
  data: OutgoingData;
}

/**
 * Encodes a data envelope: `[kind][u32 n][u8 text?][u8 count]([u16 len][utf8])*[payload]`.
 *
 * @example
 * ```ts
 * import { decodeData, encodeData, K } from "./envelope.ts";
 * const bytes = encodeData(K.SEND, ["a", "a.xxxxxxxxxxxxxxxx"], 7, "hello");
 * console.log(decodeData(bytes).data); // "hello"
 * ```
 */
export function encodeData(
  kind: number,
  fields: string[],
  n: number,
  data: OutgoingData,
): Uint8Array {
  const encoded = fields.map((f) => enc.encode(f));
  const text = typeof data === "string";
  const body = text ? enc.encode(data) : data;
  let size = 7 + body.length;
  for (const f of encoded) size += 2 + f.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = kind;
  view.setUint32(1, n >>> 0);
  out[5] = text ? 1 : 0;
  out[6] = encoded.length;
  let at = 7;
  for (const f of encoded) {
    view.setUint16(at, f.length);
    out.set(f, at + 2);
    at += 2 + f.length;
  }
  out.set(body, at);
  return out;
}

/** Decodes a data envelope; throws `RangeError` on bytes that are not one. */
export function decodeData(bytes: Uint8Array): DataEnvelope {
  if (bytes.length < 7) throw new RangeError("a cluster envelope is at least 7 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes[6];
  const fields: string[] = [];
  let at = 7;
  for (let i = 0; i < count; i++) {
    if (at + 2 > bytes.length) throw new RangeError("a cluster envelope field is cut short");
    const len = view.getUint16(at);
    if (at + 2 + len > bytes.length) throw new RangeError("a cluster envelope field is cut short");
    fields.push(dec.decode(bytes.subarray(at + 2, at + 2 + len)));
    at += 2 + len;
  }
  const body = bytes.subarray(at);
  return {
    kind: bytes[0],
    fields,
    n: view.getUint32(1),
    data: bytes[5] === 1 ? dec.decode(body) : body,
  };
}

/** Encodes a control message (JSON). */
export function encodeControl(message: unknown): Uint8Array {
  const json = enc.encode(JSON.stringify(message));
  const out = new Uint8Array(json.length + 1);
  out[0] = K.CONTROL;
  out.set(json, 1);
  return out;
}

/** Decodes a control message. */
export function decodeControl(bytes: Uint8Array): unknown {
  return JSON.parse(dec.decode(bytes.subarray(1)));
}
