/**
 * A trace as an indented tree of text lines: one span a line, children under their parent, two
 * spaces a level, with its kind, where it ran, when it started after the trace's first span and
 * how long it took.
 *
 * @module
 */

import { ms, type PlainSpan } from "./spans.ts";

const KIND = ["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];

/** The trace's spans, each with its depth, depth-first in start order (roots first). */
export function ordered(spans: PlainSpan[]): { span: PlainSpan; depth: number }[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, PlainSpan[]>();
  for (const s of spans) {
    // a span whose parent is not in the set (another process) is shown as a root
    const parent = s.parentSpanId && ids.has(s.parentSpanId) ? s.parentSpanId : undefined;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  for (const list of children.values()) list.sort((a, b) => ms(a.startTime) - ms(b.startTime));
  const out: { span: PlainSpan; depth: number }[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      out.push({ span: s, depth });
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return out;
}

/** Where a span ran, as shown: the thread, and the worker's id for a worker's spans. */
export function where(s: PlainSpan): string {
  return s.thread === "main" ? `main (${s.scope})` : `${s.thread} (${s.scope})`;
}

/** The lines of one trace. */
export function traceTree(spans: PlainSpan[]): string[] {
  const rows = ordered(spans);
  if (rows.length === 0) return [];
  const t0 = Math.min(...spans.map((s) => ms(s.startTime)));
  const nameWidth = Math.max(...rows.map((r) => r.depth * 2 + r.span.name.length));
  const whereWidth = Math.max(...rows.map((r) => where(r.span).length));
  return rows.map(({ span, depth }) => {
    const start = ms(span.startTime) - t0;
    const took = ms(span.endTime) - ms(span.startTime);
    return [
      ("  ".repeat(depth) + span.name).padEnd(nameWidth),
      (KIND[span.kind] ?? "?").padEnd(8),
      where(span).padEnd(whereWidth),
      `+${start.toFixed(3)} ms`.padStart(12),
      `${took.toFixed(3)} ms`.padStart(10),
    ].join("  ");
  });
}
