/**
 * OpenTelemetry for every layer, at almost no cost when nobody listens.
 *
 * - Spans follow the messaging conventions: `{operation} {destination}`, `receive` as CLIENT,
 *   `process` as CONSUMER, `send` as PRODUCER, `messaging.system = "websocket"` (see
 *   `docs/tracing.md` for every span and attribute).
 * - Providers come from the options, or the global ones (Deno's built-in OpenTelemetry registers
 *   them with `OTEL_DENO=true`). With neither, {@linkcode Telemetry.tracing} is false and the hot
 *   paths skip every call into the API; it is checked again every 1024 asks, so a provider
 *   registered later is picked up.
 * - Trace context crosses threads and nodes as a W3C `traceparent` (and `tracestate`), written and
 *   read here, so it does not depend on a registered propagator. Only sampled spans are carried.
 * - Counts (messages, bytes, connections) are plain numbers observed by the meter when it
 *   collects: no metric call per message.
 *
 * @module
 */

import {
  type Attributes,
  type Context,
  context,
  type Counter,
  createTraceState,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";

/**
 * W3C trace context, as it travels with a message to whoever handles it (a worker, another node).
 *
 * @example
 * ```ts
 * import type { TraceCarrier } from "./telemetry.ts";
 * const t: TraceCarrier = { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
 * ```
 */
export interface TraceCarrier {
  /** The `traceparent` header value. */
  traceparent?: string;
  /** The `tracestate` header value. */
  tracestate?: string;
  /** When the message arrived on its socket (ms since the epoch), for the dispatch latency. */
  receivedAt?: number;
}

/** The attribute names wse records (messaging conventions where they have one). */
export const ATTR = {
  SYSTEM: "messaging.system",
  OPERATION_NAME: "messaging.operation.name",
  OPERATION_TYPE: "messaging.operation.type",
  DESTINATION: "messaging.destination.name",
  BODY_SIZE: "messaging.message.body.size",
  CLIENT_ID: "messaging.client.id",
  ERROR_TYPE: "error.type",
  SERVER_ADDRESS: "server.address",
  SERVER_PORT: "server.port",
  WORKER_ID: "wse.worker.id",
  MESSAGE_TYPE: "wse.message.type",
  RETRY_COUNT: "wse.reconnect.retry_count",
  RETRY_DELAY: "wse.reconnect.delay_ms",
  CLOSE_CODE: "wse.close.code",
  CLOSE_REASON: "wse.close.reason",
  CLOSE_CLEAN: "wse.close.clean",
  ORIGIN: "wse.upgrade.origin",
  PROTOCOL: "wse.upgrade.subprotocol",
  RESULT: "wse.upgrade.result",
  RECEIVERS: "wse.receivers",
  NODE: "wse.node",
  TOPIC: "wse.topic",
  CALLBACK: "wse.callback",
} as const;

/**
 * Where wse takes its tracer and meter from.
 *
 * @example
 * ```ts ignore
 * import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
 * import type { TelemetryOptions } from "./telemetry.ts";
 * const telemetry: TelemetryOptions = { tracerProvider: new BasicTracerProvider() };
 * ```
 */
export interface TelemetryOptions {
  /**
   * An OpenTelemetry `TracerProvider` (typed here by what wse calls on it). Default: the global
   * one (`trace.getTracerProvider()`), Deno's own with `OTEL_DENO=true`.
   */
  tracerProvider?: { getTracer(name: string, version?: string): unknown };
  /** An OpenTelemetry `MeterProvider`. Default: the global one. */
  meterProvider?: { getMeter(name: string, version?: string): unknown };
  /**
   * The share of messages traced (0..1, default 1): decided once per message, before any span
   * exists, so the other messages cost nothing. The provider's sampler still applies to the
   * spans that are started. Lifecycle spans (start, session, reconnect, callbacks) are always
   * started.
   */
  messageSampling?: number;
}

const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();
const VERSION = "0.1.0";
const HEX = /^[0-9a-f]+$/;

/** True when spans from `provider` may be recorded: a real provider, not the API's no-op. */
function live(provider: TracerProvider): boolean {
  if (provider === NOOP_TRACER_PROVIDER) return false;
  if (provider instanceof ProxyTracerProvider) {
    return provider.getDelegate() !== NOOP_TRACER_PROVIDER;
  }
  return true;
}

/** Running totals, observed by the meter when it collects. */
export interface Counts {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  connections: number;
}

/** One component's telemetry: its tracer, its meter, its counts. */
export class Telemetry {
  /** The counts behind the observable instruments. */
  readonly counts: Counts = {
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    connections: 0,
  };
  readonly #options?: TelemetryOptions;
  readonly #off: boolean;
  #tracer?: Tracer;
  #tracing = false;
  #asks = 0;
  /** Messages still to leave out before the next traced one (see `messageSampling`). */
  #skip: number;
  #meter?: Meter;
  #reconnects?: Counter;
  #drops?: Counter;
  #refusals?: Counter;
  #latency?: Histogram;

  /**
   * `options` gives the providers; `false` turns instrumentation off altogether. `component`
   * names the instruments' scope (`"wse.engine"`, `"wse.server"`...).
   */
  constructor(readonly component: string, options?: TelemetryOptions | false) {
    this.#off = options === false;
    this.#options = options || undefined;
    this.#skip = this.#gap();
    this.#probe();
  }

  /** Telemetry that records nothing and asks nothing. */
  static readonly off: Telemetry = new Telemetry("wse", false);

  /** True when a span started now could be recorded. Cheap: ask it per message. */
  get tracing(): boolean {
    if ((++this.#asks & 1023) === 0) this.#probe();
    return this.#tracing;
  }

  /** True when this message is to be traced: tracing, and it falls in `messageSampling`. */
  sampleMessage(): boolean {
    if (!this.tracing) return false;
    if (this.#skip > 0) {
      this.#skip--;
      return false;
    }
    this.#skip = this.#gap();
    return true;
  }

  /**
   * How many messages to leave out before the next traced one. Each message is traced with
   * probability `messageSampling`, independently; the gaps between traced ones are then
   * geometric, so one random draw per traced message decides the same as one per message.
   */
  #gap(): number {
    const r = this.#options?.messageSampling ?? 1;
    if (r >= 1) return 0;
    if (!(r > 0)) return Infinity;
    return Math.floor(Math.log(1 - Math.random()) / Math.log(1 - r));
  }

  #probe(): void {
    if (this.#off) return;
    const provider = this.#tracerProvider();
    this.#tracing = live(provider);
    if (this.#tracing && !this.#tracer) this.#tracer = provider.getTracer(this.component, VERSION);
  }

  /** The tracer (only meaningful while `tracing`). */
  get tracer(): Tracer {
    return this.#tracer ??= this.#tracerProvider().getTracer(this.component, VERSION);
  }

  #tracerProvider(): TracerProvider {
    return (this.#options?.tracerProvider as TracerProvider | undefined) ??
      trace.getTracerProvider();
  }

  /** The meter, with its observable counts registered on first use. */
  get meter(): Meter {
    if (this.#meter) return this.#meter;
    const m = this.#meter = this.#off
      ? metrics.getMeterProvider().getMeter("noop")
      : ((this.#options?.meterProvider as MeterProvider | undefined) ??
        metrics.getMeterProvider()).getMeter(
          this.component,
          VERSION,
        );
    if (this.#off) return m;
    const c = this.counts;
    const observe = (name: string, description: string, unit: string, read: () => number) =>
      m.createObservableCounter(name, { description, unit }).addCallback((r) => r.observe(read()));
    observe(
      "messaging.client.consumed.messages",
      "Messages received",
      "{message}",
      () => c.messagesIn,
    );
    observe("messaging.client.sent.messages", "Messages sent", "{message}", () => c.messagesOut);
    observe("wse.bytes.received", "Payload bytes received", "By", () => c.bytesIn);
    observe("wse.bytes.sent", "Payload bytes sent", "By", () => c.bytesOut);
    m.createObservableUpDownCounter("wse.connections", {
      description: "Open connections",
      unit: "{connection}",
    }).addCallback((r) => r.observe(c.connections));
    return m;
  }

  /** Counts one reconnect attempt (`outcome`: "ok" or the error's name). */
  reconnect(outcome: string): void {
    if (this.#off) return;
    (this.#reconnects ??= this.meter.createCounter("wse.reconnects", {
      description: "Reconnect attempts",
      unit: "{attempt}",
    })).add(1, { outcome });
  }

  /** Counts a message dropped or refused, by cause. */
  drop(cause: string): void {
    if (this.#off) return;
    (this.#drops ??= this.meter.createCounter("wse.drops", {
      description: "Messages dropped or refused, by cause",
      unit: "{message}",
    })).add(1, { cause });
  }

  /** Counts an upgrade request the server refused, by cause ("origin", "starting"...). */
  refuse(cause: string): void {
    if (this.#off) return;
    (this.#refusals ??= this.meter.createCounter("wse.upgrades.refused", {
      description: "Upgrade requests refused, by cause",
      unit: "{request}",
    })).add(1, { cause });
  }

  /** Records the time from the socket to a handler's start, in seconds. */
  dispatchLatency(seconds: number, attributes?: Attributes): void {
    if (this.#off) return;
    (this.#latency ??= this.meter.createHistogram("wse.dispatch.latency", {
      description: "From a message's arrival on the socket to its handler's start",
      unit: "s",
    })).record(seconds, attributes);
  }

  /**
   * Starts a span (undefined while not `tracing`, so callers skip the rest). `parent` defaults
   * to the active context.
   */
  start(name: string, kind: SpanKind, attributes?: Attributes, parent?: Context): Span | undefined {
    if (!this.tracing) return undefined;
    return this.tracer.startSpan(name, { kind, attributes }, parent ?? context.active());
  }

  /**
   * Runs `fn` inside a span named `name` (the span is active for it: the user's own spans nest
   * under it), records a throw or rejection on it, and ends it when `fn` settles.
   */
  run<T>(
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    fn: (span?: Span) => T,
    parent?: Context,
  ): T {
    const span = this.start(name, kind, attributes, parent);
    if (!span) return fn();
    const active = trace.setSpan(parent ?? context.active(), span);
    let result: T;
    try {
      result = context.with(active, fn, undefined, span);
    } catch (error) {
      fail(span, error);
      span.end();
      throw error;
    }
    if (result && typeof (result as { then?: unknown }).then === "function") {
      return (result as unknown as Promise<unknown>).then(
        (v) => (span.end(), v),
        (error) => {
          fail(span, error);
          span.end();
          throw error;
        },
      ) as T;
    }
    span.end();
    return result;
  }
}

/**
 * Runs `fn` with the context `carrier` holds as the active one (spans `fn` starts are its
 * children), or plainly when there is none: the main thread doing what a worker's handler asked.
 *
 * @example
 * ```ts
 * import { withCarrier } from "./telemetry.ts";
 * const n = withCarrier(undefined, () => 42); // no trace: just runs
 * console.log(n);
 * ```
 */
export function withCarrier<T>(carrier: TraceCarrier | undefined, fn: () => T): T {
  const parent = contextOf(carrier);
  return parent ? context.with(parent, fn) : fn();
}

/**
 * Runs the handler of a traced message (`carrier` set: the message was sampled) inside a
 * `process` span, a child of the message's `receive` span — in a worker, on the worker's own
 * provider — and records the dispatch latency; `fn` gets the span, whose context the handler's
 * own spans may take as parent. An untraced message runs `fn` directly.
 */
export function processMessage<T>(
  telemetry: Telemetry,
  carrier: TraceCarrier | undefined,
  attributes: Attributes,
  fn: (span?: Span) => T,
): T {
  if (!carrier?.traceparent || !telemetry.tracing) return fn();
  if (carrier.receivedAt) {
    telemetry.dispatchLatency(
      (performance.timeOrigin + performance.now() - carrier.receivedAt) / 1000,
    );
  }
  return telemetry.run(
    "process",
    SpanKind.CONSUMER,
    {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: "process",
      [ATTR.OPERATION_TYPE]: "process",
      ...attributes,
    },
    fn,
    contextOf(carrier),
  );
}

/** Marks a span failed by `error` (its type in `error.type`). */
export function fail(span: Span, error: unknown): void {
  const type = error instanceof Error ? error.name : typeof error;
  span.setAttribute(ATTR.ERROR_TYPE, type);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: error instanceof Error ? error.message : String(error),
  });
}

