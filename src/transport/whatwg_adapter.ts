/**
 * The adapter over the runtime's WHATWG `WebSocket` (Deno, browsers, Node ≥ 22).
 *
 * What it cannot do, it says so: no ping (`NotSupportedError`), no response headers, no read
 * back-pressure (a WHATWG socket cannot stop reading, so the queue's `maxQueuedBytes` and
 * overflow policy bound memory instead), request headers only on Deno's non-standard
 * constructor, and close codes limited to 1000 and 3000–4999 (others are sent as 1000 with
 * their reason; the local {@linkcode CloseInfo} keeps the code asked for).
 *
 * No size limit at the header either: the API hands over whole messages only, so `maxPayload`
 * is checked once a message has arrived (the runtime has buffered it by then); a bigger one
 * closes the connection and is reported through `onError`. The runtime applies its own limit
 * underneath (Deno drops a connection whose frame header declares 64 MiB or more, without a
 * close frame).
 *
 * @module
 */

import { runtime } from "../platform/runtime.ts";
import { QueuedConnection } from "./queued_connection.ts";
import {
  type AdapterConnection,
  type CloseInfo,
  ConnectionClosedError,
  DialError,
  type DialOptions,
  NotSupportedError,
  type OutgoingData,
  type WebSocketAdapter,
  type WireMessage,
} from "./types.ts";

/** The `WebSocket` class the adapter dials with. */
type WebSocketConstructor = NonNullable<
  NonNullable<Parameters<typeof whatwgAdapter>[0]>["WebSocket"]
>;

/**
 * The WHATWG `WebSocket` adapter.
 *
 * @example
 * ```ts
 * import { whatwgAdapter } from "./whatwg_adapter.ts";
 * const adapter = whatwgAdapter();
 * console.log(adapter.name); // "whatwg"
 * ```
 */
export function whatwgAdapter(options: {
  /** The `WebSocket` class to use. Default `globalThis.WebSocket`. */
  WebSocket?: new (
    url: string,
    protocolsOrOptions?: string | string[] | { protocols?: string[]; headers?: HeadersInit },
  ) => WebSocket;
} = {}): WebSocketAdapter {
  return {
    name: "whatwg",
    dial(url: URL, dialOptions: DialOptions): Promise<AdapterConnection> {
      const Ctor = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketConstructor);
      if (typeof Ctor !== "function") {
        return Promise.reject(
          new NotSupportedError(
            `${runtime.name} has no global WebSocket: use wseAdapter() (the default) or wsAdapter()`,
          ),
        );
      }
      if (
        dialOptions.headers && Object.keys(dialOptions.headers).length > 0 &&
        !runtime.webSocketHeaders
      ) {
        return Promise.reject(
          new NotSupportedError(
            `${runtime.name}'s WebSocket cannot send request headers: use wseAdapter() or wsAdapter()`,
          ),
        );
      }
      return dial(Ctor, url, dialOptions);
    },
  };
}

function dial(Ctor: WebSocketConstructor, url: URL, opts: DialOptions) {
  return new Promise<AdapterConnection>((resolve, reject) => {
    const signal = opts.signal;
    if (signal?.aborted) return reject(signal.reason);
    let ws: WebSocket;
    try {
      const protocols = opts.protocols ? [...opts.protocols] : undefined;
      ws = opts.headers && Object.keys(opts.headers).length > 0
        ? new Ctor(url.href, { protocols, headers: { ...opts.headers } })
        : new Ctor(url.href, protocols);
    } catch (cause) {
      return reject(
        new DialError(`cannot dial ${url.href}: ${(cause as Error).message}`, { cause }),
      );
    }
    ws.binaryType = "arraybuffer";
    let settled = false;
    const conn = new WhatwgConnection(ws, opts);
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      try {
        ws.close();
      } catch { /* already closing */ }
      reject(error);
    };
    const onAbort = () => fail(signal!.reason);
    const timer = setTimeout(
      () =>
        fail(
          new DialError(`handshake with ${url.href} timed out after ${opts.handshakeTimeoutMs} ms`),
        ),
      opts.handshakeTimeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    ws.addEventListener("open", () => {
      if (settled) return;
      settled = true;
      cleanup();
      conn.opened();
      resolve(conn);
    }, { once: true });
    ws.addEventListener("error", (ev) => {
      if (settled) return;
      const message = (ev as ErrorEvent).message ?? "";
      const status = /status code:?\s*(\d{3})/i.exec(message)?.[1];
      fail(
        new DialError(`cannot connect to ${url.href}${message ? `: ${message}` : ""}`, {
          status: status ? Number(status) : undefined,
          cause: (ev as ErrorEvent).error,
        }),
      );
    });
    ws.addEventListener("close", (ev) => {
      if (!settled) {
        fail(new DialError(`connection to ${url.href} closed during the handshake (${ev.code})`));
      }
    });
  });
}

