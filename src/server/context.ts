/**
 * What the server's handlers see: the context of the connection they run for, with every server
 * operation on any connection (`ctx.server`), on the main thread and in a worker alike. In a
 * worker the operations travel to the main thread by name; their results and errors come back.
 *
 * @module
 */

import type { HandlerContext, PauseLease, TraceCarrier } from "../dispatch/types.ts";
import type { OutgoingData, WireMessage } from "../transport/types.ts";
import type { StreamAddr } from "../transport/tcp_stream.ts";
import { NodeUnavailableError, SendBufferError, UnknownConnectionError } from "./errors.ts";
import type { StreamPosition } from "./cluster/broker.ts";
import type { RecoveryResult } from "./server.ts";

/** The server's errors, restored as their classes in a worker (`instanceof` works there too). */
export const errors = { UnknownConnectionError, SendBufferError, NodeUnavailableError };

/**
 * What `onConnect` gets about a new connection (structured-cloneable: it crosses to workers).
 *
 * @example
 * ```ts
 * import type { ConnectInfo } from "./context.ts";
 * function describe(c: ConnectInfo): string {
 *   return `${c.id} from ${c.remoteAddr?.hostname} on ${c.url} (${c.protocol || "no subprotocol"})`;
 * }
 * ```
 */
export interface ConnectInfo {
  /** The connection's id. */
  readonly id: string;
  /** `"inbound"` (a client connected to us) or `"outbound"` (we dialed, `server.connect`). */
  readonly direction: "inbound" | "outbound";
  /** The peer's address, where the transport knows it. */
  readonly remoteAddr?: StreamAddr;
  /** Our address, where the transport knows it. */
  readonly localAddr?: StreamAddr;
  /** Request target (path and query) of an inbound connection; the URL of an outbound one. */
  readonly url: string;
  /** Request headers of an inbound connection (lower-case names); response headers outbound. */
  readonly headers: Readonly<Record<string, string>>;
  /** The subprotocol selected ("" for none). */
  readonly protocol: string;
  /** The extensions negotiated (`Sec-WebSocket-Extensions`, "" for none). */
  readonly extensions: string;
}

/**
 * How a connection ended, as `onDisconnect` and the `disconnect` event get it.
 *
 * @example
 * ```ts
 * import type { DisconnectInfo } from "./context.ts";
 * const d: DisconnectInfo = { id: "n.x", code: 1001, reason: "going away", wasClean: true };
 * ```
 */
export interface DisconnectInfo {
  /** The connection's id. */
  readonly id: string;
  /** The close code (1006 when the connection dropped without a close frame). */
  readonly code: number;
  /** The close reason. */
  readonly reason: string;
  /** True when both close frames were exchanged. */
  readonly wasClean: boolean;
}

/**
 * A connection as `inspect` reports it.
 *
 * @example
 * ```ts
 * import type { ConnectionInfo } from "./context.ts";
 * function line(c: ConnectionInfo): string {
 *   return `${c.id}: ${c.messagesIn} in, ${c.messagesOut} out, ${c.bufferedAmount} B waiting`;
 * }
 * ```
 */
export interface ConnectionInfo extends ConnectInfo {
  /** When it connected (ms since the epoch). */
  readonly connectedAt: number;
  /** Bytes read from the socket. */
  readonly bytesIn: number;
  /** Bytes written to the socket. */
  readonly bytesOut: number;
  /** Data messages received. */
  readonly messagesIn: number;
  /** Data messages sent. */
  readonly messagesOut: number;
  /** Bytes accepted for sending and not yet written. */
  readonly bufferedAmount: number;
  /** Messages dropped by the send-buffer policy `"drop"`. */
  readonly dropped: number;
  /** Topics it is subscribed to. */
  readonly topics: readonly string[];
}

