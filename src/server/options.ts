/**
 * The server's options: types, defaults (Ergo's where it has one) and validation. Every rule an
 * option breaks is a {@linkcode ServerOptionError} naming the field.
 *
 * @module
 */

import type { PoolOptions } from "../dispatch/pool.ts";
import type { DeflateOptions } from "../protocol/deflate.ts";
import type { UpgradeRequest } from "../transport/tcp_server.ts";
import type { WireMessage } from "../transport/types.ts";
import type { ConnectInfo, DisconnectInfo, ServerContext } from "./context.ts";
import { ServerOptionError } from "./errors.ts";
import { NODE_NAME, randomNodeName } from "./ids.ts";
import type { ClusterOptions } from "./cluster/cluster.ts";
import type { TelemetryOptions } from "../telemetry/telemetry.ts";

/**
 * Options of `createServer(options)`.
 *
 * @example
 * ```ts
 * import type { ServerOptions } from "./options.ts";
 * const options: ServerOptions = {
 *   onMessage: (m, ctx) => ctx.send(m.type === "text" ? m.data : m.data.slice()),
 *   checkOrigin: ["https://chat.example.com"],
 *   keepAlive: { intervalMs: 20_000, timeoutMs: 5_000 },
 *   sendBuffer: { limit: 4 << 20, policy: "drop" },
 *   maxConnections: 50_000,
 * };
 * ```
 */
export interface ServerOptions {
  /** A connection opened (main thread; with `workers`, export it from the module instead). */
  onConnect?(ctx: ServerContext, info: ConnectInfo): void | Promise<void>;
  /** A message arrived (main thread; with `workers`, export it from the module instead). */
  onMessage?(message: WireMessage, ctx: ServerContext): void | Promise<void>;
  /** A connection ended (main thread; with `workers`, export it from the module instead). */
  onDisconnect?(info: DisconnectInfo, ctx: ServerContext): void | Promise<void>;
  /**
   * Run the handlers in a pool of Web Workers (Ergo's process pool): `module` exports
   * `onConnect`, `onMessage` and `onDisconnect`; `assign` `"sticky"` (default: a connection is
   * handled by one worker for its whole life, chosen round-robin when it opens) or `"shared"`
   * (any free worker; each connection's messages still in order).
   */
  workers?: PoolOptions;
  /**
   * Which browser origins may connect: a function, a list of origins
   * (`"https://app.example.com"`), or `"*"` for any. Default: same origin (the `Origin`
   * header's host equals the `Host` header). With the default and with a list, requests without
   * `Origin` (not from a browser page; any non-browser client could forge one anyway) pass; a
   * function decides for them too. Refused requests get 403.
   */
  checkOrigin?:
    | ((origin: string | null, request: UpgradeRequest) => boolean | Promise<boolean>)
    | readonly string[]
    | "*";
  /** Time a client has for its whole handshake, in ms. Default 15 000 (Ergo's). */
  handshakeTimeoutMs?: number;
  /** Subprotocols spoken; the first one the client offers is selected. */
  protocols?: readonly string[];
  /** Accept permessage-deflate when offered. Default false (it costs memory per connection). */
  compression?: boolean | DeflateOptions;
  /** Largest message accepted; bigger closes the connection with 1009. Default 16 MiB. */
  maxPayload?: number;
  /**
   * Ping every `intervalMs`; a peer whose pong does not come within `timeoutMs` is dropped and
   * reported (1006 "keep-alive pong timeout"). Default `{ intervalMs: 30_000, timeoutMs:
   * 10_000 }`; `false` turns it off.
   */
  keepAlive?: false | { intervalMs?: number; timeoutMs?: number };
  /**
   * A connection's unwritten bytes may not pass `limit` (default 1 MiB). Past it, `policy`
   * `"close"` (default) closes the slow consumer with 1008; `"drop"` drops the message and
   * reports it (a `drop` event, `inspect().dropped`). Either way the send rejects with
   * `SendBufferError`; a broadcast skips that connection.
   */
  sendBuffer?: { limit?: number; policy?: "close" | "drop" };
  /** Most open connections; further upgrades get 503. Default: no limit. */
  maxConnections?: number;
  /**
   * Plain HTTP requests on the server's own port (when it listens itself), e.g. the app's page.
   * Without it they get 426.
   */
  fetch?: (request: Request) => Response | Promise<Response>;
  /** This node's name: the prefix of every connection id. Default: a random one. */
  nodeId?: string;
  /** Budget for the handlers to finish when the server stops, in ms. Default 5 000. */
  stopTimeoutMs?: number;
  /**
   * Share one address space with the other nodes on the same broker: sends, closes and
   * inspections by id reach any node; broadcasts and topics span them all; topics may keep a
   * history to recover from. Give every node its own `nodeId`.
   */
  cluster?: ClusterOptions;
  /**
   * OpenTelemetry: spans for each upgrade (origin, subprotocol, result), each connection (its
   * close code and reason), each traced message (`receive`, then `process` where the handler
   * runs), each send, broadcast and publish (a send to another node continues the same trace
   * there); metrics for connections, messages, bytes, dispatch latency and drops. Providers
   * default to the global ones (Deno's own with `OTEL_DENO=true`). `false` turns it off.
   */
  telemetry?: TelemetryOptions | false;
}