/**
 * Wraps a WHATWG `WebSocket` that is already open (e.g. the server side of
 * `Deno.upgradeWebSocket`, once its `open` event fired) as an {@linkcode AdapterConnection}.
 * `options` gives the read bounds (`maxPayload`, `maxQueuedBytes`, `overflow`, `onError`).
 *
 * @example
 * ```ts ignore
 * import { wrapWebSocket } from "./whatwg_adapter.ts";
 * const { socket, response } = Deno.upgradeWebSocket(request);
 * socket.onopen = () => {
 *   const conn = wrapWebSocket(socket, { handshakeTimeoutMs: 0 });
 *   void conn.send("hello");
 * };
 * ```
 */
export function wrapWebSocket(ws: WebSocket, options: DialOptions): AdapterConnection {
  ws.binaryType = "arraybuffer";
  const conn = new WhatwgConnection(ws, options);
  conn.opened();
  return conn;
}

/** Codes the WHATWG `close()` accepts. */
function sendable(code: number): boolean {
  return code === 1000 || (code >= 3000 && code <= 4999);
}

class WhatwgConnection extends QueuedConnection {
  readonly #ws: WebSocket;
  #localClose?: { code: number; reason: string };
  #closing?: Promise<CloseInfo>;

  constructor(ws: WebSocket, opts: DialOptions) {
    super(opts); // a WHATWG socket cannot stop reading: no flow control to give
    this.#ws = ws;
    const maxPayload = opts.maxPayload;
    ws.addEventListener("message", (ev) => {
      const data = ev.data;
      const message: WireMessage = typeof data === "string"
        ? { type: "text", data }
        : { type: "binary", data: new Uint8Array(data as ArrayBuffer) };
      const size = message.type === "text" ? data.length : data.byteLength;
      if (maxPayload !== undefined && size > maxPayload) {
        try {
          opts.onError?.(
            new RangeError(`a message of ${size} bytes exceeds maxPayload (${maxPayload})`),
          );
        } catch { /* the sink must not break reading */ }
        void this.close(1009, "message too big", 1000);
        return;
      }
      this.received(message);
    });
    ws.addEventListener("close", (ev) => {
      const local = this.#localClose;
      const info: CloseInfo = local
        ? { code: local.code, reason: local.reason, wasClean: ev.wasClean, initiator: "local" }
        : {
          code: ev.code || 1006,
          reason: ev.reason,
          wasClean: ev.wasClean,
          initiator: ev.wasClean && ev.code !== 1006 ? "remote" : "drop",
        };
      this.ended(info);
    });
  }

  opened(): void {
    this.handshake = { protocol: this.#ws.protocol, extensions: this.#ws.extensions };
  }

  get underlying(): unknown {
    return this.#ws;
  }
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: OutgoingData): Promise<void> {
    if (this.#ws.readyState !== 1 || this.#localClose) {
      return Promise.reject(new ConnectionClosedError());
    }
    try {
      this.#ws.send(data as string | ArrayBufferView<ArrayBuffer>);
      return Promise.resolve();
    } catch (cause) {
      const err = new ConnectionClosedError(`send failed: ${(cause as Error).message}`);
      return Promise.reject(err);
    }
  }

  ping(_timeoutMs: number): Promise<number> {
    return Promise.reject(
      new NotSupportedError("the WHATWG WebSocket cannot send pings (use the ws or wse adapter)"),
    );
  }

  close(code = 1000, reason = "", timeoutMs = 5000): Promise<CloseInfo> {
    if (this.#closing) return this.#closing;
    if (this.isClosed) return (this.#closing = this.socketClosed);
    this.#localClose = { code, reason };
    try {
      this.#ws.close(sendable(code) ? code : 1000, reason);
    } catch {
      try {
        this.#ws.close(1000);
      } catch { /* nothing more we can do */ }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<CloseInfo>((resolve) => {
      timer = setTimeout(() => {
        // A WHATWG socket cannot be dropped; report the handshake as unanswered.
        resolve({ code, reason, wasClean: false, initiator: "local" });
      }, timeoutMs);
    });
    this.#closing = Promise.race([this.socketClosed, timeout]).finally(() => clearTimeout(timer));
    return this.#closing;
  }

  terminate(): void {
    // The WHATWG API has no abort: start a close and stop waiting for it.
    if (this.isClosed) return;
    this.#localClose ??= { code: 1006, reason: "terminated" };
    try {
      this.#ws.close(1000, "terminated");
    } catch { /* already closing */ }
  }
}
