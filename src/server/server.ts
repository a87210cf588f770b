/**
 * The server: every connection is an addressable unit with an unguessable id; its messages go to
 * handlers (inline, or a worker pool that owns each connection round-robin); anything in the
 * application can push to any connection at any time (send, broadcast, topics, close).
 *
 * It is reached three ways, with the same events and operations: listening itself on our
 * transport (`listen`), as a `Deno.serve` handler (`handler`, on the runtime's upgrade), and on a
 * `node:http` server's `upgrade` event (`handleNodeUpgrade`, on our transport).
 *
 * @module
 */

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { InlineDispatcher } from "../dispatch/inline.ts";
import { PoolDispatcher } from "../dispatch/pool.ts";
import { pump } from "../dispatch/pump.ts";
import type { ConnectionHost, DispatchConnection, Dispatcher } from "../dispatch/types.ts";
import { encodeFrame, Opcode } from "../protocol/frames.ts";
import { connect, type ConnectOptions } from "../transport/tcp_client.ts";
import type { WebSocketConnection } from "../transport/tcp_connection.ts";
import {
  handleNodeUpgrade,
  serve,
  type UpgradeOptions,
  type UpgradeRequest,
  type WebSocketServer,
} from "../transport/tcp_server.ts";
import type { StreamAddr } from "../transport/tcp_stream.ts";
import type {
  CloseInfo,
  HandshakeInfo,
  MessageSink,
  OutgoingData,
  WireMessage,
} from "../transport/types.ts";
import { wrapWebSocket } from "../transport/whatwg_adapter.ts";
import { runtime } from "../platform/runtime.ts";
import { within } from "../util/async.ts";
import { type ConnectInfo, type ConnectionInfo, context, type DisconnectInfo } from "./context.ts";
import { SendBufferError, UnknownConnectionError } from "./errors.ts";
import { Cluster, type ClusterCount, type ClusterHost, type NodeInfo } from "./cluster/cluster.ts";
import type { StreamPosition } from "./cluster/broker.ts";
import { newConnectionId } from "./ids.ts";
import { ATTR, carrierOf, SpanKind, Telemetry, type TraceCarrier } from "../telemetry/telemetry.ts";
import type { Span } from "@opentelemetry/api";
import { type ResolvedServerOptions, resolveServerOptions, type ServerOptions } from "./options.ts";

/** The socket under a connection: our `WebSocketConnection`, or a wrapped runtime `WebSocket`. */
interface Socket {
  readonly handshake: HandshakeInfo;
  readonly bufferedAmount: number;
  readonly closed: Promise<CloseInfo>;
  readonly isClosed: boolean;
  poll(): WireMessage | undefined;
  onReadable(listener: (() => void) | undefined): void;
  setSink?(sink: MessageSink | undefined): void;
  send(data: OutgoingData): Promise<void>;
  close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo>;
  terminate(): void;
  /** Ours only: frames encoded once for many connections, and byte counts. */
  readonly canSendEncoded?: boolean;
  sendEncoded?(frame: Uint8Array): Promise<void>;
  readonly stats?: { bytesIn: number; bytesOut: number; messagesIn: number; messagesOut: number };
  readonly remoteAddr?: StreamAddr;
  readonly localAddr?: StreamAddr;
}

/**
 * Where the server stands.
 *
 * @example
 * ```ts
 * import type { ServerState } from "./server.ts";
 * const takesConnections = (s: ServerState) => s === "ready";
 * console.log(takesConnections("draining")); // false
 * ```
 */
export type ServerState = "starting" | "ready" | "draining" | "stopped";

/**
 * The events a server emits on the main thread, whatever runs the handlers.
 *
 * @example
 * ```ts
 * import { createServer, type ServerEvents } from "./server.ts";
 * const server = createServer({ onMessage: (m, ctx) => ctx.send(m.data) });
 * const log = (e: ServerEvents["disconnect"]) => console.log("closed", e.id, e.code);
 * const off = server.on("disconnect", log);
 * off();
 * ```
 */
export interface ServerEvents {
  /** A connection opened. */
  connect: ConnectInfo;
  /** A connection ended: exactly once per `connect`. */
  disconnect: DisconnectInfo;
  /** A message to `id` was dropped by the send-buffer policy `"drop"`. */
  drop: { id: string; bytes: number };
  /** A handler threw, a worker died (`workerId` says where), or the cluster lost something. */
  error: { error: unknown; id?: string; workerId?: string; op?: string; data?: OutgoingData };
  /** A node joined the cluster. */
  nodeUp: { node: string };
  /** A node left or went silent for two heartbeats: its ids are unreachable from now on. */
  nodeDown: { node: string; reason: string };
}

/**
 * What `subscribe` with `since` answers on a topic with history: the client got every message it
 * missed (`missed` of them) before any newer one, or it cannot get them (`reason`: the history was
 * lost, or the position left its window) and starts again from `position`.
 *
 * @example
 * ```ts
 * import type { RecoveryResult } from "./server.ts";
 * const explain = (r: RecoveryResult) =>
 *   r.recovered ? `${r.missed} missed messages resent` : `start again (${r.reason})`;
 * ```
 */
