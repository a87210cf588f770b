/**
 * permessage-deflate (RFC 7692): parameter negotiation for both roles and per-message
 * compression with context takeover.
 *
 * Deno 2.9.6's `node:zlib` ignores `dictionary` for raw streams and its stream `_processChunk`
 * fails, but the native handle's `writeSync` works synchronously and keeps the LZ77 window across
 * calls, which is exactly context takeover. Inflation runs in bounded chunks and stops at the
 * message size limit, so a decompression bomb costs at most that much memory.
 *
 * @module
 */

import zlib from "node:zlib";
import { CloseCode, HandshakeError, ProtocolError } from "./errors.ts";

/**
 * Negotiated permessage-deflate parameters (RFC 7692 §7.1).
 *
 * @example
 * ```ts
 * import { type DeflateParams, DEFAULT_DEFLATE_PARAMS } from "./deflate.ts";
 * const p: DeflateParams = { ...DEFAULT_DEFLATE_PARAMS, clientNoContextTakeover: true };
 * console.log(p.serverMaxWindowBits); // 15
 * ```
 */
export interface DeflateParams {
  /** The server resets its compressor after each message. */
  serverNoContextTakeover: boolean;
  /** The client resets its compressor after each message. */
  clientNoContextTakeover: boolean;
  /** LZ77 window the server compresses with (8..15). */
  serverMaxWindowBits: number;
  /** LZ77 window the client compresses with (8..15). */
  clientMaxWindowBits: number;
}

/**
 * The parameters when nothing was asked for: context takeover both ways, 15-bit windows.
 *
 * @example
 * ```ts
 * import { DEFAULT_DEFLATE_PARAMS } from "./deflate.ts";
 * console.log(DEFAULT_DEFLATE_PARAMS.clientMaxWindowBits); // 15
 * ```
 */
export const DEFAULT_DEFLATE_PARAMS: Readonly<DeflateParams> = Object.freeze({
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
});

/**
 * What a side is willing to do with permessage-deflate. Used to build the client's offer and to
 * answer offers on the server; also tunes compression.
 *
 * @example
 * ```ts
 * import type { DeflateOptions } from "./deflate.ts";
 * const opts: DeflateOptions = { threshold: 512, serverNoContextTakeover: true };
 * console.log(opts.threshold); // 512
 * ```
 */
export interface DeflateOptions {
  /** Ask (client) or insist (server) that the server resets its context per message. */
  serverNoContextTakeover?: boolean;
  /** Ask that the client resets its context per message. */
  clientNoContextTakeover?: boolean;
  /** Limit for the server's window (9..15). */
  serverMaxWindowBits?: number;
  /** Limit for the client's window (9..15). */
  clientMaxWindowBits?: number;
  /** Messages shorter than this go out uncompressed (default 1024 bytes). */
  threshold?: number;
  /** zlib compression level (default 1: speed over ratio, like most servers). */
  level?: number;
  /** zlib memLevel (default 8). */
  memLevel?: number;
}

/**
 * The extension's registered name.
 *
 * @example
 * ```ts
 * import { PERMESSAGE_DEFLATE } from "./deflate.ts";
 * console.log(PERMESSAGE_DEFLATE); // "permessage-deflate"
 * ```
 */
export const PERMESSAGE_DEFLATE = "permessage-deflate";

/**
 * One element of a `Sec-WebSocket-Extensions` header: a name and its parameters
 * (`true` for a parameter without a value).
 *
 * @example
 * ```ts
 * import type { ExtensionOffer } from "./deflate.ts";
 * const e: ExtensionOffer = { name: "permessage-deflate", params: [["client_max_window_bits", true]] };
 * console.log(e.params.length); // 1
 * ```
 */
export interface ExtensionOffer {
  /** Extension token, e.g. `permessage-deflate`. */
  name: string;
  /** Parameters in order; `true` for a parameter without a value. */
  params: [string, string | true][];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1, quoted values allowed).
 * Throws a `SyntaxError` on malformed input.
 *
 * @example
 * ```ts
 * import { parseExtensions } from "./deflate.ts";
 * const [e] = parseExtensions("permessage-deflate; client_max_window_bits; server_max_window_bits=10");
 * console.log(e.name, e.params); // permessage-deflate [ [ "client_max_window_bits", true ], [ "server_max_window_bits", "10" ] ]
 * ```
 */
