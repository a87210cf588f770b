/**
 * Typed errors of the RFC 6455 codec: a {@linkcode ProtocolError} carries the close code the RFC asks
 * for, a {@linkcode HandshakeError} the HTTP status of a failed opening handshake.
 *
 * @module
 */

/**
 * Close codes used by the codec (RFC 6455 §7.4.1). 1005, 1006 and 1015 are never sent on the wire.
 *
 * @example
 * ```ts
 * import { CloseCode } from "./errors.ts";
 * console.log(CloseCode.ProtocolError); // 1002
 * ```
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  TlsHandshake: 1015,
} as const;

/**
 * A malformed or hostile input on an open connection. `closeCode` is what the RFC says to close
 * with: 1002 (protocol), 1007 (bad UTF-8), 1009 (too big), 1003 (unsupported data).
 *
 * @example
 * ```ts
 * import { ProtocolError } from "./errors.ts";
 * const e = new ProtocolError(1007, "invalid UTF-8 in text message");
 * console.log(e.closeCode, e.name); // 1007 ProtocolError
 * ```
 */
export class ProtocolError extends Error {
  /** The close code to send (1002, 1003, 1007, 1009, 1011). */
  readonly closeCode: number;

  /** Creates an error that closes the connection with `closeCode`. */
  constructor(closeCode: number, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.closeCode = closeCode;
  }
}

/**
 * An opening handshake that failed. On the client, `status` is the server's HTTP status when it
 * answered something other than 101 (undefined when the 101 itself was invalid). On the server,
 * `status` is the HTTP status to answer with (400, 405, 426, 431).
 *
 * @example
 * ```ts
 * import { HandshakeError } from "./errors.ts";
 * const e = new HandshakeError("server answered 403 Forbidden", { status: 403 });
 * console.log(e.status); // 403
 * ```
 */
export class HandshakeError extends Error {
  /** HTTP status: the server's answer (client side) or the one to send (server side). */
  readonly status?: number;
  /** `Location` of a 3xx answer: redirects are not followed, but the caller may want to know. */
  readonly location?: string;

  /** Creates a handshake error. */
  constructor(message: string, options: { status?: number; location?: string } = {}) {
    super(message);
    this.name = "HandshakeError";
    if (options.status !== undefined) this.status = options.status;
    if (options.location !== undefined) this.location = options.location;
  }
}

/**
 * A send, ping or close on a connection that can no longer send (our close frame went out, the
 * peer's TCP closed, or a fatal protocol error happened). A caller's mistake, not the peer's.
 *
 * @example
 * ```ts
 * import { InvalidStateError } from "./errors.ts";
 * console.log(new InvalidStateError("closing").name); // InvalidStateError
 * ```
 */
export class InvalidStateError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidStateError";
  }
}
