/**
 * The opening handshake (RFC 6455 §4) as pure functions: keys, the client's request bytes, an
 * incremental HTTP head reader, the client's check of the 101 and the server's negotiation.
 * No sockets: the transport moves the bytes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  acceptDeflateResponse,
  buildDeflateOffer,
  type DeflateOptions,
  type DeflateParams,
  negotiateDeflateServer,
} from "./deflate.ts";
import { HandshakeError } from "./errors.ts";

/**
 * The GUID appended to the key before hashing (RFC 6455 §1.3).
 *
 * @example
 * ```ts
 * import { WEBSOCKET_GUID } from "./handshake.ts";
 * console.log(WEBSOCKET_GUID); // "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
 * ```
 */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/**
 * Default limit for a request or response head: 16 KiB (a bigger request head gets 431).
 *
 * @example
 * ```ts
 * import { MAX_HEAD_SIZE } from "./handshake.ts";
 * console.log(MAX_HEAD_SIZE); // 16384
 * ```
 */
export const MAX_HEAD_SIZE = 16 * 1024;

const ENCODER = new TextEncoder();
const LATIN1 = new TextDecoder("latin1");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BASE64_16 = /^[A-Za-z0-9+/]{22}==$/;

/**
 * A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
 *
 * @example
 * ```ts
 * import { generateKey } from "./handshake.ts";
 * console.log(generateKey().length); // 24
 * ```
 */
export function generateKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
}

/**
 * `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
 *
 * @example
 * ```ts
 * import { acceptKey } from "./handshake.ts";
 * console.log(acceptKey("dGhlIHNhbXBsZSBub25jZQ==")); // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
 * ```
 */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + WEBSOCKET_GUID).digest("base64");
}

/**
 * True when `key` is base64 of exactly 16 bytes.
 *
 * @example
 * ```ts
 * import { isValidKey } from "./handshake.ts";
 * console.log(isValidKey("dGhlIHNhbXBsZSBub25jZQ=="), isValidKey("short")); // true false
 * ```
 */
export function isValidKey(key: string): boolean {
  return BASE64_16.test(key);
}

/**
 * True when a comma-separated header value contains `token` (case-insensitive), e.g.
 * `hasToken("keep-alive, Upgrade", "upgrade")`.
 *
 * @example
 * ```ts
 * import { hasToken } from "./handshake.ts";
 * console.log(hasToken("keep-alive, Upgrade", "upgrade")); // true
 * ```
 */
export function hasToken(value: string | null, token: string): boolean {
  if (!value) return false;
  const t = token.toLowerCase();
  return value.split(",").some((v) => v.trim().toLowerCase() === t);
}

/**
 * A parsed HTTP request head.
 *
 * @example
 * ```ts
 * import type { RequestHead } from "./handshake.ts";
 * const h: RequestHead = { method: "GET", target: "/", version: "HTTP/1.1", headers: new Headers() };
 * console.log(h.method); // "GET"
 * ```
 */
export interface RequestHead {
  /** Request method, e.g. `GET`. */
  method: string;
  /** Request target: path and query. */
  target: string;
  /** Protocol version, e.g. `HTTP/1.1`. */
  version: string;
  /** Header fields (repeated fields joined with ", "). */
  headers: Headers;
}

/**
 * A parsed HTTP response head.
 *
 * @example
 * ```ts
 * import type { ResponseHead } from "./handshake.ts";
 * const h: ResponseHead = { version: "HTTP/1.1", status: 101, statusText: "Switching Protocols", headers: new Headers() };
 * console.log(h.status); // 101
 * ```
 */
export interface ResponseHead {
  /** Protocol version, e.g. `HTTP/1.1`. */
  version: string;
  /** Status code, e.g. 101. */
  status: number;
  /** Reason phrase. */
  statusText: string;
  /** Header fields (repeated fields joined with ", "). */
  headers: Headers;
}

/** Index of the end of the head (just past CRLFCRLF), or -1. */
function findHeadEnd(buf: Uint8Array, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i + 4;
  }
  return -1;
}