export type RecoveryResult =
  | { readonly recovered: true; readonly missed: number; readonly position: StreamPosition }
  | {
    readonly recovered: false;
    readonly reason: "epoch" | "window";
    readonly position: StreamPosition;
  };

/**
 * A message of a topic with history, or the news that the history cannot be recovered.
 *
 * @example
 * ```ts
 * import { formatHistoryEvent, type HistoryEvent } from "./server.ts";
 * const e: HistoryEvent = { topic: "news", offset: 7, epoch: "e1", data: "headline" };
 * console.log(formatHistoryEvent(e));
 * ```
 */
export type HistoryEvent =
  | { topic: string; offset: number; epoch: string; data: OutgoingData }
  | { topic: string; recovered: false; reason: "epoch" | "window"; offset: number; epoch: string };

/**
 * How topics with history reach clients by default: one JSON text message per event,
 * `{"topic","offset","epoch","data"}` (binary data as base64 with `"binary": true`), or
 * `{"topic","recovered":false,"reason","offset","epoch"}`. A client keeps the last
 * `offset`/`epoch` it saw and sends them back when it reconnects, to any node.
 *
 * @example
 * ```ts
 * import { formatHistoryEvent } from "./server.ts";
 * console.log(formatHistoryEvent({ topic: "news", offset: 7, epoch: "e1", data: "headline" }));
 * // {"topic":"news","offset":7,"epoch":"e1","data":"headline"}
 * ```
 */
export function formatHistoryEvent(e: HistoryEvent): string {
  if ("data" in e) {
    if (typeof e.data === "string") return JSON.stringify(e);
    let bin = "";
    for (let i = 0; i < e.data.length; i++) bin += String.fromCharCode(e.data[i]);
    return JSON.stringify({ ...e, data: btoa(bin), binary: true });
  }
  return JSON.stringify(e);
}

const ENCODER = new TextEncoder();
const ended = Symbol("ended");

/** What the server operations need of a connection's owner (the server, by its private ops). */
interface ConnectionOwner {
  send(id: string, data: OutgoingData): Promise<void>;
  call(op: string, args: readonly unknown[]): unknown;
  error(error: unknown, id: string, workerId: string): void;
}

/**
 * One open connection. It is its own dispatch host: methods, not closures, since a server holds
 * tens of thousands of these.
 */
class Connection implements ConnectionHost {
  readonly id: string;
  readonly socket: Socket;
  readonly info: ConnectInfo;
  readonly #owner: ConnectionOwner;
  readonly connectedAt = Date.now();
  dispatch!: DispatchConnection;
  topics?: Set<string>;
  dropped = 0;
  closing = false;
  /** Counted here for sockets without their own stats (the runtime's). */
  messagesIn = 0;
  messagesOut = 0;
  bytesOut = 0;
  /** Per topic with history: the last position delivered, and messages held while recovering. */
  hist?: Map<string, { offset: number; epoch: string; held?: [StreamPosition, OutgoingData][] }>;
  /** True once the handlers' `onDisconnect` ran (or the dispatcher gave up). */
  handled = false;
  /** Called once `handled` turns true (the server's stop waits for it). */
  onHandled?: () => void;
  [ended] = false;
  /** The connection's span, from connect to disconnect. */
  span?: Span;
  constructor(id: string, socket: Socket, info: ConnectInfo, owner: ConnectionOwner) {
    this.id = id;
    this.socket = socket;
    this.info = info;
    this.#owner = owner;
  }
  send(data: OutgoingData): Promise<void> {
    return this.#owner.send(this.id, data);
  }
  call(op: string, args: readonly unknown[]): unknown {
    return this.#owner.call(op, args);
  }
  reportError(error: unknown, where: { workerId: string }): void {
    this.#owner.error(error, this.id, where.workerId);
  }
  ended(): void {
    this.handled = true;
    this.onHandled?.();
  }
  /** Resolves once `handled`. */
  whenHandled(): Promise<void> {
    if (this.handled) return Promise.resolve();
    return new Promise((resolve) => (this.onHandled = resolve));
  }
}

function headerRecord(headers: Headers | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  headers?.forEach((v, k) => (out[k] = v));
  return out;
}

/** A request target's path (no query): span names stay low in cardinality. */
function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

function exceptSet(except: string | readonly string[] | undefined): Set<string> | undefined {
  if (except === undefined) return undefined;
  return new Set(typeof except === "string" ? [except] : except);
}

/**
 * A WebSocket server whose connections are addresses. Build it with {@linkcode createServer}.
 *
 * @example
 * ```ts
 * import { createServer } from "./server.ts";
 * const server = createServer({
 *   onConnect: async (ctx) => {
 *     await ctx.subscribe("lobby");
 *   },
 *   onMessage: (m, ctx) => void ctx.server.publish("lobby", m.type === "text" ? m.data : "?"),
 * });
 * const { port } = await server.listen({ port: 0 });
 * console.log(`ws://127.0.0.1:${port}/`, server.count);
 * await server.stop();
 * ```
 */
