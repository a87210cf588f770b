/**
 * Our RFC 6455 server: `serve()` on the runtime's TCP listener (`Deno.listen`, or `node:net` on
 * Node and Bun), and `handleNodeUpgrade()` for `node:http`'s `'upgrade'` event. Both end in the
 * same {@linkcode WebSocketConnection}.
 *
 * The opening handshake is checked by the codec: a bad one gets its HTTP answer — 400 (malformed,
 * missing key/headers), 405 (not GET), 426 (not version 13), 431 (head over `maxHeadBytes`), 403
 * (refused by `checkOrigin`) — and the socket is closed. A client that does not finish its request
 * within `handshakeTimeoutMs` (slow loris) is dropped without an answer.
 *
 * Defaults: compression off (as npm:ws's server), `maxPayload` 64 MiB, handshake timeout 10 s,
 * every origin accepted unless `checkOrigin` says otherwise, `hostname` 127.0.0.1.
 *
 * Once a connection is open the server keeps nothing of its handshake (the request goes to
 * `onConnection`, the 101's headers are made into a `Headers` only when asked for) and no timer
 * (handshake deadlines are on the shared timer of `deadlines.ts`), so an idle connection costs
 * little more than its socket.
 *
 * @module
 */

import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { ProtocolConnection } from "../protocol/connection.ts";
import type { DeflateOptions } from "../protocol/deflate.ts";
import { HandshakeError } from "../protocol/errors.ts";
import {
  buildHttpResponse,
  hasToken,
  MAX_HEAD_SIZE,
  negotiateServer,
  rejectionResponse,
  type RequestHead,
} from "../protocol/handshake.ts";
import { runtime } from "../platform/runtime.ts";
import type { RuntimeSocket } from "../platform/types.ts";
import { Deadline } from "./deadlines.ts";
import { WebSocketConnection, type WebSocketConnectionOptions } from "./tcp_connection.ts";
import { answerHttp, readHead } from "./tcp_http.ts";
import { type ByteStream, nodeSocketStream, socketStream, type StreamAddr } from "./tcp_stream.ts";
import type { HandshakeInfo } from "./types.ts";

/**
 * The upgrade request as the server saw it.
 *
 * @example
 * ```ts
 * import type { UpgradeRequest } from "@wse/engine/transport";
 * function room(request: UpgradeRequest): string | null {
 *   return new URL(request.url, "http://x").searchParams.get("room");
 * }
 * ```
 */
export interface UpgradeRequest {
  /** HTTP method (always GET once accepted). */
  readonly method: string;
  /** Request target: path and query, e.g. `/chat?room=1`. */
  readonly url: string;
  /** Request headers. */
  readonly headers: Headers;
  /** The client's address, when known. */
  readonly remoteAddr?: StreamAddr;
}

/**
 * How an upgrade is answered; shared by {@linkcode serve} and {@linkcode handleNodeUpgrade}.
 *
 * @example
 * ```ts
 * import type { UpgradeOptions } from "@wse/engine/transport";
 * const options: UpgradeOptions = {
 *   protocols: ["chat.v2", "chat.v1"],
 *   checkOrigin: (origin) => origin === "https://example.com",
 *   compression: true,
 *   maxPayload: 1 << 20,
 *   handshakeTimeoutMs: 5000,
 * };
 * console.log(options.protocols?.length); // 2
 * ```
 */
export interface UpgradeOptions extends WebSocketConnectionOptions {
  /** Subprotocols this server speaks; the first one the client offers is selected. */
  protocols?: readonly string[];
  /** Picks the subprotocol from the client's offer instead (return undefined for none). */
  selectProtocol?: (offered: string[], request: UpgradeRequest) => string | undefined | null;
  /** Return false to refuse the upgrade with 403. Default: every origin is accepted. */
  checkOrigin?: (origin: string | null, request: UpgradeRequest) => boolean | Promise<boolean>;
  /** Accept permessage-deflate when offered: `true`, tuning options, or `false` (default). */
  compression?: boolean | DeflateOptions;
  /** Largest message accepted (after decompression); bigger closes with 1009. Default 64 MiB. */
  maxPayload?: number;
  /** Time a client has to send its whole request head, in ms. Default 10000. */
  handshakeTimeoutMs?: number;
  /** Largest request head; bigger gets 431. Default 16 KiB. */
  maxHeadBytes?: number;
  /** Extra headers for the 101 response. */
  responseHeaders?: Readonly<Record<string, string>>;
  /**
   * Called for each upgrade request before the handshake is negotiated (after `checkOrigin`):
   * return an answer (e.g. `{ status: 503 }` while not ready, or past a connection limit) to
   * refuse it, or `undefined` to go on.
   */
  admit?: (
    request: UpgradeRequest,
  ) => { status: number; body?: string; headers?: Record<string, string> } | undefined;
}

