import assert from "node:assert/strict";
import { CONFORMANCE_CASES } from "./conformance_cases.ts";
import { describeExpect, runCase } from "./conformance_runner.ts";

Deno.test("conformance table: at least 60 hostile inputs, unique ids, every category", () => {
  const hostile = CONFORMANCE_CASES.filter((c) =>
    "close" in c.expect || "handshakeError" in c.expect ||
    ("status" in c.expect && c.expect.status !== 101)
  );
  assert.ok(hostile.length >= 60, `only ${hostile.length} hostile cases`);
  assert.equal(new Set(CONFORMANCE_CASES.map((c) => c.id)).size, CONFORMANCE_CASES.length);
  const cats = new Set(CONFORMANCE_CASES.map((c) => c.category));
  for (
    const c of [
      "framing",
      "pings",
      "reserved-bits",
      "opcodes",
      "fragmentation",
      "utf8",
      "close",
      "limits",
      "compression",
      "handshake",
    ]
  ) assert.ok(cats.has(c as never), c);
});

for (const c of CONFORMANCE_CASES) {
  Deno.test(`conformance ${c.id} [${c.category}] ${c.description}`, () => {
    const r = runCase(c);
    assert.ok(r.pass, `expected ${describeExpect(c.expect)}, got ${r.actual}: ${r.failure}`);
  });
}