export class Server {
  /** This node's name: the prefix of every connection id. */
  readonly nodeId: string;
  /** Resolves once the server takes connections (its workers are up); rejects if they fail. */
  readonly ready: Promise<void>;
  readonly #o: ResolvedServerOptions;
  readonly #dispatcher: Dispatcher;
  readonly #conns = new Map<string, Connection>();
  readonly #topics = new Map<string, Set<Connection>>();
  readonly #listeners: { [K in keyof ServerEvents]: Set<(e: ServerEvents[K]) => void> } = {
    connect: new Set(),
    disconnect: new Set(),
    drop: new Set(),
    error: new Set(),
    nodeUp: new Set(),
    nodeDown: new Set(),
  };
  readonly #listening = new Set<WebSocketServer>();
  readonly #upgrade: UpgradeOptions;
  readonly #cluster?: Cluster;
  readonly #tel: Telemetry;
  /** Upgrade spans, from the admission to the accept (or the refusal). */
  readonly #upgrades = new WeakMap<object, Span>();
  readonly #owner: ConnectionOwner = {
    send: (id, data) => this.send(id, data),
    call: (op, args) => this.#call(op, args),
    error: (error, id, workerId) => this.#emit("error", { error, id, workerId }),
  };
  #state: ServerState = "starting";
  #stopping?: Promise<void>;
  #inbound = 0;

  /** Validates `options` (throws `ServerOptionError`) and starts the handlers. */
  constructor(options: ServerOptions) {
    const o = this.#o = resolveServerOptions(options);
    this.nodeId = o.nodeId;
    this.#tel = new Telemetry("wse.server", o.telemetry);
    // One connection may hold a bounded share of the handlers' queue: a flood from one client
    // stops its own reads (TCP back-pressure) while the others' messages go on.
    this.#dispatcher = o.workers
      ? new PoolDispatcher(o.workers, {
        context: new URL("./context.ts", import.meta.url),
        assign: "sticky",
        order: "connection",
        maxQueuedPerConnection: 256,
      })
      : new InlineDispatcher(o.handlers, {
        context,
        maxQueued: 4096,
        maxQueuedPerConnection: 64,
        telemetry: this.#tel,
      });
    if (o.cluster) this.#cluster = new Cluster(this.#clusterHost(), o.cluster);
    this.ready = this.#dispatcher.init().then(() => this.#cluster?.start()).then(() => {
      if (this.#state === "starting") this.#state = "ready";
    });
    this.ready.catch(() => {}); // reported to whoever awaits ready or listen
    this.#upgrade = {
      protocols: o.protocols,
      compression: o.compression,
      maxPayload: o.maxPayload,
      handshakeTimeoutMs: o.handshakeTimeoutMs,
      pingIntervalMs: o.keepAlive?.intervalMs,
      pongTimeoutMs: o.keepAlive?.timeoutMs,
      checkOrigin: async (origin, request) => {
        const ok = await o.checkOrigin(origin, request);
        if (!ok) {
          this.#upgradeSpan(request, origin)?.end();
          this.#tel.refuse("origin");
        }
        return ok;
      },
      admit: (request) => {
        const refusal = this.#admission();
        const span = this.#upgradeSpan(request, request.headers.get("origin"));
        if (refusal) {
          span?.setAttribute(ATTR.RESULT, `refused ${refusal.status}`);
          span?.end();
          this.#tel.refuse(refusal.body);
        }
        return refusal;
      },
    };
  }

  /** Where the server stands: `starting` (503 to upgrades), `ready`, `draining` (503), `stopped`. */
  get state(): ServerState {
    return this.#state;
  }

  /** Open connections. */
  get count(): number {
    return this.#conns.size;
  }

  /** The ids of the open connections. */
  ids(): IterableIterator<string> {
    return this.#conns.keys();
  }

  /** True when `id` is an open connection. */
  has(id: string): boolean {
    return this.#conns.has(id);
  }

  /**
   * Listens itself on our transport (`ws://`, or `wss://` with `tls`), answering plain HTTP with
   * the `fetch` option. Resolves with the bound address as soon as it is bound: upgrades get 503
   * until `ready` (await it to know the handlers are up).
   */
  listen(
    options: { port?: number; hostname?: string; tls?: { cert: string; key: string } } = {},
  ): Promise<{ port: number; hostname: string }> {
    if (this.#stopping) return Promise.reject(new TypeError("the server is stopped"));
    let listener: WebSocketServer;
    try {
      listener = serve({
        ...this.#upgrade,
        port: options.port ?? 0,
        hostname: options.hostname ?? "127.0.0.1",
        tls: options.tls,
        fetch: this.#o.fetch,
        onConnection: (ws, request) => this.#accept(ws, request),
        onError: () => {}, // refused handshakes are the client's business; 4xx/5xx answers them
      });
    } catch (e) {
      return Promise.reject(e); // e.g. the port is taken
    }
    this.#listening.add(listener);
    // Node and Bun bind asynchronously (a taken port rejects here).
    return listener.listening.then(() => ({ port: listener.port, hostname: listener.hostname }));
  }

  /**
   * A `Deno.serve` handler: upgrades WebSocket requests with the runtime's `Deno.upgradeWebSocket`
   * and answers the others with the `fetch` option (426 without it). The runtime keeps the
   * socket: no permessage-deflate, close codes limited to 1000 and 3000-4999, sizes checked after
   * a message arrived, and its memory per connection (see `docs/server.md`).
   */
  readonly handler = async (request: Request): Promise<Response> => {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      if (this.#o.fetch) return await this.#o.fetch(request);
      return new Response("this endpoint speaks WebSocket", { status: 426 });
    }
    const url = new URL(request.url);
    const upgradeRequest: UpgradeRequest = {
      method: request.method,
      url: url.pathname + url.search,
      headers: request.headers,
    };
    let allowed = false;
    try {
      allowed = await this.#o.checkOrigin(request.headers.get("origin"), upgradeRequest);
    } catch { /* refused */ }
    if (!allowed) {
      this.#tel.refuse("origin");
      return new Response("origin not allowed", { status: 403 });
    }
    const refusal = this.#admission();
    if (refusal) {
      this.#tel.refuse(refusal.body);
      return new Response(refusal.body, { status: refusal.status });
    }
    const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) =>
      s.trim()
    ).filter(Boolean);
    const protocol = this.#o.protocols?.find((p) => offered.includes(p));
    const headers = headerRecord(request.headers); // the request is gone once answered
    const { socket, response } = runtime.upgradeWebSocket(request, {
      protocol,
      idleTimeout: this.#o.keepAlive ? Math.ceil(this.#o.keepAlive.intervalMs / 1000) : 0,
    });
    socket.addEventListener("open", () => {
      const conn = wrapWebSocket(socket, {
        handshakeTimeoutMs: 0,
        maxPayload: this.#o.maxPayload,
        onError: (error) => this.#emit("error", { error }),
      });
      this.#register(conn, "inbound", { url: upgradeRequest.url, headers });
    }, { once: true });
    return response;
  };

  /**
   * Upgrades a request from a `node:http` server's `upgrade` event with our transport, and serves
   * the connection like any other. Refused requests are answered (403, 503...) and closed.
   */
  async handleNodeUpgrade(req: IncomingMessage, socket: Duplex, head: Uint8Array): Promise<void> {
    const ws = await handleNodeUpgrade(req, socket, head, this.#upgrade);
    if (!ws) return;
    this.#accept(ws, {
      method: req.method ?? "GET",
      url: req.url ?? "/",
      headers: new Headers(
        Object.entries(req.headers).flatMap(([k, v]) =>
          v === undefined ? [] : Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]]
        ) as [string, string][],
      ),
      remoteAddr: ws.remoteAddr,
    });
  }

  /**
   * Dials `url` and serves the connection like an inbound one (Ergo's `CreateConnection`): it gets
   * an id, the same handlers and events, and every operation by id. Broadcasts skip it (it is a
   * link to another service, not a client); topics and `send` reach it. Resolves with its id.
   */
  async connect(
    url: string | URL,
    options: {
      /** Subprotocols offered, in preference order. */
      protocols?: readonly string[];
      /** Extra request headers. */
      headers?: Readonly<Record<string, string>>;
      /** Budget for TCP connect, TLS and the upgrade, in ms. Default 10 000. */
      handshakeTimeoutMs?: number;
      /** Offer permessage-deflate. Default: the server's `compression` option. */
      compression?: boolean;
      /** Extra PEM CA certificates for `wss://`. */
      caCerts?: string[];
    } = {},
  ): Promise<string> {
    await this.ready;
    if (this.#state !== "ready") throw new TypeError(`the server is ${this.#state}`);
    const dial: ConnectOptions = {
      maxPayload: this.#o.maxPayload,
      pingIntervalMs: this.#o.keepAlive?.intervalMs,
      pongTimeoutMs: this.#o.keepAlive?.timeoutMs,
      compression: options.compression ?? this.#o.compression !== false,
      protocols: options.protocols,
      headers: options.headers,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      caCerts: options.caCerts,
    };
    const ws = await connect(url, dial);
    return this.#register(ws, "outbound", {
      url: String(url),
      headers: headerRecord(ws.handshake.headers),
    }).id;
  }

  // ---- operations by id ----

  /**
   * Sends to one connection. Rejects with `UnknownConnectionError` (naming the id) when it is not
   * open, `SendBufferError` past the send-buffer limit.
   */
  send(id: string, data: OutgoingData): Promise<void> {
    const tel = this.#tel;
    if (!tel.sampleMessage()) return this.#send(id, data);
    return tel.run(`send ${id}`, SpanKind.PRODUCER, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: "send",
      [ATTR.OPERATION_TYPE]: "send",
      [ATTR.CLIENT_ID]: id,
      [ATTR.BODY_SIZE]: typeof data === "string" ? data.length : data.byteLength,
    }, (span) => this.#send(id, data, carrierOf(span)));
  }

  #send(id: string, data: OutgoingData, trace?: TraceCarrier): Promise<void> {
    if (this.#cluster?.isRemote(id)) {
      return this.#remote(() => this.#cluster!.send(id, data, trace));
    }
    const c = this.#conns.get(id);
    if (!c || c.closing) return Promise.reject(new UnknownConnectionError(id));
    const size = typeof data === "string" ? data.length : data.byteLength;
    const refused = this.#overLimit(c, size);
    if (refused) return Promise.reject(refused);
    c.messagesOut++;
    c.bytesOut += size;
    this.#tel.counts.messagesOut++;
    this.#tel.counts.bytesOut += size;
    return c.socket.send(data);
  }

  /**
   * Sends `data` to every inbound connection (minus `except`, and those `filter` refuses), framed
   * once, on every node of the cluster (`filter` is a function: it applies on this node). Returns
   * how many got it on this node (those past their send-buffer limit do not).
   */
  broadcast(
    data: OutgoingData,
    options: { except?: string | readonly string[]; filter?: (id: string) => boolean } = {},
  ): number {
    const except = exceptSet(options.except);
    return this.#traced("broadcast", undefined, data, () => {
      this.#cluster?.broadcast(data, except);
      return this.#fanout(this.#conns.values(), data, except, options.filter, true);
    });
  }

  /** Runs a fan-out inside a PRODUCER span (when traced) that records how many it reached. */
  #traced(op: string, topic: string | undefined, data: OutgoingData, run: () => number): number {
    const tel = this.#tel;
    if (!tel.sampleMessage()) return run();
    return tel.run(topic ? `${op} ${topic}` : op, SpanKind.PRODUCER, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: op,
      [ATTR.OPERATION_TYPE]: "send",
      [ATTR.BODY_SIZE]: typeof data === "string" ? data.length : data.byteLength,
      ...(topic ? { [ATTR.TOPIC]: topic } : {}),
    }, (span) => {
      const n = run();
      span?.setAttribute(ATTR.RECEIVERS, n);
      return n;
    });
  }

  /**
   * Sends `data` to every subscriber of `topic`, framed once, on every node of the cluster.
   * Returns how many subscribers this node has (on a topic with history they get it from the
   * broker with its offset, as every node does, so all see one order).
   */
  publish(
    topic: string,
    data: OutgoingData,
    options: { except?: string | readonly string[] } = {},
  ): number {
    const except = exceptSet(options.except);
    return this.#traced("publish", topic, data, () => this.#publish(topic, data, except));
  }

  #publish(topic: string, data: OutgoingData, except: Set<string> | undefined): number {
    const cluster = this.#cluster;
    if (cluster) {
      // not silent: a publish the broker refused is reported with its data
      cluster.publish(topic, data, except).catch((error) =>
        this.#emit("error", { error, op: `publish ${topic}`, data })
      );
      if (cluster.hasHistory(topic)) return this.subscribers(topic);
    }
    const members = this.#topics.get(topic);
    if (!members) return 0;
    return this.#fanout(members, data, except, undefined, false);
  }

  /**
   * Subscribes `id` to `topic` (as Bun and uWS do); dropped when it disconnects. On a topic with
   * history, `since` (the last position the client saw) first delivers what it missed, in order,
   * before anything newer, and resolves with a {@linkcode RecoveryResult}.
   */
  subscribe(
    id: string,
    topic: string,
    options: { since?: StreamPosition } = {},
  ): Promise<RecoveryResult | undefined> {
    if (this.#cluster?.isRemote(id)) {
      return this.#remote(() =>
        this.#cluster!.request(id, "subscribe", [id, topic, options.since ?? null])
      ) as Promise<RecoveryResult | undefined>;
    }
    try {
      return this.#subscribeLocal(this.#open(id), topic, options.since);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Unsubscribes `id` from `topic`. */
  unsubscribe(id: string, topic: string): Promise<void> {
    if (this.#cluster?.isRemote(id)) {
      return this.#remote(() => this.#cluster!.request(id, "unsubscribe", [id, topic])).then(
        () => {},
      );
    }
    try {
      const c = this.#open(id);
      c.topics?.delete(topic);
      c.hist?.delete(topic);
      this.#leave(c, topic);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Subscribers of `topic`. */
  subscribers(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /** Closes a connection with a close frame; resolves once the close handshake ended. */
  async close(id: string, code = 1000, reason = ""): Promise<void> {
    if (this.#cluster?.isRemote(id)) {
      await this.#remote(() => this.#cluster!.request(id, "close", [id, code, reason]));
      return;
    }
    const c = this.#open(id);
    c.closing = true;
    await c.socket.close(code, reason);
  }

  /** Drops a connection at once, without a close handshake (it ends with 1006). */
  async terminate(id: string): Promise<void> {
    if (this.#cluster?.isRemote(id)) {
      await this.#remote(() => this.#cluster!.request(id, "terminate", [id]));
      return;
    }
    const c = this.#open(id);
    c.closing = true;
    c.socket.terminate();
  }

  /** What the server knows of a connection (asked of its node when it is elsewhere). */
  inspect(id: string): Promise<ConnectionInfo> {
    if (this.#cluster?.isRemote(id)) {
      return this.#remote(() => this.#cluster!.request(id, "inspect", [id])) as Promise<
        ConnectionInfo
      >;
    }
    try {
      return Promise.resolve(this.#inspectLocal(id));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Connections on every node of the cluster (on this one alone without a cluster), asked within
   * the cluster's request timeout; nodes that did not answer are listed in `missing`.
   */
  countAll(): Promise<ClusterCount> {
    if (!this.#cluster) {
      return Promise.resolve({
        total: this.count,
        byNode: { [this.nodeId]: this.count },
        missing: [],
      });
    }
    return this.#cluster.count();
  }

  /** The other live nodes of the cluster (none without one). */
  get nodes(): NodeInfo[] {
    return this.#cluster?.nodes ?? [];
  }

  #inspectLocal(id: string): ConnectionInfo {
    const c = this.#open(id);
    const s = c.socket.stats;
    return {
      ...c.info,
      connectedAt: c.connectedAt,
      bytesIn: s?.bytesIn ?? 0,
      bytesOut: s?.bytesOut ?? c.bytesOut,
      messagesIn: s?.messagesIn ?? c.messagesIn,
      messagesOut: s?.messagesOut ?? c.messagesOut,
      bufferedAmount: c.socket.bufferedAmount,
      dropped: c.dropped,
      topics: c.topics ? [...c.topics] : [],
    };
  }

  /** Listens to a server event; returns the function that stops listening. */
  on<K extends keyof ServerEvents>(event: K, listener: (e: ServerEvents[K]) => void): () => void {
    const set = this.#listeners[event] as Set<(e: ServerEvents[K]) => void>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * Drains and stops: new upgrades get 503, every connection is closed with `code`/`reason`
   * (default 1001 "server shutting down"), the handlers get `timeoutMs` to run their
   * `onDisconnect`, then everything is torn down. Every `connect` got its `disconnect`.
   */
  stop(options: { code?: number; reason?: string; timeoutMs?: number } = {}): Promise<void> {
    return this.#stopping ??= this.#stop(options);
  }

  // ---- internals ----

  #open(id: string): Connection {
    const c = this.#conns.get(id);
    if (!c) throw new UnknownConnectionError(id);
    return c;
  }

  #admission(): { status: number; body: string } | undefined {
    if (this.#state === "starting") return { status: 503, body: "starting" };
    if (this.#state !== "ready") return { status: 503, body: "shutting down" };
    if (this.#conns.size >= this.#o.maxConnections) {
      return { status: 503, body: "too many connections" };
    }
    return undefined;
  }

  #accept(ws: WebSocketConnection, request: UpgradeRequest): void {
    const span = this.#upgrades.get(request);
    if (span) {
      span.setAttributes({ [ATTR.RESULT]: "accepted", [ATTR.PROTOCOL]: ws.handshake.protocol });
      span.end();
    }
    this.#register(ws, "inbound", { url: request.url, headers: headerRecord(request.headers) });
  }

  /** Starts the span of an upgrade request (refused by origin: result "forbidden" at once). */
  #upgradeSpan(request: UpgradeRequest, origin: string | null): Span | undefined {
    let span = this.#upgrades.get(request);
    if (span) return span;
    span = this.#tel.start(`upgrade ${pathOf(request.url)}`, SpanKind.SERVER, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.ORIGIN]: origin ?? "",
      [ATTR.RESULT]: "forbidden",
    });
    if (span) this.#upgrades.set(request, span);
    return span;
  }

  #register(
    socket: Socket,
    direction: "inbound" | "outbound",
    req: { url: string; headers: Record<string, string> },
  ): Connection {
    let id = newConnectionId(this.nodeId);
    while (this.#conns.has(id)) id = newConnectionId(this.nodeId); // 96 random bits: never, but
    const info: ConnectInfo = {
      id,
      direction,
      remoteAddr: socket.remoteAddr,
      localAddr: socket.localAddr,
      url: req.url,
      headers: req.headers,
      protocol: socket.handshake.protocol,
      extensions: socket.handshake.extensions,
    };
    const c = new Connection(id, socket, info, this.#owner);
    this.#conns.set(id, c);
    if (direction === "inbound") this.#inbound++;
    if (this.#stopping) c.closing = true;
    c.dispatch = this.#dispatcher.open(c, info);
    this.#emit("connect", info);
    this.#tel.counts.connections++;
    c.span = this.#tel.start(`connection ${pathOf(req.url)}`, SpanKind.SERVER, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.CLIENT_ID]: id,
      [ATTR.NODE]: this.nodeId,
    });
    const counting = socket.stats ? undefined : () => (_m: WireMessage) => (c.messagesIn++, false);
    void pump(socket, c.dispatch, {
      offer: counting,
      observe: this.#o.telemetry === false
        ? undefined
        : { telemetry: this.#tel, destination: pathOf(req.url), clientId: id },
    }).done.then((close) => close ? this.#end(c, close) : this.#endOnClose(c));
    return c;
  }

  #endOnClose(c: Connection): void {
    void c.socket.closed.then((close) => this.#end(c, close));
  }

  /** A connection's socket closed: everything about it goes, exactly once. */
  #end(c: Connection, close: CloseInfo): void {
    if (c[ended]) return;
    c[ended] = true;
    this.#conns.delete(c.id);
    if (c.info.direction === "inbound") this.#inbound--;
    if (c.topics) { for (const t of c.topics) this.#leave(c, t); }
    const info: DisconnectInfo = {
      id: c.id,
      code: close.code,
      reason: close.reason,
      wasClean: close.wasClean,
    };
    c.dispatch.end({ info });
    this.#emit("disconnect", info);
    this.#tel.counts.connections--;
    if (c.span) {
      c.span.setAttributes({
        [ATTR.CLOSE_CODE]: close.code,
        [ATTR.CLOSE_REASON]: close.reason,
        [ATTR.CLOSE_CLEAN]: close.wasClean,
      });
      c.span.end();
    }
  }

  #leave(c: Connection, topic: string): void {
    const members = this.#topics.get(topic);
    if (!members) return;
    members.delete(c);
    if (members.size > 0) return;
    this.#topics.delete(topic);
    this.#cluster?.leave(topic);
  }

  async #subscribeLocal(
    c: Connection,
    topic: string,
    since: StreamPosition | undefined,
  ): Promise<RecoveryResult | undefined> {
    const cluster = this.#cluster;
    const history = cluster?.hasHistory(topic) ?? false;
    if (since && !history) {
      throw new TypeError(`topic "${topic}" keeps no history: there is nothing to recover from`);
    }
    (c.topics ??= new Set()).add(topic);
    let members = this.#topics.get(topic);
    if (!members) this.#topics.set(topic, members = new Set());
    members.add(c);
    // While recovering, the topic's new messages for this connection wait behind the missed ones.
    type State = { offset: number; epoch: string; held?: [StreamPosition, OutgoingData][] };
    const state: State | undefined = since
      ? { offset: since.offset, epoch: since.epoch, held: [] }
      : undefined;
    if (state) (c.hist ??= new Map()).set(topic, state);
    if (cluster) await cluster.join(topic);
    if (!cluster || !state) return undefined;
    let result: RecoveryResult;
    try {
      const r = await cluster.history(topic, since);
      if (r.recovered) {
        for (const m of r.messages) {
          this.#sendEvent(c, { topic, offset: m.offset, epoch: r.position.epoch, data: m.data });
        }
        result = { recovered: true, missed: r.messages.length, position: r.position };
      } else {
        this.#sendEvent(c, { topic, recovered: false, reason: r.reason, ...r.position });
        result = { recovered: false, reason: r.reason, position: r.position };
      }
      state.offset = r.position.offset;
      state.epoch = r.position.epoch;
    } finally {
      const held = state.held ?? [];
      state.held = undefined;
      for (const [pos, data] of held) this.#historySend(c, topic, pos, data);
    }
    return result;
  }

  /** Hands one history message to one connection, once, in offset order (or holds it). */
  #historySend(c: Connection, topic: string, pos: StreamPosition, data: OutgoingData): void {
    const hist = c.hist ??= new Map();
    let st = hist.get(topic);
    if (!st) hist.set(topic, st = { offset: pos.offset - 1, epoch: pos.epoch });
    if (st.held) {
      st.held.push([pos, data]);
      return;
    }
    if (st.epoch === pos.epoch && pos.offset <= st.offset) return; // it has this one already
    st.offset = pos.offset;
    st.epoch = pos.epoch;
    this.#sendEvent(c, { topic, offset: pos.offset, epoch: pos.epoch, data });
  }

  #sendEvent(c: Connection, e: HistoryEvent): void {
    if (c.closing) return;
    const data = (this.#o.cluster?.format ?? formatHistoryEvent)(e);
    const size = typeof data === "string" ? data.length : data.byteLength;
    if (this.#overLimit(c, size)) return;
    c.messagesOut++;
    c.bytesOut += size;
    c.socket.send(data).catch(() => {});
  }

  /** A remote operation: a synchronous refusal (a dead node) becomes a rejection. */
  #remote<T>(run: () => Promise<T>): Promise<T> {
    try {
      return run();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** What the cluster layer needs of this node. */
  #clusterHost(): ClusterHost {
    return {
      nodeId: this.nodeId,
      local: (op, args) => this.#call(op, args),
      broadcastLocal: (data, except) =>
        this.#fanout(this.#conns.values(), data, except, undefined, true),
      publishLocal: (topic, data, except) => {
        const members = this.#topics.get(topic);
        return members ? this.#fanout(members, data, except, undefined, false) : 0;
      },
      deliverHistory: (topic, pos, data) => {
        for (const c of this.#topics.get(topic) ?? []) this.#historySend(c, topic, pos, data);
      },
      historyLost: (topic, pos) => {
        for (const c of this.#topics.get(topic) ?? []) {
          const st = c.hist?.get(topic);
          if (st) {
            st.offset = pos.offset;
            st.epoch = pos.epoch;
          }
          this.#sendEvent(c, { topic, recovered: false, reason: "epoch", ...pos });
        }
      },
      count: () => this.count,
      emit: (event, payload) => this.#emit(event, payload as never),
      telemetry: this.#tel,
    };
  }

  /** The send-buffer policy: an error when `bytes` more would pass the limit. */
  #overLimit(c: Connection, bytes: number): SendBufferError | undefined {
    const buffered = c.socket.bufferedAmount + bytes;
    if (buffered <= this.#o.sendLimit) return undefined;
    const policy = this.#o.sendPolicy;
    if (policy === "close") {
      if (!c.closing) {
        c.closing = true;
        void c.socket.close(1008, "send buffer over its limit", 2000).catch(() =>
          c.socket.terminate()
        );
      }
    } else {
      c.dropped++;
      this.#emit("drop", { id: c.id, bytes });
    }
    this.#tel.drop(policy === "close" ? "send-buffer-close" : "send-buffer-drop");
    return new SendBufferError(c.id, buffered, this.#o.sendLimit, policy);
  }

  #fanout(
    targets: Iterable<Connection>,
    data: OutgoingData,
    except: ReadonlySet<string> | undefined,
    filter: ((id: string) => boolean) | undefined,
    inboundOnly: boolean,
  ): number {
    const text = typeof data === "string";
    const payload = text ? ENCODER.encode(data) : data;
    let frame: Uint8Array | undefined; // one encoding for every peer that can take it as is
    let n = 0;
    for (const c of targets) {
      if (c.closing || (inboundOnly && c.info.direction !== "inbound")) continue;
      if (except?.has(c.id) || (filter && !filter(c.id))) continue;
      const s = c.socket;
      if (this.#overLimit(c, payload.length)) continue;
      let sent: Promise<void>;
      if (s.canSendEncoded) {
        frame ??= encodeFrame(text ? Opcode.Text : Opcode.Binary, payload);
        sent = s.sendEncoded!(frame);
      } else {
        sent = s.send(data);
      }
      c.messagesOut++;
      c.bytesOut += payload.length;
      sent.catch(() => {}); // a connection closing under us: its disconnect says so
      n++;
      this.#tel.counts.messagesOut++;
      this.#tel.counts.bytesOut += payload.length;
    }
    return n;
  }

  /** The server's operations, by name, for handlers (inline or in a worker). */
  #call(op: string, args: readonly unknown[]): unknown {
    const [a, b, c] = args as [string, unknown, unknown];
    switch (op) {
      case "send":
        return this.send(a, b as OutgoingData);
      case "broadcast":
        return this.broadcast(a as unknown as OutgoingData, { except: b as string[] | undefined });
      case "publish":
        return this.publish(a, b as OutgoingData, { except: c as string[] | undefined });
      case "subscribe":
        return this.subscribe(a, b as string, { since: (c as StreamPosition | null) ?? undefined });
      case "unsubscribe":
        return this.unsubscribe(a, b as string);
      case "close":
        return this.close(a, b as number | undefined, c as string | undefined);
      case "terminate":
        return this.terminate(a);
      case "inspect":
        return this.#inspectLocal(a);
      case "count":
        return this.count;
    }
    throw new TypeError(`the server has no operation "${op}"`);
  }

  #emit<K extends keyof ServerEvents>(event: K, e: ServerEvents[K]): void {
    const set = this.#listeners[event];
    if (set.size === 0) {
      if (event === "error") console.error("wse server: a handler failed", e);
      return;
    }
    for (const l of set) {
      try {
        (l as (e: ServerEvents[K]) => void)(e);
      } catch (error) {
        console.error(`wse server: a "${event}" listener threw`, error);
      }
    }
  }

  async #stop(o: { code?: number; reason?: string; timeoutMs?: number }): Promise<void> {
    const timeoutMs = o.timeoutMs ?? this.#o.stopTimeoutMs;
    this.#state = "draining";
    const deadline = performance.now() + timeoutMs;
    const left = () => Math.max(1, deadline - performance.now());
    const conns = [...this.#conns.values()];
    for (const c of conns) c.closing = true;
    await Promise.all(
      conns.map((c) =>
        c.socket.close(o.code ?? 1001, o.reason ?? "server shutting down", left()).catch(() =>
          c.socket.terminate()
        )
      ),
    );
    // every connection ended: its onDisconnect is queued behind its last message
    await within(Promise.all(conns.map((c) => c.whenHandled())), { timeoutMs: left() })
      .catch(() => {});
    await Promise.all([...this.#listening].map((l) => l.close()));
    await this.#cluster?.stop();
    await this.#dispatcher.close(left());
    this.#state = "stopped";
  }
}

/**
 * Creates a {@linkcode Server}: validates the options (throws `ServerOptionError`) and starts its
 * handlers (a worker pool with `workers`). It takes no connection until you `listen`, pass its
 * `handler` to `Deno.serve`, or feed it `node:http` upgrades with `handleNodeUpgrade`.
 *
 * @example
 * ```ts
 * import { createServer } from "./server.ts";
 * const server = createServer({ onMessage: (m, ctx) => ctx.send(m.type === "text" ? m.data : "") });
 * const { port } = await server.listen();
 * await server.ready; // the handlers are up: upgrades get 503 until then
 * const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
 * await new Promise((r) => (ws.onopen = r));
 * ws.close();
 * await server.stop();
 * ```
 */
export function createServer(options: ServerOptions): Server {
  return new Server(options);
}