export function parseExtensions(header: string): ExtensionOffer[] {
  const out: ExtensionOffer[] = [];
  // Split on commas and semicolons outside quotes.
  const items: string[][] = [[]];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (quoted) {
      if (c === "\\" && i + 1 < header.length) cur += header[++i];
      else if (c === '"') quoted = false;
      else cur += c;
      continue;
    }
    if (c === '"') {
      quoted = true;
      cur += '"'; // mark the value as having been quoted (stripped below)
    } else if (c === ";" || c === ",") {
      items[items.length - 1].push(cur.trim());
      cur = "";
      if (c === ",") items.push([]);
    } else cur += c;
  }
  if (quoted) throw new SyntaxError("unterminated quoted string in extension header");
  items[items.length - 1].push(cur.trim());
  for (const parts of items) {
    if (parts.length === 1 && parts[0] === "") continue; // empty list element
    const name = parts[0];
    if (!TOKEN.test(name)) throw new SyntaxError(`bad extension name ${JSON.stringify(name)}`);
    const params: [string, string | true][] = [];
    for (const p of parts.slice(1)) {
      const eq = p.indexOf("=");
      const key = (eq < 0 ? p : p.slice(0, eq)).trim();
      if (!TOKEN.test(key)) throw new SyntaxError(`bad extension parameter ${JSON.stringify(p)}`);
      if (eq < 0) {
        params.push([key, true]);
        continue;
      }
      let value = p.slice(eq + 1).trim().replaceAll('"', "");
      value = value.trim();
      if (!TOKEN.test(value)) throw new SyntaxError(`bad value for ${key}`);
      params.push([key, value]);
    }
    out.push({ name, params });
  }
  return out;
}

function parseBits(value: string | true, key: string): number {
  if (value === true || !/^(8|9|1[0-5])$/.test(value)) {
    throw new SyntaxError(`${key} must be an integer 8..15`);
  }
  return Number(value);
}

interface RawParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number | true;
}

/** Validates one permessage-deflate element's parameters: known names, no duplicates, good values. */
function readParams(ext: ExtensionOffer, isResponse: boolean): RawParams {
  const seen = new Set<string>();
  const r: RawParams = { serverNoContextTakeover: false, clientNoContextTakeover: false };
  for (const [key, value] of ext.params) {
    if (seen.has(key)) throw new SyntaxError(`duplicate parameter ${key}`);
    seen.add(key);
    switch (key) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== true) throw new SyntaxError(`${key} takes no value`);
        if (key === "server_no_context_takeover") r.serverNoContextTakeover = true;
        else r.clientNoContextTakeover = true;
        break;
      case "server_max_window_bits":
        r.serverMaxWindowBits = parseBits(value, key);
        break;
      case "client_max_window_bits":
        if (value === true && isResponse) throw new SyntaxError(`${key} needs a value here`);
        r.clientMaxWindowBits = value === true ? true : parseBits(value, key);
        break;
      default:
        throw new SyntaxError(`unknown parameter ${key}`);
    }
  }
  return r;
}

function checkBitsOption(bits: number | undefined, name: string): void {
  if (bits !== undefined && (!Number.isInteger(bits) || bits < 9 || bits > 15)) {
    throw new RangeError(`${name} must be an integer 9..15`);
  }
}

/**
 * Builds the client's `Sec-WebSocket-Extensions` offer.
 *
 * @example
 * ```ts
 * import { buildDeflateOffer } from "./deflate.ts";
 * console.log(buildDeflateOffer({})); // "permessage-deflate; client_max_window_bits"
 * ```
 */
