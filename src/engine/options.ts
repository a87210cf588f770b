/**
 * The engine's options: types, defaults and validation. Every rule an option breaks is reported
 * as an {@linkcode EngineOptionError} naming the field and the rule.
 *
 * @module
 */

import { runtime } from "../platform/runtime.ts";
import type {
  CloseInfo,
  OverflowPolicy,
  WebSocketAdapter,
  WireMessage,
} from "../transport/types.ts";
import { whatwgAdapter } from "../transport/whatwg_adapter.ts";
import { wseAdapter } from "../transport/tcp_adapter.ts";
import { sleep as defaultSleep } from "../util/async.ts";
import type { CloseContext, MessageContext, OpenContext, SessionContext } from "./context.ts";
import { context } from "./context.ts";
import type { Dispatcher } from "../dispatch/types.ts";
import { EngineOptionError } from "./errors.ts";
import type { CloseError } from "./errors.ts";
import { InlineDispatcher } from "../dispatch/inline.ts";
import {
  PoolDispatcher,
  type PoolOptions,
  poolOptionsProblem,
  resolveModule,
} from "../dispatch/pool.ts";
import { InlineModuleDispatcher } from "../dispatch/inline_module.ts";
import { sharedMemoryProblem } from "../dispatch/shared_memory.ts";
import type { SendBufferOptions, SendBufferOverflow } from "./send_buffer.ts";
import { closestName } from "../util/names.ts";
import type { Telemetry, TelemetryOptions } from "../telemetry/telemetry.ts";
import type { LogSink } from "../util/rate_limited_log.ts";

/** A close frame: what `onClose` may return, and what the engine then sends. */
export type CloseFrame = { readonly code: number; readonly reason?: string };

/**
 * What a worker module given as `workers.module` exports: `onMessage` (required) and, optionally,
 * `onReadError`, which runs in the worker when its `onMessage` throws or rejects (the error also
 * reaches the engine's `onReadError` on the main thread). Binary `message.data` is a view into
 * shared memory, valid until `onMessage` returns (or its promise settles): copy it
 * (`message.data.slice()`) to keep it longer.
 *
 * @example
 * ```ts
 * import type { WorkerModule } from "./options.ts";
 * export const onMessage: WorkerModule["onMessage"] = async (m, ctx) => {
 *   if (m.type === "text" && m.data === "ping") await ctx.send(`pong from ${ctx.workerId}`);
 * };
 * ```
 */
export interface WorkerModule {
  /** Handles one message. May return a promise; the worker takes no new message until it settles. */
  onMessage(message: WireMessage, ctx: MessageContext): void | Promise<void>;
  /** Runs in the worker when `onMessage` throws or rejects. */
  onReadError?(error: unknown, ctx: MessageContext): void;
}

/**
 * The six callbacks, with the names and meanings of gowse (the Go client engine this one
 * follows). All run on the main thread, except `onMessage`, which runs wherever the dispatcher
 * runs it (the main thread by default, a worker with a pool). All are optional; an error no
 * callback handles goes to the engine's `logger`.
 *
 * @example
 * ```ts
 * import type { EngineClient } from "./options.ts";
 * const client: EngineClient = {
 *   onOpen: (ctx) => ctx.send("hello"),
 *   onMessage: (msg, ctx) => console.log(ctx.sessionId, msg.data),
 *   onClose: (peer) => console.log("closed", peer?.code ?? "by us"),
 * };
 * ```
 */