/**
 * Every server operation, by connection id, as handlers reach it (`ctx.server`): on the main
 * thread and in a worker alike, each returns a promise. An unknown or closed id rejects with
 * `UnknownConnectionError`, which names the id.
 *
 * @example
 * ```ts
 * import type { ServerHandle } from "./context.ts";
 * async function greetAll(server: ServerHandle, from: string): Promise<void> {
 *   const n = await server.broadcast(`${from} joined`, { except: from });
 *   console.log(`told ${n} others`);
 * }
 * ```
 */
export interface ServerHandle {
  /** Sends to one connection; resolves when the socket took it (see `sendBuffer`). */
  send(id: string, data: OutgoingData): Promise<void>;
  /** Sends to every inbound connection (framed once); resolves with how many got it. */
  broadcast(data: OutgoingData, options?: { except?: string | readonly string[] }): Promise<number>;
  /** Sends to every subscriber of `topic` (framed once); resolves with how many got it. */
  publish(
    topic: string,
    data: OutgoingData,
    options?: { except?: string | readonly string[] },
  ): Promise<number>;
  /**
   * Subscribes a connection to a topic (dropped when it disconnects). On a topic with history,
   * `since` (the client's last position) first delivers what it missed, or says it cannot.
   */
  subscribe(
    id: string,
    topic: string,
    options?: { since?: StreamPosition },
  ): Promise<RecoveryResult | undefined>;
  /** Unsubscribes a connection from a topic. */
  unsubscribe(id: string, topic: string): Promise<void>;
  /** Closes a connection with a close frame; resolves once the close handshake ended. */
  close(id: string, code?: number, reason?: string): Promise<void>;
  /** Drops a connection without a close handshake (1006). */
  terminate(id: string): Promise<void>;
  /** What the server knows of a connection. */
  inspect(id: string): Promise<ConnectionInfo>;
  /** Open connections. */
  count(): Promise<number>;
}

/**
 * What the server's handlers get: the connection they run for, its shortcuts, and every server
 * operation through `server`.
 *
 * @example
 * ```ts
 * import type { ServerContext } from "./context.ts";
 * export async function onMessage(
 *   m: { type: "text"; data: string } | { type: "binary"; data: Uint8Array },
 *   ctx: ServerContext,
 * ): Promise<void> {
 *   if (m.type === "text" && m.data.startsWith("join ")) await ctx.subscribe(m.data.slice(5));
 *   else await ctx.server.publish("lobby", m.type === "text" ? m.data : m.data.slice());
 * }
 * ```
 */
export interface ServerContext {
  /** This connection's id. */
  readonly id: string;
  /** Who runs the handler: `"main"`, or the worker's id. */
  readonly workerId: string;
  /** W3C trace context of the message being handled, when telemetry is on. */
  readonly trace?: TraceCarrier;
  /** Sends on this connection. */
  send(data: OutgoingData): Promise<void>;
  /** Subscribes this connection to `topic` (see {@linkcode ServerHandle.subscribe}). */
  subscribe(
    topic: string,
    options?: { since?: StreamPosition },
  ): Promise<RecoveryResult | undefined>;
  /** Unsubscribes this connection from `topic`. */
  unsubscribe(topic: string): Promise<void>;
  /** Closes this connection. */
  close(code?: number, reason?: string): Promise<void>;
  /**
   * The pause button: until `lease.resume()` this connection's messages are not dispatched and
   * `lease.read()` takes them (request/response with the client, no ids). In sticky mode the
   * lease holds the worker's other connections too: keep it short.
   */
  pause(signal?: AbortSignal): Promise<PauseLease>;
  /** Every server operation, on any connection. */
  readonly server: ServerHandle;
}

/**
 * The handlers a server runs (inline, or exported by the worker module): `onConnect`, then the
 * connection's messages in order, then `onDisconnect`, exactly once each per connection.
 *
 * @example
 * ```ts
 * import type { ServerHandlers } from "./context.ts";
 * export const handlers: ServerHandlers = {
 *   onConnect: async (ctx) => {
 *     await ctx.subscribe("lobby");
 *   },
 *   onMessage: (m, ctx) => void ctx.server.publish("lobby", m.type === "text" ? m.data : "?"),
 *   onDisconnect: (info) => console.log("left", info.id, info.code),
 * };
 * ```
 */
