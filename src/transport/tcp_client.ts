/**
 * `connect()`: our RFC 6455 client on the runtime's TCP (`Deno.connect` + `Deno.startTls`, or
 * `node:net`/`node:tls` on Node and Bun; `TCP_NODELAY` set, under TLS too) — no WebSocket
 * library.
 *
 * `ws://` and `wss://` only (any other scheme is a `DialError`), default ports 80/443, path and
 * query sent as the request target. The whole dial (TCP connect, TLS, HTTP upgrade) has one
 * budget, `handshakeTimeoutMs` (default 10 s); when it runs out the socket is closed and the
 * promise rejects with a `DialError` whose cause is a `TimeoutError`. Redirects (3xx) are not
 * followed: the `DialError` carries the status and names the `Location`.
 *
 * permessage-deflate is **offered by default** (as npm:ws does on its client); pass
 * `compression: false` to offer nothing. The server decides: most do not enable it.
 *
 * @module
 */

import { ProtocolConnection } from "../protocol/connection.ts";
import type { DeflateOptions } from "../protocol/deflate.ts";
import { HandshakeError } from "../protocol/errors.ts";
import {
  buildClientRequest,
  type ClientHandshakeOptions,
  generateKey,
  MAX_HEAD_SIZE,
  validateServerResponse,
} from "../protocol/handshake.ts";
import { runtime } from "../platform/runtime.ts";
import type { RuntimeSocket } from "../platform/types.ts";
import { TimeoutError } from "../util/async.ts";
import { Deadline } from "./deadlines.ts";
import { WebSocketConnection, type WebSocketConnectionOptions } from "./tcp_connection.ts";
import { readHead } from "./tcp_http.ts";
import { type ByteStream, socketStream } from "./tcp_stream.ts";
import { DialError } from "./types.ts";

/**
 * Options of {@linkcode connect}.
 *
 * @example
 * ```ts
 * import type { ConnectOptions } from "@wse/engine/transport";
 * const options: ConnectOptions = {
 *   protocols: ["chat.v1"],
 *   compression: false,
 *   maxPayload: 1 << 20,
 *   handshakeTimeoutMs: 5000,
 * };
 * console.log(options.protocols); // [ "chat.v1" ]
 * ```
 */
export interface ConnectOptions extends WebSocketConnectionOptions {
  /** Subprotocols offered, in preference order. */
  protocols?: readonly string[];
  /** Extra request headers (`Host` may be overridden; the handshake's own headers may not). */
  headers?: Readonly<Record<string, string>> | Headers;
  /** Budget for TCP connect + TLS + HTTP upgrade, in ms. Default 10000. */
  handshakeTimeoutMs?: number;
  /**
   * Offer permessage-deflate: `true` (default) with default parameters, an object to tune it
   * (window bits, context takeover, `threshold`, `level`), `false` to offer nothing.
   */
  compression?: boolean | DeflateOptions;
  /** Largest message accepted (after decompression); bigger closes with 1009. Default 64 MiB. */
  maxPayload?: number;
  /** Largest HTTP response head accepted. Default 16 KiB. */
  maxHeadBytes?: number;
  /** Aborting cancels the dial and closes the half-open socket. */
  signal?: AbortSignal;
  /** Extra PEM CA certificates for `wss://` (e.g. a test CA). */
  caCerts?: string[];
}

/**
 * Opens a WebSocket connection to `url` with our own RFC 6455 client.
 *
 * @example
 * ```ts
 * import { connect } from "@wse/engine/transport";
 * const ws = await connect("ws://127.0.0.1:8080/chat?room=1", {
 *   protocols: ["chat.v1"],
 *   headers: { Authorization: "Bearer t" },
 *   handshakeTimeoutMs: 5000,
 * });
 * console.log(ws.protocol, ws.extensions);
 * await ws.send("hello");
 * await ws.close();
 * ```
 */