export interface EngineClient {
  /**
   * A connection is open. Rejecting (or calling `restart()`/`exit()`) refuses it: `start()`
   * rejects with `EngineStartError`, a reconnect attempt counts as failed. No other callback
   * runs for a refused connection. Dispatch starts once it resolves.
   */
  onOpen?(ctx: OpenContext): void | Promise<void>;
  /** A data message arrived. Handlers run one at a time in arrival order on the main thread. */
  onMessage?(message: WireMessage, ctx: MessageContext): void | Promise<void>;
  /**
   * The session is ending. `peer` is how the peer closed (its code and reason; 1006 on a drop),
   * or `undefined` when the engine closes (stop, restart, exit). The returned frame is what the
   * engine sends when it closes (default 1001 "going away"); it is ignored when the peer closed.
   * `code` is 1000–4999 (default 1001), `reason` at most 123 bytes of UTF-8.
   */
  onClose?(
    peer: CloseInfo | undefined,
    ctx: CloseContext,
  ):
    | { readonly code: number; readonly reason?: string }
    | void
    | Promise<{ readonly code: number; readonly reason?: string } | void>;
  /**
   * An `onMessage` handler threw, or the adapter reported a read problem (an overflow, a message
   * over `maxPayload`, a missed pong). Without it, these go to the `logger`.
   */
  onReadError?(error: unknown, ctx: SessionContext): void | Promise<void>;
  /** Closing failed (see `CloseError`). Without it, these go to the `logger`. */
  onCloseError?(error: CloseError): void | Promise<void>;
  /**
   * A reconnect attempt failed. `retryCount` counts the failures of this restart cycle, from 0.
   * The name is gowse's: a *restart* is one reconnect cycle (a drop or `restart()`, then attempts
   * until one succeeds). Without it, failed attempts go to the `logger`. `ctx.exit()` stops the
   * engine for good (ends the retry loop); `ctx.willRetry` is false after the last attempt
   * `reconnect.maxRetries` allows.
   */
  onRestartError?(
    error: unknown,
    retryCount: number,
    ctx: { exit(): void; readonly willRetry: boolean },
  ): void | Promise<void>;
}

/**
 * The engine's `workers` option: the pool's options (its one connection is shared, so there is no
 * `assign`), and what to do where the pool cannot run.
 *
 * @example
 * ```ts
 * import type { EngineWorkersOptions } from "./options.ts";
 * const workers: EngineWorkersOptions = {
 *   module: new URL("./handler.ts", import.meta.url),
 *   count: 2,
 *   fallback: "inline", // a page that is not cross-origin isolated runs handler.ts inline
 * };
 * ```
 */
export interface EngineWorkersOptions extends Omit<PoolOptions, "assign"> {
  /**
   * Where workers cannot share memory (a browser page that is not cross-origin isolated, i.e.
   * not served with `Cross-Origin-Opener-Policy: same-origin` and
   * `Cross-Origin-Embedder-Policy: require-corp`), `"inline"` imports `module` on the main
   * thread and runs its `onMessage` there, one message at a time, with `ctx.workerId` `"main"`.
   * Without it, `new WebSocketEngine()` throws an `EngineOptionError` saying why. Where the pool
   * can run, this changes nothing.
   */
  fallback?: "inline";
}

/**
 * Auto-reconnect settings.
 *
 * @example
 * ```ts
 * import type { ReconnectOptions } from "./options.ts";
 * const reconnect: ReconnectOptions = { baseDelayMs: 250, maxDelayMs: 10_000, maxRetries: 20 };
 * ```
 */