/** The options after defaults and validation. */
export interface ResolvedServerOptions {
  readonly handlers: {
    onConnect?: ServerOptions["onConnect"];
    onMessage?: ServerOptions["onMessage"];
    onDisconnect?: ServerOptions["onDisconnect"];
  };
  readonly workers?: PoolOptions;
  readonly checkOrigin: (
    origin: string | null,
    request: UpgradeRequest,
  ) => boolean | Promise<boolean>;
  readonly handshakeTimeoutMs: number;
  readonly protocols?: readonly string[];
  readonly compression: boolean | DeflateOptions;
  readonly maxPayload: number;
  readonly keepAlive?: { intervalMs: number; timeoutMs: number };
  readonly sendLimit: number;
  readonly sendPolicy: "close" | "drop";
  readonly maxConnections: number;
  readonly fetch?: (request: Request) => Response | Promise<Response>;
  readonly nodeId: string;
  readonly stopTimeoutMs: number;
  readonly cluster?: ClusterOptions;
  readonly telemetry?: TelemetryOptions | false;
}

const KNOWN = new Set([
  "onConnect",
  "onMessage",
  "onDisconnect",
  "workers",
  "checkOrigin",
  "handshakeTimeoutMs",
  "protocols",
  "compression",
  "maxPayload",
  "keepAlive",
  "sendBuffer",
  "maxConnections",
  "fetch",
  "nodeId",
  "stopTimeoutMs",
  "cluster",
  "telemetry",
]);

function fail(field: string, rule: string, value: unknown): never {
  throw new ServerOptionError(field, rule, value);
}

function positive(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value > 0) || Number.isNaN(value)) {
    fail(field, "must be a number > 0", value);
  }
  return value;
}

/**
 * Same origin, as browsers define it for WebSockets: the `Origin` header's host equals the
 * request's `Host`. A request without `Origin` does not come from a browser page and passes.
 */
function sameOrigin(origin: string | null, request: UpgradeRequest): boolean {
  if (origin === null) return true;
  try {
    return new URL(origin).host.toLowerCase() === (request.headers.get("host") ?? "").toLowerCase();
  } catch {
    return false;
  }
}

function clusterOptions(c: ClusterOptions | undefined): ClusterOptions | undefined {
  if (c === undefined) return undefined;
  if (typeof c !== "object" || c === null) fail("cluster", "must be an object", c);
  for (const key of Object.keys(c)) {
    if (!["broker", "heartbeatMs", "requestTimeoutMs", "history", "format"].includes(key)) {
      fail(`cluster.${key}`, "is not a cluster option", key);
    }
  }
  const b = c.broker as unknown as Record<string, unknown> | undefined;
  if (typeof b !== "object" || b === null || typeof b.publish !== "function") {
    fail("cluster.broker", "must be a Broker (e.g. await RedisBroker.connect({ url }))", c.broker);
  }
  positive("cluster.heartbeatMs", c.heartbeatMs, 1000);
  positive("cluster.requestTimeoutMs", c.requestTimeoutMs, 5000);
  for (const name of ["history", "format"] as const) {
    if (c[name] !== undefined && typeof c[name] !== "function") {
      fail(`cluster.${name}`, "must be a function", c[name]);
    }
  }
  return c;
}

/**
 * Applies defaults and validates; throws {@linkcode ServerOptionError} naming the first bad field.
 *
 * @example
 * ```ts
 * import { resolveServerOptions } from "./options.ts";
 * console.log(resolveServerOptions({ onMessage: () => {} }).handshakeTimeoutMs); // 15000
 * ```
 */
