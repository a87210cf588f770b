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
  /** Several SEND envelopes for one node, made in one turn of the event loop. */
  BATCH: 5,
  /** The ids of sends delivered (the common answer, without JSON). */
  ACKS: 6,
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

/**
 * Packs envelopes for one node into one: `[BATCH][u32 count]([u32 len][envelope])*`.
 *
 * @example
 * ```ts
 * import { encodeBatch, encodeData, K, unpackBatch } from "./envelope.ts";
 * const batch = encodeBatch([encodeData(K.SEND, ["a", "b.x"], 1, "hi"), encodeData(K.SEND, ["a", "b.y"], 2, "yo")]);
 * console.log(unpackBatch(batch).length); // 2
 * ```
 */
export function encodeBatch(parts: readonly Uint8Array[]): Uint8Array {
  let size = 5;
  for (const p of parts) size += 4 + p.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = K.BATCH;
  view.setUint32(1, parts.length);
  let at = 5;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** The envelopes of a batch (views of its bytes); throws `RangeError` on a cut-short batch. */
export function unpackBatch(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length < 5) throw new RangeError("a cluster batch is at least 5 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(1);
  const parts: Uint8Array[] = [];
  let at = 5;
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.length) throw new RangeError("a cluster batch is cut short");
    const len = view.getUint32(at);
    if (at + 4 + len > bytes.length) throw new RangeError("a cluster batch is cut short");
    parts.push(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return parts;
}

/**
 * Encodes the ids of delivered sends: `[ACKS]([u32 id])*`.
 *
 * @example
 * ```ts
 * import { decodeAcks, encodeAcks } from "./envelope.ts";
 * console.log(decodeAcks(encodeAcks([3, 4, 5]))); // [3, 4, 5]
 * ```
 */
export function encodeAcks(ids: readonly number[]): Uint8Array {
  const out = new Uint8Array(1 + 4 * ids.length);
  const view = new DataView(out.buffer);
  out[0] = K.ACKS;
  for (let i = 0; i < ids.length; i++) view.setUint32(1 + 4 * i, ids[i] >>> 0);
  return out;
}

/** Decodes the ids of an ACKS envelope. */
export function decodeAcks(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids: number[] = [];
  for (let at = 1; at + 4 <= bytes.length; at += 4) ids.push(view.getUint32(at));
  return ids;
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