export interface ReconnectOptions {
  /** Reconnect after a drop or `restart()`. Default true. */
  enabled?: boolean;
  /** Ceiling of the first attempt's jittered delay, in ms. Default 500. */
  baseDelayMs?: number;
  /** Ceiling of every delay, in ms. Default 30 000. */
  maxDelayMs?: number;
  /** Failed attempts per restart cycle before the engine gives up and stops. Default Infinity. */
  maxRetries?: number;
  /** Randomness for the jitter, in [0, 1). Default `Math.random` (inject for tests). */
  random?: () => number;
  /** How to wait a delay; must reject when `signal` aborts. Default a timer (inject for tests). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** Client heartbeat: a ping every `intervalMs`; no pong within `timeoutMs` drops the connection. */
type HeartbeatOptions = { intervalMs: number; timeoutMs?: number };

/** Builds the dispatcher that runs `onMessage` (one per `start()`…stop cycle). */
type DispatcherFactory = (client: EngineClient, telemetry: Telemetry) => Dispatcher;

const dispatcherOverrides = new WeakMap<EngineOptions, DispatcherFactory>();

/**
 * For tests: the engine built from the returned options runs `onMessage` through `factory`
 * instead of the dispatcher its options select.
 *
 * @example
 * ```ts
 * import { withDispatcher } from "./options.ts";
 * import { InlineDispatcher } from "../dispatch/inline.ts";
 * const options = withDispatcher(
 *   { url: "ws://127.0.0.1:1/", client: {} },
 *   (client) => new InlineDispatcher({ onMessage: client.onMessage }),
 * );
 * ```
 */
export function withDispatcher(options: EngineOptions, factory: DispatcherFactory): EngineOptions {
  const copy = { ...options };
  dispatcherOverrides.set(copy, factory);
  return copy;
}

/**
 * Options of `new WebSocketEngine(options)`.
 *
 * @example
 * ```ts
 * import type { EngineOptions } from "./options.ts";
 * const options: EngineOptions = {
 *   url: "ws://127.0.0.1:8080/",
 *   client: { onMessage: (msg) => console.log(msg.data) },
 *   reconnect: { baseDelayMs: 250, maxRetries: 20 },
 * };
 * ```
 */
export interface EngineOptions {
  /** `ws:` or `wss:` URL of the server. */
  url: string | URL;
  /** The callbacks. */
  client: EngineClient;
  /**
   * How to open connections. Default: `wseAdapter()` (our own RFC 6455 client: read
   * back-pressure, ping, heartbeat) where the runtime has TCP sockets (Deno, Node, Bun), else
   * `whatwgAdapter()` (the runtime's `WebSocket`, e.g. in browsers).
   */
  adapter?: WebSocketAdapter;
  /** Subprotocols offered, in preference order. */
  protocols?: readonly string[];
  /** Extra handshake request headers (adapters that cannot send them reject the dial). */
  headers?: Readonly<Record<string, string>>;
  /** Auto-reconnect: `false` to disable, or settings. Default on. */
  reconnect?: boolean | ReconnectOptions;
  /** Budget for dial + handshake + `onOpen`, per attempt, in ms. Default 10 000. */
  openTimeoutMs?: number;
  /** Budget for `stop()` as a whole, in ms. Default 5 000. */
  stopTimeoutMs?: number;
  /**
   * Ping the server and drop a connection whose pong is late (`onReadError` gets the
   * `TimeoutError`, `onClose` gets 1006, the engine reconnects). Needs an adapter that can ping
   * (ws, wse); with one that cannot, `onReadError` gets a `NotSupportedError` once per session.
   * Default off.
   */
  heartbeat?: {
    /** Time between pings, in ms. */
    intervalMs: number;
    /** Pong deadline, in ms. Default `intervalMs`. */
    timeoutMs?: number;
  };
  /** Largest message accepted (where the adapter can enforce it). */
  maxPayload?: number;
  /** Stop reading the socket past this many unread bytes (where the adapter can). Default 1 MiB. */
  readHighWaterMark?: number;
  /** Resume reading below this many unread bytes. Default half the high-water mark. */
  readLowWaterMark?: number;
  /** Hard bound on unread bytes for sockets that cannot stop reading. Default 64 MiB. */
  maxQueuedBytes?: number;
  /** What happens past `maxQueuedBytes`. Default "close". */
  overflow?: OverflowPolicy;
  /** Messages the main-thread dispatcher queues before back-pressure. Default 1024. */
  dispatchQueueLength?: number;
  /**
   * Runs `onMessage` in a pool of Web Workers fed through a SharedArrayBuffer ring (then
   * `client.onMessage` is not used): `module` exports `onMessage` (pass a `URL`,
   * `new URL("./handler.ts", import.meta.url)`), `count` defaults to the number of cores.
   * Messages are handled in parallel, in arrival order per `orderingKey` when one is given.
   * In a browser the page must be cross-origin isolated, or `fallback: "inline"` given.
   */
  workers?: EngineWorkersOptions;
  /**
   * The offline send buffer: `engine.send()` and `engine.request()` queue their message while
   * the engine is reconnecting, and the engine sends the queue once the next connection's
   * `onOpen` resolved, in order, before any newer send. `true` for the defaults (1024 messages,
   * 1 MiB, overflow `"reject-newest"`). Off by default: `send()` then rejects while offline.
   * Needs auto-reconnect. See `docs/reliability.md`.
   */
  sendBuffer?: boolean | SendBufferOptions;
  /**
   * Where errors that no callback handles go (a throwing `onMessage` without `onReadError`, failed
   * reconnect attempts without `onRestartError`, dropped buffered messages without `onDrop`, a
   * callback that throws). Rate-limited: a storm of identical lines prints the first and then a
   * count. Default `console.error`; `false` turns it off.
   */
  logger?: ((message: string, error?: unknown) => void) | false;
  /**
   * OpenTelemetry: spans for the lifecycle (start, stop, each session, each reconnect attempt,
   * each callback), each message (`receive` here, `process` where the handler runs, a worker
   * included) and each send; metrics for connections, messages, bytes, dispatch latency,
   * reconnects and drops. Providers default to the global ones (Deno's own with
   * `OTEL_DENO=true`); with none registered it costs next to nothing. `messageSampling` (0..1,
   * default 1) traces that share of messages. `false` turns it off. See `docs/tracing.md`.
   */
  telemetry?: {
    /** An OpenTelemetry `TracerProvider`. Default: the global one. */
    tracerProvider?: { getTracer(name: string, version?: string): unknown };
    /** An OpenTelemetry `MeterProvider`. Default: the global one. */
    meterProvider?: { getMeter(name: string, version?: string): unknown };
    /** The share of messages traced, 0..1. Default 1. */
    messageSampling?: number;
  } | false;
}

/** Options after defaults and validation. */
export interface ResolvedOptions {
  readonly url: URL;
  readonly client: EngineClient;
  readonly adapter: WebSocketAdapter;
  readonly protocols?: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
  readonly reconnect: Required<ReconnectOptions>;
  readonly openTimeoutMs: number;
  readonly stopTimeoutMs: number;
  readonly heartbeat?: Readonly<Required<HeartbeatOptions>>;
  readonly maxPayload?: number;
  readonly readHighWaterMark?: number;
  readonly readLowWaterMark?: number;
  readonly maxQueuedBytes?: number;
  readonly overflow?: OverflowPolicy;
  readonly dispatcher: DispatcherFactory;
  readonly sendBuffer?: Readonly<Required<Omit<SendBufferOptions, "onDrop">>> & {
    readonly onDrop?: SendBufferOptions["onDrop"];
  };
  readonly logger?: LogSink;
  readonly telemetry?: TelemetryOptions | false;
}

/** Defaults, in one place. */
export const ENGINE_DEFAULTS: {
  readonly openTimeoutMs: number;
  readonly stopTimeoutMs: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly dispatchQueueLength: number;
  readonly sendBufferMessages: number;
  readonly sendBufferBytes: number;
} = Object.freeze({
  openTimeoutMs: 10_000,
  stopTimeoutMs: 5_000,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  dispatchQueueLength: 1024,
  sendBufferMessages: 1024,
  sendBufferBytes: 1 << 20,
});

/** The module every pool worker imports to shape its handler context like the main thread's. */
const CONTEXT_MODULE = new URL("./context.ts", import.meta.url);

const CALLBACKS = new Set([
  "onOpen",
  "onMessage",
  "onClose",
  "onReadError",
  "onCloseError",
  "onRestartError",
]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const OVERFLOW = new Set(["close", "drop-newest", "drop-oldest"]);
const SEND_OVERFLOW = new Set<SendBufferOverflow>(["reject-newest", "drop-oldest"]);

// Every key each level accepts. The `satisfies` clauses make the compiler fail when an option is
// added to (or removed from) an interface without this list following.
const TOP_KEYS = Object.keys(
  {
    url: 1,
    client: 1,
    adapter: 1,
    protocols: 1,
    headers: 1,
    reconnect: 1,
    openTimeoutMs: 1,
    stopTimeoutMs: 1,
    heartbeat: 1,
    maxPayload: 1,
    readHighWaterMark: 1,
    readLowWaterMark: 1,
    maxQueuedBytes: 1,
    overflow: 1,
    dispatchQueueLength: 1,
    workers: 1,
    sendBuffer: 1,
    logger: 1,
    telemetry: 1,
  } satisfies Record<keyof EngineOptions, 1>,
);
const RECONNECT_KEYS = Object.keys(
  {
    enabled: 1,
    baseDelayMs: 1,
    maxDelayMs: 1,
    maxRetries: 1,
    random: 1,
    sleep: 1,
  } satisfies Record<
    keyof ReconnectOptions,
    1
  >,
);
const HEARTBEAT_KEYS = Object.keys(
  { intervalMs: 1, timeoutMs: 1 } satisfies Record<keyof HeartbeatOptions, 1>,
);
const WORKER_KEYS = Object.keys(
  {
    module: 1,
    count: 1,
    orderingKey: 1,
    ringBytes: 1,
    maxMessageBytes: 1,
    initTimeoutMs: 1,
    publishBatch: 1,
    fallback: 1,
  } satisfies Record<keyof NonNullable<EngineOptions["workers"]>, 1>,
);
const SEND_BUFFER_KEYS = Object.keys(
  { maxMessages: 1, maxBytes: 1, overflow: 1, onDrop: 1 } satisfies Record<
    keyof SendBufferOptions,
    1
  >,
);

/**
 * Rejects the first key of `value` that `allowed` does not have, naming the closest valid one.
 * `hint` may explain a key that belongs elsewhere (e.g. a callback given at the top level).
 */
function onlyKnownKeys(
  where: string,
  value: object,
  allowed: readonly string[],
  hint?: (key: string) => string | undefined,
): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const field = where ? `${where}.${key}` : key;
    const specific = hint?.(key);
    if (specific) fail(field, specific, key);
    const near = closestName(key, allowed);
    fail(
      field,
      near
        ? `is not an option; did you mean \`${where ? `${where}.` : ""}${near}\`?`
        : `is not an option (${where || "options"} has: ${allowed.join(", ")})`,
      key,
    );
  }
}

