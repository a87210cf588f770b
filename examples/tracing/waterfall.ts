/**
 * One trace as a waterfall picture (SVG): a row per span, depth-first, a bar from its start to
 * its end on a shared time axis, coloured by where it ran (main thread, worker, the app's own
 * spans), and the hand-off from the socket to the handler's start marked.
 *
 * @module
 */

import { ms, type PlainSpan } from "./spans.ts";
import { ordered, where } from "./tree.ts";

const ROW = 26, TOP = 64, LABEL = 360, CHART = 560, PAD = 16;
const COLOR = { main: "#4e79a7", worker: "#f28e2b", app: "#59a14f" };

function escapeXml(s: string): string {
  return s.replace(
    /[<>&"]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!,
  );
}

/** A tick step (1, 2 or 5 × 10^k) that gives about six ticks over `span` ms. */
function tickStep(span: number): number {
  const raw = span / 6;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
}

function showMs(v: number): string {
  if (v === 0) return "0";
  return v < 1 ? `${Math.round(v * 1000)} µs` : `${+v.toFixed(2)} ms`;
}

function colorOf(s: PlainSpan): string {
  if (!s.scope.startsWith("wse.")) return COLOR.app;
  return s.thread === "main" ? COLOR.main : COLOR.worker;
}

/** The SVG of one trace (its spans, from any thread). */
export function waterfallSvg(spans: PlainSpan[], title: string): string {
  const rows = ordered(spans);
  const t0 = Math.min(...spans.map((s) => ms(s.startTime)));
  const t1 = Math.max(...spans.map((s) => ms(s.endTime)));
  const total = Math.max(t1 - t0, 0.001);
  const x = (t: number) => LABEL + ((t - t0) / total) * CHART;
  const height = TOP + rows.length * ROW + 70;
  const width = LABEL + CHART + 110;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${PAD}" y="24" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${PAD}" y="44" fill="#555">trace ${spans[0]?.traceId ?? ""} · ` +
    `${rows.length} spans · ${showMs(total)} from first start to last end</text>`,
  ];
  // time axis
  const step = tickStep(total);
  for (let t = 0; t <= total + 1e-9; t += step) {
    const tx = LABEL + (t / total) * CHART;
    out.push(
      `<line x1="${tx}" y1="${TOP - 6}" x2="${tx}" y2="${TOP + rows.length * ROW}" ` +
        `stroke="#ddd"/>`,
      `<text x="${tx}" y="${TOP + rows.length * ROW + 16}" text-anchor="middle" fill="#555">` +
        `${showMs(t)}</text>`,
    );
  }
  rows.forEach(({ span, depth }, i) => {
    const y = TOP + i * ROW;
    const a = x(ms(span.startTime)), b = Math.max(x(ms(span.endTime)), a + 2);
    out.push(
      `<text x="${PAD + depth * 16}" y="${y + 16}">${escapeXml(span.name)}` +
        `<tspan fill="#777"> · ${escapeXml(where(span))}</tspan></text>`,
      `<rect x="${a.toFixed(1)}" y="${y + 5}" width="${(b - a).toFixed(1)}" height="${ROW - 10}" ` +
        `rx="2" fill="${colorOf(span)}"/>`,
      `<text x="${(b + 4).toFixed(1)}" y="${y + 16}" fill="#333">` +
        `${showMs(ms(span.endTime) - ms(span.startTime))}</text>`,
    );
  });
  // the hand-off: from the receive span's start (the socket) to the process span's start
  const receive = rows.find((r) => r.span.name.startsWith("receive"));
  const process = rows.find((r) => r.span.name === "process");
  if (receive && process) {
    // in the process row, left of its bar: that part of the row is empty
    const a = x(ms(receive.span.startTime)), b = x(ms(process.span.startTime));
    const y = TOP + rows.indexOf(process) * ROW + ROW / 2;
    const gap = ms(process.span.startTime) - ms(receive.span.startTime);
    const label = `socket → handler start ${showMs(gap)}`;
    const half = label.length * 3; // about 6 px a character at 11 px
    const mid = Math.max((a + b) / 2, LABEL + half);
    out.push(
      `<line x1="${a.toFixed(1)}" y1="${y + 5}" x2="${b.toFixed(1)}" y2="${y + 5}" stroke="#c00" ` +
        `stroke-dasharray="3 2"/>`,
      `<text x="${mid.toFixed(1)}" y="${y + 1}" text-anchor="middle" fill="#c00" ` +
        `font-size="11">${escapeXml(label)}</text>`,
    );
  }
  // legend
  const ly = TOP + rows.length * ROW + 40;
  const legend: [string, string][] = [
    [COLOR.main, "main thread (wse)"],
    [COLOR.worker, "pool worker (wse)"],
    [COLOR.app, "the app's own spans (in the worker)"],
  ];
  legend.forEach(([color, label], i) => {
    const lx = PAD + i * 240;
    out.push(
      `<rect x="${lx}" y="${ly}" width="12" height="12" fill="${color}"/>`,
      `<text x="${lx + 18}" y="${ly + 11}">${escapeXml(label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
