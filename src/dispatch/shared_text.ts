/**
 * UTF-8 text into and out of shared memory. Deno's `TextEncoder`/`TextDecoder` work on views of
 * a `SharedArrayBuffer` directly; Chromium's refuse them ("must not be shared"), so there the
 * bytes go through an unshared copy. Which way applies is found once, when this module loads.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Whether `f` runs on a one-byte shared view here (false too where there is no shared memory). */
function acceptsShared(f: (view: Uint8Array) => void): boolean {
  try {
    f(new Uint8Array(new SharedArrayBuffer(1)));
    return true;
  } catch {
    return false;
  }
}

const ENCODES_SHARED = acceptsShared((v) => encoder.encodeInto("a", v));
const DECODES_SHARED = acceptsShared((v) => decoder.decode(v));

/**
 * Writes `text` as UTF-8 into `dst` (a view of shared memory, or not) and returns the number of
 * bytes written. `dst` must have room for all of it (3 bytes per UTF-16 unit always do).
 *
 * @example
 * ```ts
 * import { encodeIntoShared } from "./shared_text.ts";
 * const dst = new Uint8Array(new SharedArrayBuffer(16));
 * console.log(encodeIntoShared("héllo", dst)); // 6
 * ```
 */
export function encodeIntoShared(text: string, dst: Uint8Array): number {
  if (ENCODES_SHARED) return encoder.encodeInto(text, dst).written;
  const bytes = encoder.encode(text);
  dst.set(bytes);
  return bytes.length;
}

/**
 * Decodes UTF-8 bytes from `view` (a view of shared memory, or not) into a string.
 *
 * @example
 * ```ts
 * import { decodeShared, encodeIntoShared } from "./shared_text.ts";
 * const view = new Uint8Array(new SharedArrayBuffer(16), 0, 6);
 * encodeIntoShared("héllo", view);
 * console.log(decodeShared(view)); // "héllo"
 * ```
 */
export function decodeShared(view: Uint8Array): string {
  return decoder.decode(DECODES_SHARED ? view : view.slice());
}