/**
 * Options of {@linkcode serve}.
 *
 * @example
 * ```ts
 * import type { ServeOptions } from "@wse/engine/transport";
 * const options: ServeOptions = {
 *   port: 8080,
 *   hostname: "127.0.0.1",
 *   onConnection: async (ws) => {
 *     for await (const message of ws) await ws.send(message.data);
 *   },
 * };
 * console.log(options.port); // 8080
 * ```
 */
export interface ServeOptions extends UpgradeOptions {
  /** TCP port; 0 (default) picks a free one (see `server.port`). */
  port?: number;
  /** Address to bind. Default "127.0.0.1" (pass "0.0.0.0" to listen on every interface). */
  hostname?: string;
  /** PEM certificate chain and private key: serve `wss://` (TLS) instead of `ws://`. */
  tls?: { cert: string; key: string };
  /** Called for each accepted connection. A throw/rejection closes it with 1011. */
  onConnection: (ws: WebSocketConnection, request: UpgradeRequest) => void | Promise<void>;
  /**
   * Answers plain HTTP requests (no `Upgrade: websocket`) on the same port, one per connection,
   * e.g. to serve the app's page. Without it they get 426.
   */
  fetch?: (request: Request) => Response | Promise<Response>;
  /** Failed handshakes and handler errors, for logging. */
  onError?: (error: unknown) => void;
}

/**
 * A running server made by {@linkcode serve}.
 *
 * @example
 * ```ts
 * import { serve, type WebSocketServer } from "@wse/engine/transport";
 * const server: WebSocketServer = serve({ port: 0, onConnection: () => {} });
 * console.log(server.port, server.connections.size);
 * await server.close();
 * ```
 */
export interface WebSocketServer {
  /** The bound port (on Node and Bun, once `listening` resolved). */
  readonly port: number;
  /** The bound address (on Node and Bun, once `listening` resolved). */
  readonly hostname: string;
  /**
   * Resolves once the socket is bound: at once on Deno (whose `serve()` throws when it cannot
   * bind), later on Node and Bun, which bind asynchronously; rejects when binding failed (e.g. the
   * port is taken).
   */
  readonly listening: Promise<void>;
  /** Open connections. */
  readonly connections: ReadonlySet<WebSocketConnection>;
  /**
   * Stops accepting, closes every connection with `code`/`reason` (default 1001), waits for
   * their close handshakes (bounded by each connection's give-up timer) and their handlers.
   */
  close(code?: number, reason?: string): Promise<void>;
  /** Settles once `close()` finished. */
  readonly finished: Promise<void>;
}

/** What a server connection's handshake gave; the 101's headers become a `Headers` on demand. */
class ServerHandshake implements HandshakeInfo {
  readonly status = 101;
  readonly protocol: string;
  readonly extensions: string;
  #raw: Record<string, string> | undefined;
  #headers: Headers | undefined;

  constructor(protocol: string, extensions: string, raw: Record<string, string>) {
    this.protocol = protocol;
    this.extensions = extensions;
    this.#raw = raw;
  }

  get headers(): Headers {
    if (this.#headers === undefined) {
      this.#headers = new Headers(this.#raw);
      this.#raw = undefined;
    }
    return this.#headers;
  }
}

function deflateOf(c: boolean | DeflateOptions | undefined): DeflateOptions | null {
  return c === undefined || c === false ? null : c === true ? {} : c;
}

/** Writes an HTTP error answer, then closes without resetting (so the client can read it). */
async function refuse(stream: ByteStream, bytes: Uint8Array): Promise<void> {
  try {
    await stream.write(bytes);
  } catch { /* the client is gone */ }
  await stream.lingerClose(1000);
}

/**
 * Runs the server side of the opening handshake on a stream; resolves with the open connection,
 * or `null` when the request was refused (answered with an HTTP error) or timed out.
 */
