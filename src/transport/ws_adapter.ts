/**
 * The adapter over `npm:ws` (Node, and Deno through npm compatibility). It sees the response
 * headers, sends any close code, pings and awaits the pong, and stops reading the socket when
 * the incoming queue passes its high-water mark (`ws.pause()` / `ws.resume()`).
 *
 * Size limit: `ws` checks a frame's declared length as soon as its header is read and answers
 * one over `maxPayload` with close 1009 before buffering its payload. The adapter always gives it
 * a limit (`maxPayload`, default {@linkcode WS_DEFAULT_MAX_PAYLOAD}, as our own client): `ws`
 * treats a missing one as "no limit", and a peer could then announce 2^40 bytes and keep the
 * connection waiting for them.
 *
 * @module
 */

import WebSocket from "ws";
import { Buffer } from "node:buffer";
import type { ClientRequest, IncomingMessage } from "node:http";
import { QueuedConnection } from "./queued_connection.ts";
import {
  type AdapterConnection,
  type CloseInfo,
  ConnectionClosedError,
  DialError,
  type DialOptions,
  type HandshakeInfo,
  type OutgoingData,
  type WebSocketAdapter,
  type WireMessage,
} from "./types.ts";
import { TimeoutError } from "../util/async.ts";

/** The `maxPayload` the adapter gives `ws` when the dial options set none: 64 MiB. */
export const WS_DEFAULT_MAX_PAYLOAD: number = 64 << 20;

/**
 * How long `ws` waits for the peer's answer to a close it started itself (after a protocol
 * error such as 1009), before it drops the socket. `ws`'s own default is 30 s.
 */
const WS_CLOSE_TIMEOUT_MS = 5000;

/**
 * The `npm:ws` adapter.
 *
 * @example
 * ```ts
 * import { wsAdapter } from "./ws_adapter.ts";
 * const adapter = wsAdapter({ perMessageDeflate: false });
 * console.log(adapter.name); // "ws"
 * ```
 */
export function wsAdapter(options: {
  /** Negotiate permessage-deflate. Default false (it costs CPU and memory per connection). */
  perMessageDeflate?: boolean;
} = {}): WebSocketAdapter {
  return {
    name: "ws",
    dial(url: URL, dialOptions: DialOptions): Promise<AdapterConnection> {
      return dial(url, dialOptions, options);
    },
  };
}

function headersOf(res: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  return headers;
}

type WsAdapterOptions = NonNullable<Parameters<typeof wsAdapter>[0]>;

function dial(url: URL, opts: DialOptions, adapterOptions: WsAdapterOptions) {
  return new Promise<AdapterConnection>((resolve, reject) => {
    const signal = opts.signal;
    if (signal?.aborted) return reject(signal.reason);
    let ws: WebSocket;
    try {
      ws = new WebSocket(url.href, opts.protocols ? [...opts.protocols] : [], {
        headers: opts.headers ? { ...opts.headers } : undefined,
        handshakeTimeout: opts.handshakeTimeoutMs,
        maxPayload: opts.maxPayload ?? WS_DEFAULT_MAX_PAYLOAD,
        perMessageDeflate: adapterOptions.perMessageDeflate ?? false,
        followRedirects: false,
        closeTimeout: WS_CLOSE_TIMEOUT_MS,
      });
    } catch (cause) {
      return reject(
        new DialError(`cannot dial ${url.href}: ${(cause as Error).message}`, { cause }),
      );
    }
    let settled = false;
    let response: IncomingMessage | undefined;
    const conn = new WsConnection(ws, opts);
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      ws.terminate();
      reject(error);
    };
    const onAbort = () => fail(signal!.reason);
    const cleanup = () => {
      signal?.removeEventListener("abort", onAbort);
      ws.off("error", onError);
    };
    const onError = (err: Error) =>
      fail(new DialError(`cannot connect to ${url.href}: ${err.message}`, { cause: err }));
    signal?.addEventListener("abort", onAbort, { once: true });
    ws.on("error", onError);
    ws.on("upgrade", (res: IncomingMessage) => {
      response = res;
    });
    ws.on("unexpected-response", (req: ClientRequest, res: IncomingMessage) => {
      const status = res.statusCode;
      res.resume(); // drain the body so the socket can close
      req.destroy();
      fail(
        new DialError(`the server answered the handshake with HTTP ${status}`, { status }),
      );
    });
    ws.once("open", () => {
      if (settled) return;
      settled = true;
      cleanup();
      conn.opened({
        protocol: ws.protocol,
        extensions: ws.extensions,
        status: response?.statusCode ?? 101,
        headers: response ? headersOf(response) : undefined,
      });
      resolve(conn);
    });
  });
}

