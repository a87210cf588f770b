// The tracing example end to end: the printed trees have the right shape (the server's trace:
// receive → process → a send per job; each job's trace: receive on the main thread → process
// in a worker → the app's spans), the waterfall is written, and with an OTLP endpoint every
// span is exported there, workers' included, with their parents.
import assert from "node:assert/strict";
import { main } from "../../examples/tracing/main.ts";
import { startOtlpReceiver } from "../telemetry/otlp_receiver.ts";

const JOBS = 3;

/** The printed trees: each "trace" header and the lines under it, as [depth, name, where]. */
function trees(lines: string[]): { side: string; rows: [number, string, string][] }[] {
  const out: { side: string; rows: [number, string, string][] }[] = [];
  for (const line of lines) {
    const head = /^(server|client): trace [0-9a-f]{32}$/.exec(line);
    if (head) {
      out.push({ side: head[1], rows: [] });
      continue;
    }
    const row = /^ {2}( *)(\S+(?: \S+)?)\s{2,}[A-Z]+\s{2,}(\S+ \([^)]+\))/.exec(line);
    if (row && out.length) out.at(-1)!.rows.push([row[1].length / 2, row[2], row[3]]);
  }
  return out;
}

Deno.test({
  name: "example tracing: the trees' shape (socket → worker → app), the SVG, the OTLP export",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const lines: string[] = [];
    const svgPath = await Deno.makeTempFile({ suffix: ".svg" });
    const receiver = startOtlpReceiver();
    try {
      // every wait inside main is bounded (15 s), and it stops what it started either way
      const result = await main({
        print: (l) => lines.push(l),
        jobs: JOBS,
        svgPath,
        otlpEndpoint: receiver.url,
      });
      const story = lines.join("\n");
      const t = trees(lines);
      const server = t.filter((x) => x.side === "server");
      const clients = t.filter((x) => x.side === "client");
      assert.equal(server.length, 1, story);
      assert.equal(clients.length, JOBS, story);

      const s = server[0].rows;
      assert.deepEqual(s.slice(0, 2).map(([d, n]) => [d, n]), [[0, "receive /jobs"], [
        1,
        "process",
      ]]);
      assert.equal(s.filter(([d, n]) => d === 2 && n.startsWith("send ")).length, JOBS, story);

      for (const c of clients) {
        const shape = c.rows.map(([d, n]) => [d, n.replace(/ 127\.0\.0\.1:\d+\/jobs$/, " …")]);
        assert.deepEqual(
          shape,
          [[0, "receive …"], [1, "process"], [2, "score job"], [3, "digest"]],
          story,
        );
        assert.match(c.rows[0][2], /^main \(wse\.engine\)$/);
        assert.match(c.rows[1][2], /^w\d+ \(wse\.worker\)$/);
        assert.match(c.rows[2][2], /^w\d+ \(app\)$/);
      }

      const svg = await Deno.readTextFile(svgPath);
      assert.match(svg, /^<svg /);
      assert.match(svg, />process</);
      assert.match(svg, /socket → handler start/);

      // the export: every span, the workers' process spans with their receive parents
      assert.equal(result.exported, result.spans.length);
      assert.equal(receiver.spans.length, result.spans.length);
      const exported = receiver.spans.map((r) => r.span);
      const processes = receiver.spans.filter((r) => r.scope === "wse.worker");
      assert.equal(processes.length, JOBS);
      for (const p of processes) {
        const parent = exported.find((x) => x.spanId === p.span.parentSpanId)!;
        assert.ok(parent?.name.startsWith("receive "), "a process span's parent is exported");
        assert.equal(parent.traceId, p.span.traceId);
      }
    } finally {
      await receiver.close();
      await Deno.remove(svgPath);
    }
  },
});