function fail(field: string, rule: string, value: unknown): never {
  throw new EngineOptionError(field, rule, value);
}

function positive(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    fail(field, "must be a finite number > 0", value);
  }
  return value;
}

function optionalPositiveInt(field: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    fail(field, "must be an integer > 0", value);
  }
  return value;
}

/** Our own client where the runtime can open TCP sockets, the runtime's `WebSocket` elsewhere. */
function defaultAdapter(): WebSocketAdapter {
  return runtime.tcp ? wseAdapter() : whatwgAdapter();
}

/**
 * Applies defaults and validates; throws {@linkcode EngineOptionError} naming the first bad field.
 *
 * @example
 * ```ts
 * import { resolveOptions } from "./options.ts";
 * const resolved = resolveOptions({ url: "ws://127.0.0.1:1/", client: {} });
 * console.log(resolved.reconnect.baseDelayMs); // 500
 * ```
 */
export function resolveOptions(options: EngineOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    fail("options", "must be an object", options);
  }
  onlyKnownKeys(
    "",
    options,
    TOP_KEYS,
    (key) =>
      CALLBACKS.has(key)
        ? `is not an option: callbacks go in \`client\` (did you mean \`client.${key}\`?)`
        : undefined,
  );

  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    fail("url", "must be an absolute ws: or wss: URL", options.url);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    fail("url", "must use the ws: or wss: scheme", String(options.url));
  }
  if (url.hash) fail("url", "must not have a fragment", String(options.url));

  const client = options.client;
  if (typeof client !== "object" || client === null) fail("client", "must be an object", client);
  // The client may be an instance with its own fields and helpers: only keys that look like a
  // callback, or like a top-level option put in the wrong place, are refused.
  for (const key of Object.keys(client)) {
    if (CALLBACKS.has(key)) continue;
    if (/^on/i.test(key)) {
      const near = closestName(key, CALLBACKS);
      fail(
        `client.${key}`,
        near
          ? `is not a callback; did you mean \`client.${near}\`?`
          : `is not a callback (expected one of ${[...CALLBACKS].join(", ")})`,
        key,
      );
    }
    if (TOP_KEYS.includes(key) && key !== "client") {
      fail(`client.${key}`, `is an engine option: did you mean the top-level \`${key}\`?`, key);
    }
  }
  for (const name of CALLBACKS) {
    const cb = (client as Record<string, unknown>)[name];
    if (cb !== undefined && typeof cb !== "function") {
      fail(`client.${name}`, "must be a function", cb);
    }
  }

  const adapter = options.adapter ?? defaultAdapter();
  if (typeof adapter !== "object" || adapter === null || typeof adapter.dial !== "function") {
    fail("adapter", "must be a WebSocketAdapter (an object with a dial method)", adapter);
  }

  if (options.protocols !== undefined) {
    if (!Array.isArray(options.protocols)) {
      fail("protocols", "must be an array of strings", options.protocols);
    }
    const seen = new Set<string>();
    for (const p of options.protocols) {
      if (typeof p !== "string" || !TOKEN.test(p)) {
        fail("protocols", "must contain HTTP tokens (no spaces, commas or separators)", p);
      }
      if (seen.has(p)) fail("protocols", "must not repeat a subprotocol", p);
      seen.add(p);
    }
  }
  if (options.headers !== undefined) {
    if (typeof options.headers !== "object" || options.headers === null) {
      fail("headers", "must be a record of header names to string values", options.headers);
    }
    for (const [name, value] of Object.entries(options.headers)) {
      if (!TOKEN.test(name)) fail(`headers.${name}`, "must be a valid header name", name);
      if (typeof value !== "string" || /[\r\n\0]/.test(value)) {
        fail(`headers.${name}`, "must be a string without CR, LF or NUL", value);
      }
    }
  }

  const rc = options.reconnect;
  if (rc !== undefined && typeof rc !== "boolean" && (typeof rc !== "object" || rc === null)) {
    fail("reconnect", "must be a boolean or an object", rc);
  }
  if (typeof rc === "object") onlyKnownKeys("reconnect", rc, RECONNECT_KEYS);
  const r: ReconnectOptions = typeof rc === "object" ? rc : { enabled: rc ?? true };
  if (r.enabled !== undefined && typeof r.enabled !== "boolean") {
    fail("reconnect.enabled", "must be a boolean", r.enabled);
  }
  if (r.enabled === false) {
    const other = Object.keys(r).find((k) => k !== "enabled");
    if (other) {
      fail(
        `reconnect.${other}`,
        "contradicts reconnect.enabled false (there is no reconnect to tune): remove one",
        (r as Record<string, unknown>)[other],
      );
    }
  }
  const baseDelayMs = positive("reconnect.baseDelayMs", r.baseDelayMs, ENGINE_DEFAULTS.baseDelayMs);
  const maxDelayMs = positive(
    "reconnect.maxDelayMs",
    r.maxDelayMs,
    Math.max(ENGINE_DEFAULTS.maxDelayMs, baseDelayMs),
  );
  if (maxDelayMs < baseDelayMs) {
    fail("reconnect.maxDelayMs", `must be >= reconnect.baseDelayMs (${baseDelayMs})`, maxDelayMs);
  }
  const maxRetries = r.maxRetries ?? Infinity;
  if (
    typeof maxRetries !== "number" ||
    !(maxRetries === Infinity || (Number.isSafeInteger(maxRetries) && maxRetries >= 0))
  ) {
    fail("reconnect.maxRetries", "must be an integer >= 0 or Infinity", maxRetries);
  }
  if (r.random !== undefined && typeof r.random !== "function") {
    fail("reconnect.random", "must be a function returning a number in [0, 1)", r.random);
  }
  if (r.sleep !== undefined && typeof r.sleep !== "function") {
    fail("reconnect.sleep", "must be a function (ms, signal) => Promise<void>", r.sleep);
  }
  const reconnectEnabled = r.enabled ?? true;

  const openTimeoutMs = positive(
    "openTimeoutMs",
    options.openTimeoutMs,
    ENGINE_DEFAULTS.openTimeoutMs,
  );
  const stopTimeoutMs = positive(
    "stopTimeoutMs",
    options.stopTimeoutMs,
    ENGINE_DEFAULTS.stopTimeoutMs,
  );
  let heartbeat: Required<HeartbeatOptions> | undefined;
  if (options.heartbeat !== undefined) {
    const hb = options.heartbeat;
    if (typeof hb !== "object" || hb === null) fail("heartbeat", "must be an object", hb);
    onlyKnownKeys("heartbeat", hb, HEARTBEAT_KEYS);
    if (hb.intervalMs === undefined) fail("heartbeat.intervalMs", "is required", undefined);
    const intervalMs = positive("heartbeat.intervalMs", hb.intervalMs, NaN);
    heartbeat = {
      intervalMs,
      timeoutMs: positive("heartbeat.timeoutMs", hb.timeoutMs, intervalMs),
    };
    if (adapter.name === "whatwg") {
      fail(
        "heartbeat",
        "needs an adapter that can ping: the WHATWG WebSocket cannot (use wseAdapter() or wsAdapter())",
        hb,
      );
    }
  }
  const maxPayload = optionalPositiveInt("maxPayload", options.maxPayload);
  const readHighWaterMark = optionalPositiveInt("readHighWaterMark", options.readHighWaterMark);
  const readLowWaterMark = options.readLowWaterMark === 0
    ? 0
    : optionalPositiveInt("readLowWaterMark", options.readLowWaterMark);
  if (
    readLowWaterMark !== undefined && readLowWaterMark > (readHighWaterMark ?? 1 << 20)
  ) {
    fail("readLowWaterMark", "must not exceed readHighWaterMark", readLowWaterMark);
  }
  const maxQueuedBytes = optionalPositiveInt("maxQueuedBytes", options.maxQueuedBytes);
  if (options.overflow !== undefined && !OVERFLOW.has(options.overflow)) {
    fail("overflow", 'must be "close", "drop-newest" or "drop-oldest"', options.overflow);
  }
  const queueLength = optionalPositiveInt("dispatchQueueLength", options.dispatchQueueLength) ??
    ENGINE_DEFAULTS.dispatchQueueLength;
  let pool: DispatcherFactory | undefined;
  if (options.workers !== undefined) {
    const w = options.workers;
    if (typeof w === "object" && w !== null) {
      if ("assign" in w) {
        fail(
          "workers.assign",
          "is not an engine option: the engine's one connection is shared",
          w.assign,
        );
      }
      onlyKnownKeys("workers", w, WORKER_KEYS);
    }
    const problem = poolOptionsProblem(w);
    if (problem) fail(`workers${problem.field}`, problem.rule, problem.value);
    if (client.onMessage !== undefined) {
      fail(
        "client.onMessage",
        "contradicts `workers`: with workers, onMessage runs in workers.module; remove one",
        client.onMessage,
      );
    }
    if (options.dispatchQueueLength !== undefined) {
      fail(
        "dispatchQueueLength",
        "contradicts `workers`: it sizes the main-thread dispatcher (workers.ringBytes sizes the pool)",
        options.dispatchQueueLength,
      );
    }
    if (w.fallback !== undefined && w.fallback !== "inline") {
      fail("workers.fallback", 'must be "inline" (or left out)', w.fallback);
    }
    const unshared = sharedMemoryProblem();
    if (!unshared) {
      pool = () => new PoolDispatcher(w, { context: CONTEXT_MODULE, order: "none" });
    } else if (w.fallback === "inline") {
      const module = resolveModule(w.module);
      pool = (_, telemetry) =>
        new InlineModuleDispatcher(module, { maxQueued: queueLength, context, telemetry });
    } else {
      fail(
        "workers",
        `${unshared}; or set workers.fallback to "inline" to run workers.module on the main thread`,
        w,
      );
    }
  }
  const dispatcher: DispatcherFactory = dispatcherOverrides.get(options) ?? pool ??
    ((c, telemetry) =>
      new InlineDispatcher({ onMessage: c.onMessage?.bind(c) }, {
        maxQueued: queueLength,
        context,
        telemetry,
      }));

  let sendBuffer: ResolvedOptions["sendBuffer"];
  const sb = options.sendBuffer;
  if (sb !== undefined && sb !== false) {
    if (sb !== true && (typeof sb !== "object" || sb === null)) {
      fail("sendBuffer", "must be a boolean or an object", sb);
    }
    const o: SendBufferOptions = sb === true ? {} : sb;
    onlyKnownKeys("sendBuffer", o, SEND_BUFFER_KEYS);
    const overflow = o.overflow ?? "reject-newest";
    if (!SEND_OVERFLOW.has(overflow)) {
      fail("sendBuffer.overflow", 'must be "reject-newest" or "drop-oldest"', overflow);
    }
    if (o.onDrop !== undefined && typeof o.onDrop !== "function") {
      fail("sendBuffer.onDrop", "must be a function (message, error) => void", o.onDrop);
    }
    if (!reconnectEnabled) {
      fail(
        "sendBuffer",
        "contradicts reconnect: false (nothing would ever send the queue): remove one",
        sb,
      );
    }
    sendBuffer = {
      maxMessages: optionalPositiveInt("sendBuffer.maxMessages", o.maxMessages) ??
        ENGINE_DEFAULTS.sendBufferMessages,
      maxBytes: optionalPositiveInt("sendBuffer.maxBytes", o.maxBytes) ??
        ENGINE_DEFAULTS.sendBufferBytes,
      overflow,
      onDrop: o.onDrop,
    };
  }

  const lg = options.logger;
  if (lg !== undefined && lg !== false && typeof lg !== "function") {
    fail("logger", "must be a function (message, error) => void, or false", lg);
  }
  const logger: LogSink | undefined = lg === false ? undefined : lg ?? defaultLogger;

  const tel = options.telemetry;
  if (tel !== undefined && tel !== false) {
    if (typeof tel !== "object" || tel === null) {
      fail("telemetry", "must be an object or false", tel);
    }
    onlyKnownKeys("telemetry", tel, ["tracerProvider", "meterProvider", "messageSampling"]);
    const ms = tel.messageSampling;
    if (ms !== undefined && !(typeof ms === "number" && ms >= 0 && ms <= 1)) {
      fail("telemetry.messageSampling", "must be a number in 0..1", ms);
    }
  }

  return {
    url,
    client,
    adapter,
    protocols: options.protocols ? [...options.protocols] : undefined,
    headers: options.headers ? { ...options.headers } : undefined,
    reconnect: {
      enabled: reconnectEnabled,
      baseDelayMs,
      maxDelayMs,
      maxRetries,
      random: r.random ?? Math.random,
      sleep: r.sleep ?? defaultSleep,
    },
    openTimeoutMs,
    stopTimeoutMs,
    heartbeat,
    maxPayload,
    readHighWaterMark,
    readLowWaterMark,
    maxQueuedBytes,
    overflow: options.overflow,
    dispatcher,
    sendBuffer,
    logger,
    telemetry: tel,
  };
}

/** `console.error`, with the error only when there is one. */
function defaultLogger(message: string, error?: unknown): void {
  if (error === undefined) console.error(message);
  else console.error(message, error);
}
