/**
 * The pure RFC 6455 codec: framing, the sans-I/O connection state machine, the opening
 * handshake and permessage-deflate. No sockets, no timers.
 *
 * @example
 * ```ts
 * import { ProtocolConnection } from "./mod.ts";
 * const server = new ProtocolConnection({ role: "server" });
 * server.sendText("hi");
 * console.log(server.takeOutgoing()[0]); // Uint8Array(4) [ 129, 2, 104, 105 ]
 * ```
 *
 * @module
 */

export { CloseCode, HandshakeError, InvalidStateError, ProtocolError } from "./errors.ts";
export {
  encodedFrameLength,
  encodeFrame,
  encodeFrameHeader,
  encodeFrameHeaderInto,
  encodeFrameInto,
  type EncodeOptions,
  type Frame,
  FrameParser,
  type FrameParserOptions,
  isControlOpcode,
  MAX_CONTROL_PAYLOAD,
  Opcode,
} from "./frames.ts";
export { applyMask } from "./mask.ts";
export { decodeUtf8, isValidUtf8, UTF8_ACCEPT, UTF8_REJECT, validateUtf8 } from "./utf8.ts";
export {
  decodeClosePayload,
  encodeClosePayload,
  isValidCloseCode,
  MAX_CLOSE_REASON,
  truncateCloseReason,
} from "./close.ts";
export {
  DEFAULT_MAX_MESSAGE_SIZE,
  ProtocolConnection,
  type ProtocolEvent,
  type ProtocolOptions,
} from "./connection.ts";
export {
  acceptKey,
  buildClientRequest,
  buildHttpResponse,
  type ClientHandshakeOptions,
  generateKey,
  type HandshakeRejection,
  type HandshakeRequest,
  type HandshakeResult,
  hasToken,
  HttpHeadReader,
  isValidKey,
  MAX_HEAD_SIZE,
  negotiateServer,
  parseRequestHead,
  parseResponseHead,
  rejectionResponse,
  type RequestHead,
  type ResponseHead,
  type ServerHandshakeOptions,
  type ServerNegotiation,
  validateServerResponse,
  WEBSOCKET_GUID,
} from "./handshake.ts";
export {
  acceptDeflateResponse,
  buildDeflateOffer,
  DEFAULT_DEFLATE_PARAMS,
  type DeflateOptions,
  type DeflateParams,
  type ExtensionOffer,
  negotiateDeflateServer,
  parseExtensions,
  PERMESSAGE_DEFLATE,
  PerMessageDeflate,
} from "./deflate.ts";