async function upgrade(
  stream: ByteStream,
  given: { head: RequestHead; rest: Uint8Array } | undefined,
  options: UpgradeOptions & { fetch?: ServeOptions["fetch"]; tls?: unknown },
  onError?: (e: unknown) => void,
  onSettled?: (ws: WebSocketConnection) => void,
): Promise<{ ws: WebSocketConnection; request: UpgradeRequest } | null> {
  const timeoutMs = options.handshakeTimeoutMs ?? 10_000;
  let timedOut = false;
  const deadline = new Deadline(() => {
    timedOut = true;
    stream.close();
  });
  deadline.set(performance.now() + timeoutMs);
  try {
    let got = given;
    if (!got) {
      try {
        got = await readHead(stream, "request", options.maxHeadBytes ?? MAX_HEAD_SIZE) ??
          undefined;
      } catch (e) {
        onError?.(e);
        deadline.cancel();
        if (e instanceof HandshakeError) await refuse(stream, rejectionResponse(e));
        else stream.close();
        return null;
      }
      if (!got) {
        if (timedOut) onError?.(new HandshakeError(`handshake timed out after ${timeoutMs} ms`));
        stream.close();
        return null;
      }
    }
    const { head, rest } = got;
    if (options.fetch && !hasToken(head.headers.get("upgrade"), "websocket")) {
      deadline.cancel();
      let answer: Uint8Array;
      try {
        answer = await answerHttp(head, rest, stream, options.fetch, options.tls !== undefined);
      } catch (e) {
        onError?.(e);
        answer = buildHttpResponse(500, {}, "internal error");
      }
      await refuse(stream, answer);
      return null;
    }
    const request: UpgradeRequest = {
      method: head.method,
      url: head.target,
      headers: head.headers,
      remoteAddr: stream.remoteAddr,
    };
    if (options.checkOrigin) {
      let ok = false;
      try {
        ok = await options.checkOrigin(head.headers.get("origin"), request);
      } catch (e) {
        onError?.(e);
      }
      if (!ok) {
        deadline.cancel();
        onError?.(new HandshakeError("origin refused", { status: 403 }));
        await refuse(stream, buildHttpResponse(403, {}, "origin not allowed"));
        return null;
      }
    }
    const refusal = options.admit?.(request);
    if (refusal) {
      deadline.cancel();
      onError?.(new HandshakeError(refusal.body ?? "refused", { status: refusal.status }));
      await refuse(stream, buildHttpResponse(refusal.status, refusal.headers ?? {}, refusal.body));
      return null;
    }
    const deflate = deflateOf(options.compression);
    let n;
    try {
      n = negotiateServer(
        { method: head.method, headers: head.headers, version: head.version },
        {
          protocols: options.protocols,
          selectProtocol: options.selectProtocol
            ? (offered) => options.selectProtocol!(offered, request)
            : undefined,
          deflate,
          headers: options.responseHeaders,
        },
      );
    } catch (e) {
      onError?.(e);
      deadline.cancel();
      await refuse(stream, buildHttpResponse(500, {}, "internal error"));
      return null;
    }
    if ("reject" in n) {
      deadline.cancel();
      onError?.(new HandshakeError(n.reject.body, { status: n.reject.status }));
      await refuse(stream, rejectionResponse(n.reject));
      return null;
    }
    try {
      await stream.write(n.accept);
    } catch (e) {
      onError?.(e);
      stream.close();
      return null;
    }
    deadline.cancel();
    if (timedOut) return null;
    const protocol = new ProtocolConnection({
      role: "server",
      maxMessageSize: options.maxPayload,
      deflate: n.deflate,
      deflateOptions: deflate
        ? { threshold: deflate.threshold, level: deflate.level, memLevel: deflate.memLevel }
        : undefined,
    });
    const ws = new WebSocketConnection(stream, protocol, {
      role: "server",
      handshake: new ServerHandshake(n.protocol, n.extensions, n.responseHeaders),
      initial: rest,
      options,
      onSettled,
    });
    return { ws, request };
  } finally {
    deadline.cancel();
  }
}

/**
 * Listens on `hostname:port` and upgrades every connection that sends a valid WebSocket request.
 * Deno binds at once (and throws when it cannot); Node and Bun bind asynchronously: await
 * `listening` before reading `port`.
 *
 * @example
 * ```ts
 * import { serve } from "@wse/engine/transport";
 * const server = serve({
 *   port: 0,
 *   protocols: ["chat.v1"],
 *   onConnection: async (ws, request) => {
 *     console.log("connected", request.url, ws.protocol);
 *     for await (const message of ws) await ws.send(message.data); // echo
 *   },
 * });
 * await server.listening;
 * console.log("listening on", server.port);
 * await server.close();
 * ```
 */
