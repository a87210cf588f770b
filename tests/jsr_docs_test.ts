// What JSR scores and shows, checked on every entry point deno.json exports: `deno doc --lint`
// is clean, each entry point has a module doc with an example, every symbol it exports has a doc
// comment with an `@example`, and the examples of every published module type-check.
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

interface DocNode {
  module_doc?: JsDoc;
  symbols: { name: string; declarations: { kind: string; jsDoc?: JsDoc }[] }[];
}
interface JsDoc {
  doc?: string;
  tags?: { kind: string }[];
}

const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))) as {
  exports: Record<string, string>;
};
const entries = Object.values(config.exports);

async function deno(args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { ok: r.success, out: text(r.stdout), err: text(r.stderr) };
}

const hasExample = (d?: JsDoc) => d?.tags?.some((t) => t.kind === "example") ?? false;

Deno.test("JSR: deno doc --lint is clean on every entry point deno.json exports", async () => {
  const r = await deno(["doc", "--lint", ...entries]);
  assert.ok(r.ok, `deno doc --lint failed:\n${r.out}\n${r.err}`);
});

Deno.test("JSR: every example in the published code type-checks", async () => {
  // `deno check --doc` on the entry points alone skips the examples of the modules behind them
  const r = await deno(["check", "--doc", "mod.ts", "src/"]);
  assert.ok(r.ok, `deno check --doc failed:\n${r.out}\n${r.err}`);
});

Deno.test("JSR: every entry point has module docs, every export a doc with an example", async () => {
  const r = await deno(["doc", "--json", ...entries]);
  assert.ok(r.ok, r.err);
  const nodes = (JSON.parse(r.out) as { nodes: Record<string, DocNode> }).nodes;
  const missing: string[] = [];
  for (const entry of entries) {
    const url = new URL(entry, ROOT).href;
    const node = nodes[url];
    assert.ok(node, `deno doc has no node for ${entry}`);
    if (!node.module_doc?.doc) missing.push(`${entry}: no module doc`);
    else if (!hasExample(node.module_doc)) missing.push(`${entry}: module doc without an example`);
    for (const s of node.symbols) {
      for (const d of s.declarations) {
        // a symbol another entry point also exports is listed there; here it only points to it
        if (d.kind === "reference") continue;
        if (!d.jsDoc?.doc) missing.push(`${entry}: ${s.name} (${d.kind}) has no doc comment`);
        else if (!hasExample(d.jsDoc)) missing.push(`${entry}: ${s.name} (${d.kind}) no @example`);
      }
    }
  }
  assert.deepEqual(missing, []);
});