class WsConnection extends QueuedConnection {
  readonly #ws: WebSocket;
  readonly #pings: { resolve(rtt: number): void; reject(e: unknown): void; sent: number }[] = [];
  #localClose = false;
  /** The close code `ws` sent itself after a protocol error (1002, 1007, 1009...). */
  #errorCode?: number;
  /** Errors before the handshake completed are the dial's (a `DialError`), not read errors. */
  #open = false;
  #closing?: Promise<CloseInfo>;

  constructor(ws: WebSocket, opts: DialOptions) {
    super(opts, {
      pause: () => ws.readyState === WebSocket.OPEN && ws.pause(),
      resume: () => ws.readyState === WebSocket.OPEN && ws.resume(),
    });
    this.#ws = ws;
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buf = Array.isArray(data)
        ? Buffer.concat(data)
        : data instanceof ArrayBuffer
        ? Buffer.from(data)
        : data;
      const message: WireMessage = isBinary
        ? { type: "binary", data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) }
        : { type: "text", data: buf.toString("utf8") };
      this.received(message);
    });
    ws.on("pong", () => {
      const p = this.#pings.shift();
      p?.resolve(performance.now() - p.sent);
    });
    // After the handshake an error ends in "close": a protocol error (ws has then sent its
    // close code, e.g. 1009 for a frame over maxPayload) is reported, never thrown or swallowed.
    ws.on("error", (err: Error & { code?: string }) => {
      if (!this.#open) return;
      const status = (err as unknown as Record<symbol, unknown>)[statusCodeSymbol(err)];
      if (typeof status === "number") this.#errorCode = status;
      try {
        opts.onError?.(err);
      } catch { /* the sink must not break reading */ }
    });
    ws.on("close", (code: number, reason: Buffer) => {
      const r = reason.toString("utf8");
      const wasClean = code !== 1006;
      const info: CloseInfo = this.#errorCode !== undefined && !this.#localClose
        ? { code: this.#errorCode, reason: r, wasClean, initiator: "local" }
        : {
          code,
          reason: r,
          wasClean,
          initiator: this.#localClose ? "local" : wasClean ? "remote" : "drop",
        };
      const closedError = new ConnectionClosedError("the connection closed", info);
      for (const p of this.#pings.splice(0)) p.reject(closedError);
      this.ended(info);
    });
  }

  opened(handshake: HandshakeInfo): void {
    this.#open = true;
    this.handshake = handshake;
  }

  get underlying(): unknown {
    return this.#ws;
  }
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: OutgoingData): Promise<void> {
    if (this.#ws.readyState !== WebSocket.OPEN || this.#localClose) {
      return Promise.reject(new ConnectionClosedError());
    }
    return new Promise<void>((resolve, reject) => {
      this.#ws.send(data, { binary: typeof data !== "string" }, (err?: Error) => {
        if (err) reject(new ConnectionClosedError(`send failed: ${err.message}`));
        else resolve();
      });
    });
  }

  ping(timeoutMs: number): Promise<number> {
    if (this.#ws.readyState !== WebSocket.OPEN) return Promise.reject(new ConnectionClosedError());
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#pings.indexOf(entry);
        if (i >= 0) this.#pings.splice(i, 1);
        reject(new TimeoutError("ping", timeoutMs));
      }, timeoutMs);
      const entry = {
        sent: performance.now(),
        resolve: (rtt: number) => {
          clearTimeout(timer);
          resolve(rtt);
        },
        reject: (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#pings.push(entry);
      this.#ws.ping();
    });
  }

  close(code = 1000, reason = "", timeoutMs = 5000): Promise<CloseInfo> {
    if (this.#closing) return this.#closing;
    if (this.isClosed) return (this.#closing = this.socketClosed);
    this.#localClose = true;
    try {
      this.#ws.resume(); // a paused socket would never see the peer's close frame
      this.#ws.close(code, reason);
    } catch {
      this.#ws.terminate();
    }
    const timer = setTimeout(() => this.#ws.terminate(), timeoutMs);
    this.#closing = this.socketClosed.finally(() => clearTimeout(timer));
    return this.#closing;
  }

  terminate(): void {
    if (this.isClosed) return;
    this.#localClose = true;
    this.#ws.terminate();
  }
}

/** `ws` keeps the close code of a protocol error under a symbol named "status-code". */
function statusCodeSymbol(err: object): symbol {
  return Object.getOwnPropertySymbols(err).find((k) => k.description === "status-code") ??
    Symbol("none");
}