function parseHeaderLines(lines: string[]): Headers {
  const headers = new Headers();
  for (const line of lines) {
    if (line === "") continue;
    if (line[0] === " " || line[0] === "\t") {
      throw new HandshakeError("obsolete header line folding", { status: 400 });
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      throw new HandshakeError(`malformed header line ${JSON.stringify(line)}`, { status: 400 });
    }
    try {
      headers.append(name, line.slice(colon + 1).trim());
    } catch {
      throw new HandshakeError(`invalid value for header ${name}`, { status: 400 });
    }
  }
  return headers;
}

/**
 * Reads an HTTP head incrementally: `push` bytes until it returns the head; `rest` then holds
 * the bytes after it (frames the peer sent right behind its head). Throws a
 * {@linkcode HandshakeError} (431 on the server side) once `maxSize` bytes pass without a head.
 *
 * @example
 * ```ts
 * import { HttpHeadReader } from "./handshake.ts";
 * const r = new HttpHeadReader("request");
 * console.log(r.push(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n"))); // undefined
 * const head = r.push(new TextEncoder().encode("\r\n"));
 * console.log(head?.method, r.rest.length); // GET 0
 * ```
 */
export class HttpHeadReader<K extends "request" | "response"> {
  /** "request" (server side) or "response" (client side). */
  readonly kind: K;
  /** Largest head accepted, in bytes. */
  readonly maxSize: number;
  // Grows by doubling, so many small reads cost amortized O(n).
  #buf = new Uint8Array(1024);
  #len = 0;
  #rest = new Uint8Array(0);
  #done = false;

  /** Creates a reader for a request head (server side) or a response head (client side). */
  constructor(kind: K, maxSize: number = MAX_HEAD_SIZE) {
    this.kind = kind;
    this.maxSize = maxSize;
  }

  /** Bytes received after the head. */
  get rest(): Uint8Array {
    return this.#rest;
  }