export async function connect(
  url: string | URL,
  options: ConnectOptions = {},
): Promise<WebSocketConnection> {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new DialError(`invalid URL ${String(url)}`, { cause: e });
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new DialError(`unsupported URL scheme ${u.protocol} (use ws: or wss:)`);
  }
  const tls = u.protocol === "wss:";
  const hostname = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = u.port ? Number(u.port) : tls ? 443 : 80;
  const timeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const signal = options.signal;
  if (signal?.aborted) throw new DialError("dial aborted", { cause: signal.reason });

  const compression = options.compression ?? true;
  const deflate: DeflateOptions | null = compression === false
    ? null
    : compression === true
    ? {}
    : compression;
  const hs: ClientHandshakeOptions = {
    key: generateKey(),
    protocols: options.protocols,
    deflate,
    headers: options.headers,
  };
  let request: Uint8Array;
  try {
    request = buildClientRequest(u, hs);
  } catch (e) {
    throw new DialError(`cannot build the handshake: ${(e as Error).message}`, { cause: e });
  }

  let stream: ByteStream | undefined;
  let stop: "timeout" | "abort" | undefined;
  let giveUp!: () => void;
  const stopped = new Promise<void>((resolve) => (giveUp = resolve));
  const dialAbort = new AbortController();
  const end = (why: "timeout" | "abort") => {
    stop ??= why;
    stream?.close();
    dialAbort.abort();
    giveUp();
  };
  const deadline = new Deadline(() => end("timeout"));
  deadline.set(performance.now() + timeoutMs);
  const onAbort = () => end("abort");
  signal?.addEventListener("abort", onAbort, { once: true });
  const stopError = () =>
    stop === "timeout"
      ? new DialError(`handshake with ${u.host} timed out after ${timeoutMs} ms`, {
        cause: new TimeoutError("handshake", timeoutMs),
      })
      : new DialError("dial aborted", { cause: signal?.reason });

  try {
    const dial = runtime.dialTcp({
      hostname,
      port,
      tls,
      caCerts: options.caCerts,
      signal: dialAbort.signal,
    });
    let socket: RuntimeSocket | undefined;
    try {
      socket = await Promise.race([dial, stopped.then(() => undefined)]);
    } catch (e) {
      if (stop) throw stopError(); // the abort above ended the dial
      throw new DialError(`cannot connect to ${u.host}: ${(e as Error).message}`, { cause: e });
    }
    if (!socket) {
      dial.then((s) => socketStream(s).close(), () => {}); // it may still complete: do not leak it
      throw stopError();
    }
    stream = socketStream(socket);
    if (stop) {
      stream.close();
      throw stopError();
    }
    try {
      await stream.write(request);
    } catch (e) {
      throw stop
        ? stopError()
        : new DialError(`connection to ${u.host} failed during the handshake`, { cause: e });
    }
    let r;
    try {
      r = await readHead(stream, "response", options.maxHeadBytes ?? MAX_HEAD_SIZE);
    } catch (e) {
      throw new DialError(`bad handshake response: ${(e as Error).message}`, { cause: e });
    }
    if (!r) {
      throw stop
        ? stopError()
        : new DialError(`${u.host} closed the connection during the handshake`);
    }
    let result;
    try {
      result = validateServerResponse(r.head, hs);
    } catch (e) {
      const status = e instanceof HandshakeError ? e.status : undefined;
      throw new DialError(`handshake with ${u.host} failed: ${(e as Error).message}`, {
        status,
        cause: e,
      });
    }
    if (stop) throw stopError();
    const protocol = new ProtocolConnection({
      role: "client",
      maxMessageSize: options.maxPayload,
      deflate: result.deflate,
      deflateOptions: deflate
        ? { threshold: deflate.threshold, level: deflate.level, memLevel: deflate.memLevel }
        : undefined,
    });
    return new WebSocketConnection(stream, protocol, {
      role: "client",
      handshake: {
        protocol: result.protocol,
        extensions: result.extensions,
        status: r.head.status,
        headers: r.head.headers,
      },
      initial: r.rest,
      options,
    });
  } catch (e) {
    stream?.close();
    throw e;
  } finally {
    deadline.cancel();
    signal?.removeEventListener("abort", onAbort);
    giveUp();
  }
}