export function resolveServerOptions(options: ServerOptions): ResolvedServerOptions {
  if (typeof options !== "object" || options === null) {
    fail("options", "must be an object", options);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) fail(key, `is not a server option (known: ${[...KNOWN].join(", ")})`, key);
  }
  const o = options;
  for (const name of ["onConnect", "onMessage", "onDisconnect", "fetch"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "function") {
      fail(name, "must be a function", o[name]);
    }
  }
  const inline = o.onConnect || o.onMessage || o.onDisconnect;
  if (o.workers !== undefined) {
    if (inline) {
      fail(
        "workers",
        "cannot be combined with onConnect/onMessage/onDisconnect: export them from the worker module",
        "both",
      );
    }
    if (typeof o.workers !== "object" || o.workers === null) {
      fail("workers", "must be an object", o.workers);
    }
  } else if (!inline) {
    fail(
      "onMessage",
      "a server needs handlers: onConnect, onMessage, onDisconnect, or workers",
      undefined,
    );
  }
  let checkOrigin: ResolvedServerOptions["checkOrigin"] = sameOrigin;
  const co = o.checkOrigin;
  if (co === "*") checkOrigin = () => true;
  else if (typeof co === "function") checkOrigin = co;
  else if (Array.isArray(co)) {
    const allowed = new Set<string>();
    for (const origin of co) {
      try {
        allowed.add(new URL(origin).origin);
      } catch {
        fail("checkOrigin", 'must list origins such as "https://app.example.com"', origin);
      }
    }
    // As with the same-origin default, a request without Origin is not from a browser page:
    // the check guards against cross-site pages, which always send one.
    checkOrigin = (origin) => origin === null || allowed.has(origin);
  } else if (co !== undefined) {
    fail("checkOrigin", 'must be a function, a list of origins or "*"', co);
  }
  if (
    o.protocols !== undefined &&
    !(Array.isArray(o.protocols) && o.protocols.every((p) => typeof p === "string"))
  ) {
    fail("protocols", "must be an array of strings", o.protocols);
  }
  if (
    o.compression !== undefined && typeof o.compression !== "boolean" &&
    typeof o.compression !== "object"
  ) {
    fail("compression", "must be a boolean or deflate options", o.compression);
  }
  let keepAlive: ResolvedServerOptions["keepAlive"];
  if (o.keepAlive !== false) {
    const k = o.keepAlive ?? {};
    if (typeof k !== "object" || k === null) fail("keepAlive", "must be false or an object", k);
    keepAlive = {
      intervalMs: positive("keepAlive.intervalMs", k.intervalMs, 30_000),
      timeoutMs: positive("keepAlive.timeoutMs", k.timeoutMs, 10_000),
    };
  }
  const sb = o.sendBuffer ?? {};
  if (typeof sb !== "object" || sb === null) fail("sendBuffer", "must be an object", sb);
  if (sb.policy !== undefined && sb.policy !== "close" && sb.policy !== "drop") {
    fail("sendBuffer.policy", 'must be "close" or "drop"', sb.policy);
  }
  const nodeId = o.nodeId ?? randomNodeName();
  if (typeof nodeId !== "string" || !NODE_NAME.test(nodeId)) {
    fail("nodeId", "must be 1-31 characters of A-Z, a-z, 0-9, - and _", nodeId);
  }
  return {
    handlers: { onConnect: o.onConnect, onMessage: o.onMessage, onDisconnect: o.onDisconnect },
    workers: o.workers,
    checkOrigin,
    handshakeTimeoutMs: positive("handshakeTimeoutMs", o.handshakeTimeoutMs, 15_000),
    protocols: o.protocols ? [...o.protocols] : undefined,
    compression: o.compression ?? false,
    maxPayload: positive("maxPayload", o.maxPayload, 16 << 20),
    keepAlive,
    sendLimit: positive("sendBuffer.limit", sb.limit, 1 << 20),
    sendPolicy: sb.policy ?? "close",
    maxConnections: positive("maxConnections", o.maxConnections, Infinity),
    fetch: o.fetch,
    nodeId,
    stopTimeoutMs: positive("stopTimeoutMs", o.stopTimeoutMs, 5_000),
    cluster: clusterOptions(o.cluster),
    telemetry: o.telemetry,
  };
}
