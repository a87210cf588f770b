import assert from "node:assert/strict";
import { DOC_PATH, normalizeDoc, updatedDoc } from "./gen_conformance_doc.ts";

Deno.test("docs/protocol.md conformance table is in sync with the cases", async () => {
  const doc = await Deno.readTextFile(DOC_PATH);
  assert.ok(doc.includes("<!-- interop:start -->") && doc.includes("<!-- interop:end -->"));
  assert.equal(
    normalizeDoc(updatedDoc(doc)),
    normalizeDoc(doc),
    "out of date: run deno run -A tests/protocol/gen_conformance_doc.ts (then deno fmt docs/protocol.md)",
  );
});
