/**
 * Shared benchmark reporting: a results file, a console table and an SVG bar chart.
 *
 * A benchmark collects {@linkcode Row}s (one per configuration it ran, side by side in one run),
 * then calls {@linkcode writeReport}. Ratios are computed by the benchmark itself.
 */

/** One measured configuration. */
export interface Row {
  /** Group shown as one chart panel, e.g. "no-op 64 B". */
  group: string;
  /** Configuration name, e.g. "wse 2 workers". */
  name: string;
  /** Messages (or round trips) per second. */
  rate: number;
  /** Any extra numbers worth keeping (latency percentiles, bytes, counts). */
  extra?: Record<string, number>;
  /** Unit of `rate` in the chart, when it is not the chart's (e.g. "ms" for a latency row). */
  unit?: string;
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The p-th percentile (0..100) of a list of numbers, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

function escapeXml(s: string): string {
  return s.replace(
    /[<>&"]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!,
  );
}

/** A rate as shown: whole msg/s with separators, or a small value (a latency) with decimals. */
function show(r: Row): string {
  return r.unit ? String(+r.rate.toFixed(3)) : Math.round(r.rate).toLocaleString("en-US");
}

/** A horizontal bar chart, one panel per group, bars scaled to the group's fastest row. */
export function barChartSvg(title: string, rows: Row[], unit = "msg/s"): string {
  const groups = [...new Set(rows.map((r) => r.group))];
  const barH = 18, gap = 4, labelW = 230, chartW = 420, panelGap = 28, top = 40;
  let y = top;
  const parts: string[] = [];
  for (const g of groups) {
    const gr = rows.filter((r) => r.group === g);
    const max = Math.max(...gr.map((r) => r.rate), 1);
    parts.push(
      `<text x="10" y="${y + 12}" font-weight="bold" font-size="13">${escapeXml(g)}</text>`,
    );
    y += 20;
    for (const r of gr) {
      const w = Math.max(1, (r.rate / max) * chartW);
      const ours = /\bwse\b/.test(r.name);
      parts.push(
        `<text x="10" y="${y + 13}" font-size="12">${escapeXml(r.name)}</text>`,
        `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${
          ours ? "#2b6cb0" : "#a0aec0"
        }"/>`,
        `<text x="${labelW + w + 6}" y="${y + 13}" font-size="11">${show(r)} ${
          r.unit ?? unit
        }</text>`,
      );
      y += barH + gap;
    }
    y += panelGap;
  }
  const width = labelW + chartW + 150;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>
${parts.join("\n")}
</svg>
`;
}

/**
 * Writes `bench/results/<name>.json` (rows, ratios, environment) and `<name>.svg` (`<name>-quick.*`
 * when `notes.quick` is true), prints a table, and prints `ratios` as one JSON object on the last
 * line.
 */
export async function writeReport(
  name: string,
  title: string,
  rows: Row[],
  ratios: Record<string, number>,
  notes: Record<string, unknown> = {},
): Promise<void> {
  // A quick run is a smoke test: it must not overwrite the full run's results the README shows.
  if (notes.quick === true) name = `${name}-quick`;
  const dir = new URL("../results/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  const env = {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    cpus: navigator.hardwareConcurrency,
    os: Deno.build.os,
  };
  await Deno.writeTextFile(
    new URL(`${name}.json`, dir),
    JSON.stringify({ name, title, env, notes, rows, ratios }, null, 2) + "\n",
  );
  await Deno.writeTextFile(new URL(`${name}.svg`, dir), barChartSvg(title, rows));
  for (const g of new Set(rows.map((r) => r.group))) {
    console.log(`\n${g}`);
    for (const r of rows.filter((x) => x.group === g)) {
      const extra = r.extra
        ? "  " + Object.entries(r.extra).map(([k, v]) => `${k}=${+v.toFixed(3)}`).join(" ")
        : "";
      console.log(
        `  ${r.name.padEnd(34)} ${show(r).padStart(12)}${r.unit ? " " + r.unit : ""}${extra}`,
      );
    }
  }
  const rounded = Object.fromEntries(
    Object.entries(ratios).map(([k, v]) => [k, Number.isFinite(v) ? +v.toFixed(3) : v]),
  );
  console.log(JSON.stringify(rounded));
}