export function serve(options: ServeOptions): WebSocketServer {
  if (typeof options?.onConnection !== "function") {
    // Without it every client would be accepted and then closed with 1011.
    throw new TypeError("serve(options): options.onConnection (ws, request) => ... is required");
  }
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const listener = runtime.listenTcp({ hostname, port, tls: options.tls });
  const connections = new Set<WebSocketConnection>();
  const handshaking = new Set<ByteStream>();
  const tasks = new Set<Promise<void>>();
  // Handlers still running: counted, not kept (one set entry and callback less per connection).
  let running = 0;
  let allReturned: (() => void) | undefined;
  const returned = () => {
    if (--running === 0) allReturned?.();
  };
  const settled = (ws: WebSocketConnection) => void connections.delete(ws);
  let closing = false;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));

  const track = (p: Promise<void>) => {
    tasks.add(p);
    void p.finally(() => tasks.delete(p));
  };

  const handle = async (socket: RuntimeSocket) => {
    const stream = socketStream(socket);
    handshaking.add(stream);
    let up;
    try {
      up = await upgrade(stream, undefined, options, options.onError, settled);
    } finally {
      handshaking.delete(stream);
    }
    if (!up) return;
    if (closing) {
      await up.ws.close(1001, "server shutting down");
      return;
    }
    run(up.ws, up.request);
  };

  const failed = (ws: WebSocketConnection, e: unknown) => {
    options.onError?.(e);
    void ws.close(1011, "handler error");
  };

  // Not async, so nothing of the handshake stays referenced while the connection is open.
  const run = (ws: WebSocketConnection, request: UpgradeRequest): void => {
    // Settling needs a socket op to complete, so it cannot have happened in the microtasks since
    // the connection was made: `settled` will remove it.
    connections.add(ws);
    let handler;
    try {
      handler = options.onConnection(ws, request);
    } catch (e) {
      failed(ws, e);
      return;
    }
    if (!(handler instanceof Promise)) return;
    running++;
    handler.then(returned, (e) => {
      failed(ws, e);
      returned();
    });
  };

  const acceptLoop = (async () => {
    while (true) {
      let socket: RuntimeSocket;
      try {
        socket = await listener.accept();
      } catch {
        break; // the listener was closed (or could not bind: see `listening`)
      }
      if (closing) {
        socketStream(socket).close();
        break;
      }
      track(handle(socket));
    }
  })();

  let closePromise: Promise<void> | undefined;
  return {
    get port() {
      return listener.addr.port;
    },
    get hostname() {
      return listener.addr.hostname;
    },
    listening: listener.ready,
    connections,
    finished,
    close(code = 1001, reason = "server shutting down"): Promise<void> {
      closePromise ??= (async () => {
        closing = true;
        listener.close();
        await acceptLoop;
        for (const s of handshaking) s.close();
        await Promise.all([...connections].map((ws) => ws.close(code, reason)));
        while (tasks.size) await Promise.all([...tasks]);
        if (running > 0) await new Promise<void>((resolve) => (allReturned = resolve));
        finish();
      })();
      return closePromise;
    },
  };
}

function headersOf(req: IncomingMessage): Headers {
  const h = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      h.append(raw[i], raw[i + 1]);
    } catch { /* a header value fetch's Headers refuses; the handshake checks what it needs */ }
  }
  return h;
}

/**
 * Upgrades a request from `node:http`'s `'upgrade'` event (under Deno, a `node:net` socket) with
 * our RFC 6455 implementation. Resolves with the connection, or `null` when the handshake was
 * refused (the socket was answered with the HTTP error and closed).
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { handleNodeUpgrade } from "@wse/engine/transport";
 * const server = createServer((_req, res) => res.end("plain HTTP here"));
 * server.on("upgrade", async (req, socket, head) => {
 *   const ws = await handleNodeUpgrade(req, socket, head, { protocols: ["chat.v1"] });
 *   if (ws) for await (const message of ws) await ws.send(message.data);
 * });
 * server.listen(8080, "127.0.0.1");
 * ```
 */
export async function handleNodeUpgrade(
  req: IncomingMessage,
  socket: import("node:stream").Duplex,
  head: Uint8Array,
  options: UpgradeOptions = {},
): Promise<WebSocketConnection | null> {
  const stream = nodeSocketStream(socket as Socket, head);
  const requestHead: RequestHead = {
    method: req.method ?? "GET",
    target: req.url ?? "/",
    version: `HTTP/${req.httpVersion}`,
    headers: headersOf(req),
  };
  const up = await upgrade(stream, { head: requestHead, rest: new Uint8Array(0) }, options);
  return up?.ws ?? null;
}