export function buildDeflateOffer(options: DeflateOptions): string {
  checkBitsOption(options.serverMaxWindowBits, "serverMaxWindowBits");
  checkBitsOption(options.clientMaxWindowBits, "clientMaxWindowBits");
  let s = PERMESSAGE_DEFLATE;
  if (options.serverNoContextTakeover) s += "; server_no_context_takeover";
  if (options.clientNoContextTakeover) s += "; client_no_context_takeover";
  if (options.serverMaxWindowBits !== undefined) {
    s += `; server_max_window_bits=${options.serverMaxWindowBits}`;
  }
  s += options.clientMaxWindowBits !== undefined
    ? `; client_max_window_bits=${options.clientMaxWindowBits}`
    : "; client_max_window_bits";
  return s;
}

/**
 * Server side: picks the first acceptable permessage-deflate offer from the client's
 * `Sec-WebSocket-Extensions` value. Returns the parameters and the response header value, or
 * `null` when there is no acceptable offer (malformed or unsupported offers are declined, as RFC
 * 7692 §5 allows). Throws a `SyntaxError` only when the whole header is unparsable.
 *
 * @example
 * ```ts
 * import { negotiateDeflateServer } from "./deflate.ts";
 * const r = negotiateDeflateServer("permessage-deflate; client_max_window_bits", {});
 * console.log(r?.response); // "permessage-deflate"
 * ```
 */
export function negotiateDeflateServer(
  offerHeader: string,
  options: DeflateOptions,
): { params: DeflateParams; response: string } | null {
  for (const ext of parseExtensions(offerHeader)) {
    if (ext.name.toLowerCase() !== PERMESSAGE_DEFLATE) continue;
    let offer: RawParams;
    try {
      offer = readParams(ext, false);
    } catch {
      continue; // decline this offer, try the next
    }
    const params: DeflateParams = { ...DEFAULT_DEFLATE_PARAMS };
    let response = PERMESSAGE_DEFLATE;
    if (offer.serverNoContextTakeover || options.serverNoContextTakeover) {
      params.serverNoContextTakeover = true;
      response += "; server_no_context_takeover";
    }
    if (offer.clientNoContextTakeover || options.clientNoContextTakeover) {
      params.clientNoContextTakeover = true;
      response += "; client_no_context_takeover";
    }
    const ownBits = options.serverMaxWindowBits;
    if (offer.serverMaxWindowBits !== undefined || ownBits !== undefined) {
      params.serverMaxWindowBits = Math.min(offer.serverMaxWindowBits ?? 15, ownBits ?? 15);
      response += `; server_max_window_bits=${params.serverMaxWindowBits}`;
    }
    if (offer.clientMaxWindowBits !== undefined) {
      const offered = offer.clientMaxWindowBits === true ? 15 : offer.clientMaxWindowBits;
      const wanted = options.clientMaxWindowBits;
      params.clientMaxWindowBits = Math.min(offered, wanted ?? 15);
      if (wanted !== undefined || offer.clientMaxWindowBits !== true) {
        response += `; client_max_window_bits=${params.clientMaxWindowBits}`;
      }
    } else if (options.clientMaxWindowBits !== undefined) {
      // We want a smaller client window but the client cannot be told: accept 15 anyway.
    }
    return { params, response };
  }
  return null;
}

/**
 * Client side: validates the server's `Sec-WebSocket-Extensions` answer against what was offered.
 * Returns the parameters, `null` when the server declined, or throws a {@linkcode HandshakeError}.
 *
 * @example
 * ```ts
 * import { acceptDeflateResponse } from "./deflate.ts";
 * const p = acceptDeflateResponse("permessage-deflate; server_no_context_takeover", {});
 * console.log(p?.serverNoContextTakeover); // true
 * ```
 */
