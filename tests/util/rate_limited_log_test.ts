import assert from "node:assert/strict";
import { RateLimitedLog } from "../../src/util/rate_limited_log.ts";

function clocked() {
  let t = 0;
  const lines: [string, unknown][] = [];
  const log = new RateLimitedLog((m, e) => void lines.push([m, e]), {
    windowMs: 1000,
    maxKeys: 2,
    now: () => t,
  });
  return { log, lines, advance: (ms: number) => void (t += ms) };
}

Deno.test("a storm of identical lines prints the first, then a count", () => {
  const { log, lines, advance } = clocked();
  for (let i = 0; i < 1000; i++) log.log("wse: attempt failed", new Error("refused"));
  assert.equal(lines.length, 1);
  advance(1500);
  log.log("wse: attempt failed", new Error("refused"));
  assert.equal(lines.length, 3);
  assert.equal(lines[1][0], "wse: attempt failed (999 more in the last 2 s)");
  assert.equal((lines[1][1] as Error).message, "refused");
  assert.equal(lines[2][0], "wse: attempt failed");
  log.flush();
  assert.equal(lines.length, 3, "nothing counted since the last print");
});

Deno.test("different errors under one message are different lines; flush prints pending counts", () => {
  const { log, lines } = clocked();
  log.log("wse: read error", new Error("a"));
  log.log("wse: read error", new Error("b"));
  log.log("wse: read error", new Error("a"));
  log.log("wse: read error", new Error("a"));
  log.log("wse: stopped");
  assert.deepEqual(lines.map(([m]) => m), [
    "wse: read error",
    "wse: read error",
    // a third distinct line with maxKeys 2 evicts the oldest, printing its count first
    "wse: read error (2 more in the last 0 s)",
    "wse: stopped",
  ]);
  log.flush();
  assert.equal(lines.length, 4);
});

Deno.test("a logger that throws does not break its caller", () => {
  const log = new RateLimitedLog(() => {
    throw new Error("broken sink");
  });
  log.log("x");
  log.flush();
});
