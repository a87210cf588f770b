/**
 * Close frame payload rules (RFC 6455 §5.5.1, §7.4): which codes may appear on the wire, the
 * 123-byte reason limit, and encoding/decoding of the payload.
 *
 * @module
 */

import { CloseCode, ProtocolError } from "./errors.ts";

const ENCODER = new TextEncoder();
const FATAL_DECODER = new TextDecoder("utf-8", { fatal: true });

/**
 * Longest close reason in UTF-8 bytes (125 - 2 for the code).
 *
 * @example
 * ```ts
 * import { MAX_CLOSE_REASON } from "./close.ts";
 * console.log(MAX_CLOSE_REASON); // 123
 * ```
 */
export const MAX_CLOSE_REASON = 123;

/**
 * True when `code` may appear in a close frame: 1000-1003, 1007-1014 (1004-1006 and 1015 are
 * reserved, never on the wire) and 3000-4999.
 *
 * @example
 * ```ts
 * import { isValidCloseCode } from "./close.ts";
 * console.log(isValidCloseCode(1000), isValidCloseCode(1005), isValidCloseCode(4000)); // true false true
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Parses a received close payload. Empty gives 1005 (no status). Throws a
 * {@linkcode ProtocolError}: 1002 for a 1-byte payload or a bad code, 1007 for a non-UTF-8 reason.
 *
 * @example
 * ```ts
 * import { decodeClosePayload, encodeClosePayload } from "./close.ts";
 * console.log(decodeClosePayload(encodeClosePayload(1000, "bye"))); // { code: 1000, reason: "bye" }
 * console.log(decodeClosePayload(new Uint8Array(0))); // { code: 1005, reason: "" }
 * ```
 */
export function decodeClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: "" };
  if (payload.length === 1) {
    throw new ProtocolError(CloseCode.ProtocolError, "close frame with a 1-byte payload");
  }
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) {
    throw new ProtocolError(CloseCode.ProtocolError, `invalid close code ${code}`);
  }
  let reason: string;
  try {
    reason = FATAL_DECODER.decode(payload.subarray(2));
  } catch {
    throw new ProtocolError(CloseCode.InvalidPayload, "close reason is not valid UTF-8");
  }
  return { code, reason };
}

/**
 * Builds a close payload. Throws a `RangeError` for a code that may not be sent or a reason over
 * 123 bytes. Code 1005 means "no status" and gives an empty payload.
 *
 * @example
 * ```ts
 * import { encodeClosePayload } from "./close.ts";
 * console.log(encodeClosePayload(1000, "")); // Uint8Array(2) [ 3, 232 ]
 * ```
 */
export function encodeClosePayload(code: number, reason: string = ""): Uint8Array {
  if (code === CloseCode.NoStatus) {
    if (reason !== "") throw new RangeError("a close reason needs a close code");
    return new Uint8Array(0);
  }
  if (!Number.isInteger(code) || !isValidCloseCode(code)) {
    throw new RangeError(`close code ${code} may not be sent`);
  }
  const r = ENCODER.encode(reason);
  if (r.length > MAX_CLOSE_REASON) {
    throw new RangeError(`close reason is ${r.length} bytes, the limit is ${MAX_CLOSE_REASON}`);
  }
  const out = new Uint8Array(2 + r.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(r, 2);
  return out;
}

/**
 * Cuts `reason` to at most 123 UTF-8 bytes without splitting a character (for our own error
 * messages, which may be long).
 *
 * @example
 * ```ts
 * import { truncateCloseReason } from "./close.ts";
 * console.log(new TextEncoder().encode(truncateCloseReason("é".repeat(100))).length); // 122
 * ```
 */
export function truncateCloseReason(reason: string): string {
  if (reason.length <= MAX_CLOSE_REASON / 3) return reason;
  let bytes = 0;
  let i = 0;
  for (const ch of reason) {
    const cp = ch.codePointAt(0)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > MAX_CLOSE_REASON) break;
    bytes += n;
    i += ch.length;
  }
  return reason.slice(0, i);
}