export function acceptDeflateResponse(
  responseHeader: string | null | undefined,
  offered: DeflateOptions | null | undefined,
): DeflateParams | null {
  if (!responseHeader || responseHeader.trim() === "") return null;
  let exts: ExtensionOffer[];
  try {
    exts = parseExtensions(responseHeader);
  } catch (e) {
    throw new HandshakeError(`malformed Sec-WebSocket-Extensions: ${(e as Error).message}`);
  }
  if (exts.length === 0) return null;
  if (!offered) throw new HandshakeError("server selected an extension that was not offered");
  if (exts.length > 1 || exts[0].name.toLowerCase() !== PERMESSAGE_DEFLATE) {
    throw new HandshakeError(`server selected extensions that were not offered: ${responseHeader}`);
  }
  let r: RawParams;
  try {
    r = readParams(exts[0], true);
  } catch (e) {
    throw new HandshakeError(`bad permessage-deflate response: ${(e as Error).message}`);
  }
  if (offered.serverNoContextTakeover && !r.serverNoContextTakeover) {
    throw new HandshakeError("server ignored server_no_context_takeover");
  }
  if (
    offered.serverMaxWindowBits !== undefined &&
    (r.serverMaxWindowBits === undefined || r.serverMaxWindowBits > offered.serverMaxWindowBits)
  ) {
    throw new HandshakeError("server ignored server_max_window_bits");
  }
  // We always offer client_max_window_bits, so the server may set it; it must not exceed ours.
  const ownLimit = offered.clientMaxWindowBits ?? 15;
  const clientBits = r.clientMaxWindowBits === undefined ? ownLimit : r.clientMaxWindowBits;
  if (typeof clientBits !== "number" || clientBits > ownLimit) {
    throw new HandshakeError("server asked for a client_max_window_bits above the offer");
  }
  return {
    serverNoContextTakeover: r.serverNoContextTakeover,
    clientNoContextTakeover: r.clientNoContextTakeover ||
      (offered.clientNoContextTakeover ?? false),
    serverMaxWindowBits: r.serverMaxWindowBits ?? 15,
    clientMaxWindowBits: clientBits,
  };
}

// deno-lint-ignore no-explicit-any
type ZHandle = any;
const TAIL = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
const CHUNK = 64 * 1024;

/** A raw zlib stream driven synchronously through its native handle. */
class ZStream {
  // deno-lint-ignore no-explicit-any
  readonly #stream: any;
  readonly #handle: ZHandle;
  #error: string | undefined;
  /** Input bytes left unread by the last `run`: the stream ended (a BFINAL block). */
  leftover = 0;

