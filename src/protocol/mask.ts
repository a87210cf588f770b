/**
 * Masking (RFC 6455 §5.3): XOR with a 4-byte key, four bytes at a time through a Uint32 view once
 * the data is aligned, since a per-byte loop is the parser's hottest path on a server.
 *
 * @module
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * XORs `data` in place with the 4-byte `key`, starting at key position `keyOffset` (0..3).
 * Applying it twice restores the data.
 *
 * @example
 * ```ts
 * import { applyMask } from "./mask.ts";
 * const data = new Uint8Array([1, 2, 3, 4, 5]);
 * const key = new Uint8Array([9, 8, 7, 6]);
 * applyMask(data, key);
 * applyMask(data, key);
 * console.log(data); // Uint8Array(5) [ 1, 2, 3, 4, 5 ]
 * ```
 */
export function applyMask(data: Uint8Array, key: Uint8Array, keyOffset = 0): void {
  const n = data.length;
  let i = 0;
  if (n >= 32) {
    // Byte-wise up to a 4-byte boundary of the underlying buffer, then whole words.
    const head = (4 - ((data.byteOffset) & 3)) & 3;
    for (; i < head; i++) data[i] ^= key[(i + keyOffset) & 3];
    const k0 = key[(i + keyOffset) & 3];
    const k1 = key[(i + keyOffset + 1) & 3];
    const k2 = key[(i + keyOffset + 2) & 3];
    const k3 = key[(i + keyOffset + 3) & 3];
    const k32 = LITTLE_ENDIAN
      ? (k0 | (k1 << 8) | (k2 << 16) | (k3 << 24)) >>> 0
      : ((k0 << 24) | (k1 << 16) | (k2 << 8) | k3) >>> 0;
    const words = (n - i) >>> 2;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] ^= k32;
    i += words << 2;
  }
  for (; i < n; i++) data[i] ^= key[(i + keyOffset) & 3];
}

let maskPool = new Uint8Array(0);
let maskPos = 0;

/**
 * A fresh 4-byte masking key, drawn from a crypto-random pool (one `getRandomValues` per 1024 keys
 * instead of one per frame).
 *
 * @example
 * ```ts
 * import { nextMaskKey } from "./mask.ts";
 * console.log(nextMaskKey().length); // 4
 * ```
 */
export function nextMaskKey(): Uint8Array {
  if (maskPos + 4 > maskPool.length) {
    maskPool = crypto.getRandomValues(new Uint8Array(4096));
    maskPos = 0;
  }
  const key = maskPool.subarray(maskPos, maskPos + 4);
  maskPos += 4;
  return key;
}