/**
 * The W3C trace context of a span, when it is sampled (an unsampled span's context is not worth
 * carrying: its children would not be recorded either).
 *
 * @example
 * ```ts
 * import { trace } from "@opentelemetry/api";
 * import { carrierOf } from "./telemetry.ts";
 * const span = trace.wrapSpanContext({
 *   traceId: "0af7651916cd43dd8448eb211c80319c",
 *   spanId: "b7ad6b7169203331",
 *   traceFlags: 1,
 * });
 * console.log(carrierOf(span)?.traceparent); // 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
 * ```
 */
export function carrierOf(span: Span | undefined): TraceCarrier | undefined {
  if (!span) return undefined;
  const c = span.spanContext();
  if (!(c.traceFlags & 1)) return undefined;
  const traceparent = `00-${c.traceId}-${c.spanId}-01`;
  const state = c.traceState?.serialize();
  return state ? { traceparent, tracestate: state } : { traceparent };
}

/**
 * The context a carried `traceparent` names, as the parent of a span made elsewhere (a worker,
 * another node); `undefined` when it is missing or malformed.
 *
 * @example
 * ```ts
 * import { trace } from "@opentelemetry/api";
 * import { contextOf } from "./telemetry.ts";
 * const ctx = contextOf({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
 * console.log(ctx && trace.getSpanContext(ctx)?.spanId); // b7ad6b7169203331
 * ```
 */
export function contextOf(carrier: TraceCarrier | undefined): Context | undefined {
  const tp = carrier?.traceparent;
  if (!tp) return undefined;
  const [version, traceId, spanId, flags] = tp.split("-");
  if (
    version !== "00" || traceId?.length !== 32 || spanId?.length !== 16 || !HEX.test(traceId) ||
    !HEX.test(spanId) || !flags || !HEX.test(flags)
  ) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId,
    spanId,
    traceFlags: parseInt(flags, 16),
    isRemote: true,
    traceState: carrier.tracestate ? createTraceState(carrier.tracestate) : undefined,
  });
}

export { SpanKind };