export interface ServerHandlers {
  /** A connection opened. */
  onConnect?(ctx: ServerContext, info: ConnectInfo): void | Promise<void>;
  /** A message arrived. */
  onMessage?(message: WireMessage, ctx: ServerContext): void | Promise<void>;
  /** A connection ended (after its last message was handled). */
  onDisconnect?(info: DisconnectInfo, ctx: ServerContext): void | Promise<void>;
}

/**
 * Shapes the dispatch layer's handler context into a {@linkcode ServerContext}. Runs on the main
 * thread and in every pool worker.
 *
 * @example
 * ```ts
 * import { context } from "./context.ts";
 * const ctx = context({
 *   connectionId: "n.c1",
 *   workerId: "main",
 *   send: () => Promise.resolve(),
 *   pause: () => Promise.reject(new Error("not in this example")),
 *   call: (op, ...args) => Promise.resolve(console.log(op, args)),
 * });
 * await ctx.subscribe("room"); // "subscribe" [ "n.c1", "room" ]
 * ```
 */
export function context(base: HandlerContext): ServerContext {
  return new Context(base);
}

// Classes, not object literals of closures: a server holds one context per connection.

class Handle implements ServerHandle {
  readonly #base: HandlerContext;
  constructor(base: HandlerContext) {
    this.#base = base;
  }
  send(id: string, data: OutgoingData): Promise<void> {
    return this.#base.call("send", id, data) as Promise<void>;
  }
  broadcast(data: OutgoingData, o?: { except?: string | readonly string[] }): Promise<number> {
    return this.#base.call("broadcast", data, o?.except) as Promise<number>;
  }
  publish(
    topic: string,
    data: OutgoingData,
    o?: { except?: string | readonly string[] },
  ): Promise<number> {
    return this.#base.call("publish", topic, data, o?.except) as Promise<number>;
  }
  subscribe(
    id: string,
    topic: string,
    o?: { since?: StreamPosition },
  ): Promise<RecoveryResult | undefined> {
    return this.#base.call("subscribe", id, topic, o?.since ?? null) as Promise<
      RecoveryResult | undefined
    >;
  }
  unsubscribe(id: string, topic: string): Promise<void> {
    return this.#base.call("unsubscribe", id, topic) as Promise<void>;
  }
  close(id: string, code?: number, reason?: string): Promise<void> {
    return this.#base.call("close", id, code, reason) as Promise<void>;
  }
  terminate(id: string): Promise<void> {
    return this.#base.call("terminate", id) as Promise<void>;
  }
  inspect(id: string): Promise<ConnectionInfo> {
    return this.#base.call("inspect", id) as Promise<ConnectionInfo>;
  }
  count(): Promise<number> {
    return this.#base.call("count") as Promise<number>;
  }
}

class Context implements ServerContext {
  readonly #base: HandlerContext;
  #server?: Handle;
  constructor(base: HandlerContext) {
    this.#base = base;
  }
  get id(): string {
    return this.#base.connectionId;
  }
  get workerId(): string {
    return this.#base.workerId;
  }
  get trace(): TraceCarrier | undefined {
    return this.#base.trace;
  }
  get server(): ServerHandle {
    return this.#server ??= new Handle(this.#base);
  }
  send(data: OutgoingData): Promise<void> {
    return this.#base.send(data);
  }
  pause(signal?: AbortSignal): Promise<PauseLease> {
    return this.#base.pause(signal);
  }
  subscribe(topic: string, o?: { since?: StreamPosition }): Promise<RecoveryResult | undefined> {
    return this.server.subscribe(this.id, topic, o);
  }
  unsubscribe(topic: string): Promise<void> {
    return this.server.unsubscribe(this.id, topic);
  }
  close(code?: number, reason?: string): Promise<void> {
    return this.server.close(this.id, code, reason);
  }
}