  /** Adds bytes; returns the head once complete, else `undefined`. */
  push(bytes: Uint8Array): (K extends "request" ? RequestHead : ResponseHead) | undefined {
    if (this.#done) throw new Error("the head was already read");
    const from = this.#len;
    if (from + bytes.length > this.#buf.length) {
      const next = new Uint8Array(Math.max(from + bytes.length, this.#buf.length * 2));
      next.set(this.#buf.subarray(0, from));
      this.#buf = next;
    }
    this.#buf.set(bytes, from);
    this.#len = from + bytes.length;
    const joined = this.#buf.subarray(0, this.#len);
    const r = this.kind === "request"
      ? parseRequestHead(joined, this.maxSize, from)
      : parseResponseHead(joined, this.maxSize, from);
    if (!r) return undefined;
    this.#done = true;
    this.#rest = joined.slice(r.bytesConsumed);
    this.#buf = new Uint8Array(0);
    return r.head as K extends "request" ? RequestHead : ResponseHead;
  }
}

function splitHead(
  buf: Uint8Array,
  maxSize: number,
  from: number,
  status: number | undefined,
): { lines: string[]; end: number } | undefined {
  const end = findHeadEnd(buf.length > maxSize ? buf.subarray(0, maxSize) : buf, from);
  if (end < 0) {
    if (buf.length >= maxSize) {
      throw new HandshakeError(`HTTP head over ${maxSize} bytes`, { status });
    }
    return undefined;
  }
  const lines = LATIN1.decode(buf.subarray(0, end - 4)).split("\r\n");
  return { lines, end };
}

/**
 * Parses a request head from the start of `buf`: `undefined` until CRLFCRLF arrives, else the
 * head and how many bytes it took. Throws {@linkcode HandshakeError} 431 past `maxSize`, 400 when
 * malformed. `searchFrom` lets a caller that appends skip what it already scanned.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./handshake.ts";
 * const r = parseRequestHead(new TextEncoder().encode("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"));
 * console.log(r?.head.target, r?.head.headers.get("host"), r?.bytesConsumed); // /chat x 31
 * ```
 */
export function parseRequestHead(
  buf: Uint8Array,
  maxSize: number = MAX_HEAD_SIZE,
  searchFrom = 0,
): { head: RequestHead; bytesConsumed: number } | undefined {
  const split = splitHead(buf, maxSize, searchFrom, 431);
  if (!split) return undefined;
  const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP\/\d\.\d)$/.exec(split.lines[0]);
  if (!m) {
    throw new HandshakeError(`malformed request line ${JSON.stringify(split.lines[0])}`, {
      status: 400,
    });
  }
  return {
    head: {
      method: m[1],
      target: m[2],
      version: m[3],
      headers: parseHeaderLines(split.lines.slice(1)),
    },
    bytesConsumed: split.end,
  };
}

/**
 * Parses a response head from the start of `buf` (client side), like {@linkcode parseRequestHead}.
 * Throws a {@linkcode HandshakeError} without a status when oversize or malformed.
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./handshake.ts";
 * const r = parseResponseHead(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\n"));
 * console.log(r?.head.status); // 101
 * ```
 */
export function parseResponseHead(
  buf: Uint8Array,
  maxSize: number = MAX_HEAD_SIZE,
  searchFrom = 0,
): { head: ResponseHead; bytesConsumed: number } | undefined {
  const split = splitHead(buf, maxSize, searchFrom, undefined);
  if (!split) return undefined;
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(split.lines[0]);
  if (!m) throw new HandshakeError(`malformed status line ${JSON.stringify(split.lines[0])}`);
  let headers: Headers;
  try {
    headers = parseHeaderLines(split.lines.slice(1));
  } catch (e) {
    throw new HandshakeError(`malformed response: ${(e as Error).message}`);
  }
  return {
    head: { version: m[1], status: Number(m[2]), statusText: m[3] ?? "", headers },
    bytesConsumed: split.end,
  };
}

/**
 * Options of {@linkcode buildClientRequest} and {@linkcode validateServerResponse}.
 *
 * @example
 * ```ts
 * import type { ClientHandshakeOptions } from "./handshake.ts";
 * const o: ClientHandshakeOptions = { key: "dGhlIHNhbXBsZSBub25jZQ==", protocols: ["chat"] };
 * console.log(o.protocols); // [ "chat" ]
 * ```
 */
export interface ClientHandshakeOptions {
  /** The `Sec-WebSocket-Key` (see {@linkcode generateKey}). */
  key: string;
  /** Subprotocols offered, in preference order. */
  protocols?: readonly string[];
  /** permessage-deflate offer; null/undefined offers no extension. */
  deflate?: DeflateOptions | null;
  /** Extra request headers (not the handshake's own). */
  headers?: Readonly<Record<string, string>> | Headers;
}

const RESERVED_REQUEST_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
  "sec-websocket-accept",
]);

function checkHeader(name: string, value: string): void {
  if (!TOKEN.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
  if (/[\r\n\0]/.test(value)) throw new TypeError(`invalid value for header ${name}`);
}

/**
 * Builds the client's upgrade request. `url` is `ws:`/`wss:` (or `http:`/`https:`); the path and
 * query go in the request line, `Host` carries a non-default port. User headers may set `Host`,
 * `Origin`, `Authorization`…, not the handshake's own headers (`TypeError`).
 *
 * @example
 * ```ts
 * import { buildClientRequest } from "./handshake.ts";
 * const bytes = buildClientRequest(new URL("ws://localhost:8080/chat?x=1"), {
 *   key: "dGhlIHNhbXBsZSBub25jZQ==",
 *   protocols: ["chat"],
 * });
 * console.log(new TextDecoder().decode(bytes).split("\r\n")[0]); // "GET /chat?x=1 HTTP/1.1"
 * ```
 */
export function buildClientRequest(url: URL | string, options: ClientHandshakeOptions): Uint8Array {
  const u = typeof url === "string" ? new URL(url) : url;
  if (!["ws:", "wss:", "http:", "https:"].includes(u.protocol)) {
    throw new TypeError(`unsupported URL scheme ${u.protocol}`);
  }
  if (!isValidKey(options.key)) throw new TypeError("key must be base64 of 16 bytes");
  const lines = [`GET ${u.pathname || "/"}${u.search} HTTP/1.1`];
  const user = options.headers instanceof Headers
    ? [...options.headers.entries()]
    : Object.entries(options.headers ?? {});
  const userHost = user.find(([k]) => k.toLowerCase() === "host");
  lines.push(`Host: ${userHost ? userHost[1] : u.host}`);
  lines.push("Upgrade: websocket", "Connection: Upgrade");
  lines.push(`Sec-WebSocket-Key: ${options.key}`, "Sec-WebSocket-Version: 13");
  if (options.protocols && options.protocols.length > 0) {
    for (const p of options.protocols) {
      if (!TOKEN.test(p)) throw new TypeError(`invalid subprotocol ${JSON.stringify(p)}`);
    }
    if (new Set(options.protocols).size !== options.protocols.length) {
      throw new TypeError("duplicate subprotocol");
    }
    lines.push(`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`);
  }
  if (options.deflate) {
    lines.push(`Sec-WebSocket-Extensions: ${buildDeflateOffer(options.deflate)}`);
  }
  for (const [name, value] of user) {
    checkHeader(name, value);
    const lower = name.toLowerCase();
    if (lower === "host") continue;
    if (RESERVED_REQUEST_HEADERS.has(lower)) {
      throw new TypeError(`header ${name} is set by the handshake itself`);
    }
    lines.push(`${name}: ${value}`);
  }
  return ENCODER.encode(lines.join("\r\n") + "\r\n\r\n");
}

/**
 * What a successful handshake agreed on.
 *
 * @example
 * ```ts
 * import type { HandshakeResult } from "./handshake.ts";
 * const r: HandshakeResult = { protocol: "", extensions: "", deflate: null };
 * console.log(r.deflate); // null
 * ```
 */
export interface HandshakeResult {
  /** The selected subprotocol ("" for none). */
  protocol: string;
  /** The `Sec-WebSocket-Extensions` value agreed ("" for none). */
  extensions: string;
  /** permessage-deflate parameters, or null. */
  deflate: DeflateParams | null;
}

/**
 * Client side: checks the server's response head. Throws a {@linkcode HandshakeError}: with
 * the status for a non-101 answer ("redirects are not followed" for 3xx, with `location`), and
 * without one when the 101 itself is wrong (Upgrade, Connection, Accept, subprotocol or
 * extension not offered).
 *
 * @example
 * ```ts
 * import { acceptKey, validateServerResponse } from "./handshake.ts";
 * const key = "dGhlIHNhbXBsZSBub25jZQ==";
 * const headers = new Headers({ upgrade: "websocket", connection: "Upgrade", "sec-websocket-accept": acceptKey(key) });
 * const r = validateServerResponse({ version: "HTTP/1.1", status: 101, statusText: "", headers }, { key });
 * console.log(r.protocol === ""); // true
 * ```
 */
export function validateServerResponse(
  head: ResponseHead,
  options: ClientHandshakeOptions,
): HandshakeResult {
  const { status, headers } = head;
  if (status >= 300 && status < 400) {
    const location = headers.get("location") ?? undefined;
    throw new HandshakeError(
      `server answered ${status} ${head.statusText}: redirects are not followed` +
        (location ? ` (Location: ${location})` : ""),
      { status, location },
    );
  }
  if (status !== 101) {
    throw new HandshakeError(`server answered ${status} ${head.statusText} instead of 101`, {
      status,
    });
  }
  if (!hasToken(headers.get("upgrade"), "websocket")) {
    throw new HandshakeError("101 response without Upgrade: websocket");
  }
  if (!hasToken(headers.get("connection"), "upgrade")) {
    throw new HandshakeError("101 response without Connection: Upgrade");
  }
  if (headers.get("sec-websocket-accept") !== acceptKey(options.key)) {
    throw new HandshakeError("Sec-WebSocket-Accept does not match the key");
  }
  const protocol = headers.get("sec-websocket-protocol") ?? "";
  if (protocol !== "" && !(options.protocols ?? []).includes(protocol)) {
    throw new HandshakeError(`server selected subprotocol ${protocol} that was not offered`);
  }
  const extensions = headers.get("sec-websocket-extensions") ?? "";
  const deflate = acceptDeflateResponse(extensions, options.deflate);
  return { protocol, extensions: extensions.trim(), deflate };
}

/**
 * Options of {@linkcode negotiateServer}.
 *
 * @example
 * ```ts
 * import type { ServerHandshakeOptions } from "./handshake.ts";
 * const o: ServerHandshakeOptions = { protocols: ["chat.v2", "chat.v1"], deflate: {} };
 * console.log(o.protocols?.length); // 2
 * ```
 */
export interface ServerHandshakeOptions {
  /** Subprotocols this server speaks. */
  protocols?: readonly string[];
  /**
   * Picks the subprotocol from the client's offer (default: the first offered that is in
   * `protocols`). Return undefined/"" to select none.
   */
  selectProtocol?: (offered: string[], request: HandshakeRequest) => string | undefined | null;
  /** Accept permessage-deflate with these settings; null/undefined/false refuses it. */
  deflate?: DeflateOptions | null | false;
  /** Extra headers for the 101 response. */
  headers?: Readonly<Record<string, string>>;
}

/**
 * The parts of a request the server handshake reads: a {@linkcode RequestHead} or a fetch
 * `Request` (from `Deno.serve`) both fit.
 *
 * @example
 * ```ts
 * import type { HandshakeRequest } from "./handshake.ts";
 * const r: HandshakeRequest = { method: "GET", headers: new Headers() };
 * console.log(r.method); // "GET"
 * ```
 */
export interface HandshakeRequest {
  /** Request method; only GET upgrades. */
  method: string;
  /** Request headers. */
  headers: Headers;
  /** "HTTP/1.1" when known. */
  version?: string;
}

/**
 * An HTTP error answer to a handshake.
 *
 * @example
 * ```ts
 * import type { HandshakeRejection } from "./handshake.ts";
 * const r: HandshakeRejection = { status: 405, headers: { Allow: "GET" }, body: "method must be GET" };
 * console.log(r.status); // 405
 * ```
 */
export interface HandshakeRejection {
  /** HTTP status: 400, 405, 426. */
  status: number;
  /** Extra headers (`Allow`, `Sec-WebSocket-Version`). */
  headers: Record<string, string>;
  /** Plain-text body that says what was wrong. */
  body: string;
}

/**
 * Result of {@linkcode negotiateServer}: the 101 bytes and what was agreed, or a rejection.
 *
 * @example
 * ```ts
 * import type { ServerNegotiation } from "./handshake.ts";
 * const n: ServerNegotiation = { reject: { status: 400, headers: {}, body: "bad" } };
 * console.log("reject" in n); // true
 * ```
 */
export type ServerNegotiation =
  | ({ accept: Uint8Array; responseHeaders: Record<string, string> } & HandshakeResult)
  | { reject: HandshakeRejection };

function reject(status: number, body: string, headers: Record<string, string> = {}): {
  reject: HandshakeRejection;
} {
  return { reject: { status, headers, body } };
}

/**
 * Server side: checks an upgrade request and builds the 101 response, or says which HTTP error
 * to answer: 405 for a method other than GET, 426 (with `Sec-WebSocket-Version: 13`) for another
 * version, 400 with a body that says why for anything else. `Upgrade` and `Connection` tokens
 * are matched case-insensitively inside comma lists (`Connection: keep-alive, Upgrade`).
 *
 * @example
 * ```ts
 * import { negotiateServer } from "./handshake.ts";
 * const headers = new Headers({
 *   host: "x", upgrade: "websocket", connection: "keep-alive, Upgrade",
 *   "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13",
 *   "sec-websocket-protocol": "chat.v1",
 * });
 * const r = negotiateServer({ method: "GET", headers }, { protocols: ["chat.v1"] });
 * console.log("accept" in r && r.protocol); // "chat.v1"
 * ```
 */
export function negotiateServer(
  request: HandshakeRequest,
  options: ServerHandshakeOptions = {},
): ServerNegotiation {
  const h = request.headers;
  if (request.method !== "GET") {
    return reject(405, `method ${request.method} cannot open a WebSocket; use GET`, {
      Allow: "GET",
    });
  }
  if (request.version !== undefined && !/^HTTP\/(1\.[1-9]|[2-9]\.\d)$/.test(request.version)) {
    return reject(400, `${request.version} cannot open a WebSocket; HTTP/1.1 is required`);
  }
  if (!h.get("host")) return reject(400, "missing Host header");
  if (!hasToken(h.get("upgrade"), "websocket")) {
    return reject(400, "missing or wrong Upgrade header: expected a token 'websocket'");
  }
  if (!hasToken(h.get("connection"), "upgrade")) {
    return reject(400, "missing or wrong Connection header: expected a token 'Upgrade'");
  }
  const version = h.get("sec-websocket-version");
  if (version?.trim() !== "13") {
    return reject(426, `unsupported Sec-WebSocket-Version ${version ?? "(missing)"}; use 13`, {
      "Sec-WebSocket-Version": "13",
    });
  }
  const key = h.get("sec-websocket-key")?.trim() ?? "";
  if (!isValidKey(key)) {
    return reject(400, "Sec-WebSocket-Key must be base64 of 16 bytes");
  }

  const offered = (h.get("sec-websocket-protocol") ?? "").split(",").map((s) => s.trim())
    .filter((s) => s !== "");
  if (offered.some((p) => !TOKEN.test(p))) return reject(400, "malformed Sec-WebSocket-Protocol");
  let protocol = "";
  if (offered.length > 0) {
    const chosen = options.selectProtocol
      ? options.selectProtocol(offered, request)
      : offered.find((p) => (options.protocols ?? []).includes(p));
    if (chosen) {
      if (!offered.includes(chosen)) {
        throw new TypeError(`selectProtocol returned ${chosen}, which the client did not offer`);
      }
      protocol = chosen;
    }
  }

  let deflate: DeflateParams | null = null;
  let extensions = "";
  const extHeader = h.get("sec-websocket-extensions");
  if (extHeader && options.deflate) {
    try {
      const n = negotiateDeflateServer(extHeader, options.deflate);
      if (n) {
        deflate = n.params;
        extensions = n.response;
      }
    } catch {
      // An unparsable offer is declined, not an error: the connection works uncompressed.
    }
  }

  const responseHeaders: Record<string, string> = {
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Accept": acceptKey(key),
  };
  if (protocol) responseHeaders["Sec-WebSocket-Protocol"] = protocol;
  if (extensions) responseHeaders["Sec-WebSocket-Extensions"] = extensions;
  for (const [k, v] of Object.entries(options.headers ?? {})) {
    checkHeader(k, v);
    if (RESERVED_REQUEST_HEADERS.has(k.toLowerCase())) {
      throw new TypeError(`header ${k} is set by the handshake itself`);
    }
    responseHeaders[k] = v;
  }
  const accept = buildHttpResponse(101, responseHeaders);
  return { accept, responseHeaders, protocol, extensions, deflate };
}

const REASONS: Record<number, string> = {
  101: "Switching Protocols",
  400: "Bad Request",
  403: "Forbidden",
  405: "Method Not Allowed",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/**
 * Serializes an HTTP/1.1 response head (and a text body, sent with `Content-Length` and
 * `Connection: close` for errors).
 *
 * @example
 * ```ts
 * import { buildHttpResponse } from "./handshake.ts";
 * const bytes = buildHttpResponse(405, { Allow: "GET" }, "use GET");
 * console.log(new TextDecoder().decode(bytes).split("\r\n")[0]); // "HTTP/1.1 405 Method Not Allowed"
 * ```
 */
export function buildHttpResponse(
  status: number,
  headers: Readonly<Record<string, string>>,
  body?: string,
): Uint8Array {
  const lines = [`HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  let bodyBytes = new Uint8Array(0);
  if (status !== 101) {
    bodyBytes = ENCODER.encode(body ?? "");
    lines.push("Content-Type: text/plain; charset=utf-8");
    lines.push(`Content-Length: ${bodyBytes.length}`, "Connection: close");
  }
  const head = ENCODER.encode(lines.join("\r\n") + "\r\n\r\n");
  if (bodyBytes.length === 0) return head;
  const out = new Uint8Array(head.length + bodyBytes.length);
  out.set(head);
  out.set(bodyBytes, head.length);
  return out;
}

/**
 * The HTTP answer for a failed server handshake: a {@linkcode HandshakeRejection} or a
 * {@linkcode HandshakeError} thrown by the head parser (431 / 400).
 *
 * @example
 * ```ts
 * import { HandshakeError } from "./errors.ts";
 * import { rejectionResponse } from "./handshake.ts";
 * const bytes = rejectionResponse(new HandshakeError("head too big", { status: 431 }));
 * console.log(new TextDecoder().decode(bytes).startsWith("HTTP/1.1 431")); // true
 * ```
 */
export function rejectionResponse(rejection: HandshakeRejection | HandshakeError): Uint8Array {
  if (rejection instanceof HandshakeError) {
    return buildHttpResponse(rejection.status ?? 400, {}, rejection.message);
  }
  return buildHttpResponse(rejection.status, rejection.headers, rejection.body);
}