  constructor(inflate: boolean, windowBits: number, level: number, memLevel: number) {
    this.#stream = inflate
      ? zlib.createInflateRaw({ windowBits })
      : zlib.createDeflateRaw({ windowBits, level, memLevel });
    this.#handle = this.#stream._handle;
    this.#handle.onerror = (message: string) => {
      this.#error = message;
    };
  }

  /** Feeds `input` with Z_SYNC_FLUSH; throws `RangeError("limit")` once output passes `limit`. */
  run(input: Uint8Array, limit: number): Uint8Array {
    const chunks: Uint8Array[] = [];
    let total = 0;
    let inOff = 0;
    let inLen = input.length;
    const state: Uint32Array = this.#stream._writeState;
    for (;;) {
      const out = new Uint8Array(Math.min(CHUNK, Math.max(1024, limit - total + 1)));
      this.#handle.writeSync(
        zlib.constants.Z_SYNC_FLUSH,
        input,
        inOff,
        inLen,
        out,
        0,
        out.length,
      );
      if (this.#error !== undefined) throw new Error(this.#error);
      const availOut = state[0];
      const availIn = state[1];
      const produced = out.length - availOut;
      if (produced > 0) {
        chunks.push(produced === out.length ? out : out.subarray(0, produced));
        total += produced;
        if (total > limit) throw new RangeError("limit");
      }
      inOff += inLen - availIn;
      inLen = availIn;
      if (availOut !== 0) break;
    }
    this.leftover = inLen;
    if (chunks.length === 1) return chunks[0];
    const joined = new Uint8Array(total);
    let p = 0;
    for (const c of chunks) {
      joined.set(c, p);
      p += c.length;
    }
    return joined;
  }

  reset(): void {
    this.#handle.reset();
  }

  close(): void {
    try {
      this.#stream.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Per-message compression for one connection, honouring the negotiated context takeover
 * and window sizes for `role`.
 *
 * @example
 * ```ts
 * import { DEFAULT_DEFLATE_PARAMS, PerMessageDeflate } from "./deflate.ts";
 * const client = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "client", { threshold: 0 });
 * const server = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "server");
 * const wire = client.compress(new TextEncoder().encode("hello hello hello"));
 * console.log(new TextDecoder().decode(server.decompress(wire, 1024))); // "hello hello hello"
 * client.dispose();
 * server.dispose();
 * ```
 */
export class PerMessageDeflate {
  /** The negotiated parameters. */
  readonly params: Readonly<DeflateParams>;
  /** Messages shorter than this are sent uncompressed. */
  readonly threshold: number;
  readonly #ownNoTakeover: boolean;
  readonly #peerNoTakeover: boolean;
  readonly #ownBits: number;
  readonly #level: number;
  readonly #memLevel: number;
  #deflater: ZStream | undefined;
  #inflater: ZStream | undefined;

  /** Creates the compressor/decompressor pair for `role`. */
  constructor(
    params: DeflateParams,
    role: "client" | "server",
    options: { threshold?: number; level?: number; memLevel?: number } = {},
  ) {
    this.params = params;
    this.threshold = options.threshold ?? 1024;
    this.#level = options.level ?? 1;
    this.#memLevel = options.memLevel ?? 8;
    const server = role === "server";
    this.#ownNoTakeover = server ? params.serverNoContextTakeover : params.clientNoContextTakeover;
    this.#peerNoTakeover = server ? params.clientNoContextTakeover : params.serverNoContextTakeover;
    this.#ownBits = server ? params.serverMaxWindowBits : params.clientMaxWindowBits;
  }

  /**
   * True when a message of `length` bytes should go out compressed: over the threshold and
   * possible at all (zlib cannot deflate with an 8-bit window, so such a peer gets plain frames).
   */
  shouldCompress(length: number): boolean {
    return length >= this.threshold && this.#ownBits >= 9;
  }

  /** Compresses one whole message; the result has the 0x00 0x00 0xff 0xff tail stripped. */
  compress(data: Uint8Array): Uint8Array {
    if (this.#ownBits < 9) throw new RangeError("cannot deflate with an 8-bit window");
    // The RFC 7692 §7.2.3.6 form of an empty message; zlib would emit nothing at all.
    if (data.length === 0) return new Uint8Array(1);
    this.#deflater ??= new ZStream(false, this.#ownBits, this.#level, this.#memLevel);
    let out: Uint8Array;
    try {
      out = this.#deflater.run(data, Number.MAX_SAFE_INTEGER);
    } catch (e) {
      throw new ProtocolError(CloseCode.InternalError, `deflate failed: ${(e as Error).message}`);
    }
    if (this.#ownNoTakeover) this.#deflater.reset();
    // Z_SYNC_FLUSH always ends with an empty stored block: 00 00 ff ff (RFC 7692 §7.2.1).
    return out.subarray(0, out.length - 4);
  }

  /**
   * Decompresses one whole message (the tail is appended here). Throws a
   * {@linkcode ProtocolError} 1009 as soon as the output passes `maxSize`, 1007 on corrupt data.
   */
  decompress(data: Uint8Array, maxSize: number): Uint8Array {
    // A bigger window than the peer's is always fine for inflating.
    this.#inflater ??= new ZStream(true, 15, 0, 8);
    const input = new Uint8Array(data.length + 4);
    input.set(data);
    input.set(TAIL, data.length);
    let out: Uint8Array;
    try {
      out = this.#inflater.run(input, maxSize);
    } catch (e) {
      if (e instanceof RangeError) {
        throw new ProtocolError(
          CloseCode.MessageTooBig,
          `decompressed message over ${maxSize} bytes`,
        );
      }
      throw new ProtocolError(CloseCode.InvalidPayload, `inflate failed: ${(e as Error).message}`);
    }
    // A peer may end a message with a BFINAL block (RFC 7692 §7.2.3.3): the stream is over,
    // the tail is left unread, and the next message needs a fresh inflater.
    if (this.#peerNoTakeover || this.#inflater.leftover > 0) this.#inflater.reset();
    return out;
  }

  /** Frees the zlib streams. */
  dispose(): void {
    this.#deflater?.close();
    this.#inflater?.close();
    this.#deflater = this.#inflater = undefined;
  }
}
