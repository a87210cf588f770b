/**
 * Finished spans as plain records, so a worker can hand its spans to the main thread (one
 * BroadcastChannel message per span) and the main thread can print, draw and export every span
 * of a trace in one place, whichever thread made it.
 *
 * @module
 */

import type { Attributes, HrTime, SpanStatus } from "@opentelemetry/api";
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base";

/** A finished span, as plain data (structured-clonable). */
export interface PlainSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** True when the parent came from another thread or node (a carried context). */
  parentIsRemote?: boolean;
  name: string;
  /** `SpanKind` (0 internal, 1 server, 2 client, 3 producer, 4 consumer). */
  kind: number;
  /** The instrumentation scope: `wse.engine`, `wse.server`, `wse.worker`, or the app's. */
  scope: string;
  startTime: HrTime;
  endTime: HrTime;
  attributes: Attributes;
  status: SpanStatus;
  /** Where it ran: `main`, or the worker's thread. */
  thread: string;
}

/** Now, in ms since the epoch, to the microsecond (the same clock in every worker). */
function now(): number {
  return performance.timeOrigin + performance.now();
}

/** An `HrTime` from ms since the epoch. */
function hr(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

/** Milliseconds since the epoch, from an `HrTime`. */
export function ms(t: HrTime): number {
  return t[0] * 1000 + t[1] / 1e6;
}

/**
 * A span processor that hands each finished span to `take` as a plain record. It reads its own
 * clock when a span starts and ends: the JS SDK stamps a span's start with `Date.now()` (whole
 * milliseconds; only the duration is finer), too coarse to draw a hand-off that takes tens of
 * microseconds. `thread` names where the spans are made (`main`, a worker's id).
 */
export function recorder(
  take: (span: PlainSpan, sdkSpan: ReadableSpan) => void,
  thread: () => string,
): SpanProcessor {
  const started = new WeakMap<object, number>();
  return {
    onStart(span) {
      started.set(span, now());
    },
    onEnd(span) {
      const end = now();
      const c = span.spanContext();
      take({
        traceId: c.traceId,
        spanId: c.spanId,
        parentSpanId: span.parentSpanContext?.spanId,
        parentIsRemote: span.parentSpanContext?.isRemote,
        name: span.name,
        kind: span.kind,
        scope: span.instrumentationScope.name,
        startTime: hr(started.get(span) ?? ms(span.startTime)),
        endTime: hr(end),
        attributes: span.attributes,
        status: span.status,
        thread: thread(),
      }, span);
    },
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
}

/**
 * A plain record as the SDK's `ReadableSpan` again, so an exporter on the main thread can send a
 * worker's span too. `resource` is the main thread's (one process, one resource).
 */
export function toReadable(p: PlainSpan, resource: ReadableSpan["resource"]): ReadableSpan {
  const duration: HrTime = [p.endTime[0] - p.startTime[0], p.endTime[1] - p.startTime[1]];
  if (duration[1] < 0) duration[0]--, duration[1] += 1e9;
  return {
    name: p.name,
    kind: p.kind,
    spanContext: () => ({ traceId: p.traceId, spanId: p.spanId, traceFlags: 1 }),
    parentSpanContext: p.parentSpanId
      ? { traceId: p.traceId, spanId: p.parentSpanId, traceFlags: 1, isRemote: p.parentIsRemote }
      : undefined,
    startTime: p.startTime,
    endTime: p.endTime,
    status: p.status,
    attributes: p.attributes,
    links: [],
    events: [],
    duration,
    ended: true,
    resource,
    instrumentationScope: { name: p.scope },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}
