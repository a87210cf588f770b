/**
 * Recycled frame buffers for the write path. A binary frame is encoded into a pooled buffer,
 * written, and the buffer goes back to the pool once the socket is done with it, so steady
 * traffic stops allocating a new ArrayBuffer per message (each one counts against V8's external
 * memory and brings the next full GC closer). Buffers come in power-of-two classes from 1 KiB to
 * 1 MiB; at most 4 MiB in total is kept.
 *
 * @module
 */

const MIN_CLASS = 10;
const MAX_CLASS = 20;
const KEEP_PER_CLASS = 8;
const KEEP_BYTES = 4 * 1024 * 1024;

const free: Uint8Array[][] = Array.from({ length: MAX_CLASS + 1 }, () => []);
let kept = 0;

function classOf(size: number): number {
  return Math.max(MIN_CLASS, 32 - Math.clz32(size - 1));
}

/**
 * A buffer of at least `size` bytes, recycled when possible. Its content is garbage.
 *
 * @example
 * ```ts
 * import { recycleBuffer, takeBuffer } from "./tcp_buffers.ts";
 * const buf = takeBuffer(3000); // 4096 bytes
 * recycleBuffer(buf);
 * ```
 */
export function takeBuffer(size: number): Uint8Array {
  if (size > 1 << MAX_CLASS) return new Uint8Array(size);
  const k = classOf(size);
  const b = free[k].pop();
  if (b) {
    kept -= b.length;
    return b;
  }
  return new Uint8Array(1 << k);
}

/**
 * Gives a buffer from {@linkcode takeBuffer} back. The caller must hold no view on it any more.
 *
 * @example
 * ```ts
 * import { recycleBuffer, takeBuffer } from "./tcp_buffers.ts";
 * recycleBuffer(takeBuffer(100));
 * ```
 */
export function recycleBuffer(buf: Uint8Array): void {
  const len = buf.length;
  if (buf.byteOffset !== 0 || buf.buffer.byteLength !== len) return;
  if (len < 1 << MIN_CLASS || len > 1 << MAX_CLASS || (len & (len - 1)) !== 0) return;
  const k = classOf(len);
  if (free[k].length >= KEEP_PER_CLASS || kept + len > KEEP_BYTES) return;
  free[k].push(buf);
  kept += len;
}
