// The layer rule: every import under src/ points down (or sideways within its own folder).
//   protocol ← transport ← dispatch ← engine, server
//   util, platform, testing, telemetry: used by all, importing none of the layers above.
import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url);

/** What each folder may import besides itself. */
const ALLOWED: Record<string, string[]> = {
  util: [],
  platform: [],
  telemetry: ["util", "platform"],
  testing: ["util", "platform"],
  protocol: ["util", "platform", "telemetry"],
  transport: ["protocol", "util", "platform", "telemetry"],
  dispatch: ["transport", "util", "platform", "telemetry"],
  engine: ["dispatch", "transport", "protocol", "util", "platform", "telemetry"],
  server: ["dispatch", "transport", "protocol", "util", "platform", "telemetry"],
};

async function* files(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const u = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* files(u);
    else if (e.name.endsWith(".ts")) yield u;
  }
}

/** Static imports, re-exports, type imports and string `import()` / `new URL(…)` targets. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["']([^"']+)["']/g,
    /(?:^|\n)\s*import\s*["']([^"']+)["']/g,
    /import\(\s*["']([^"']+)["']\s*\)/g,
    /new URL\(\s*["'](\.[^"']+)["']\s*,\s*import\.meta\.url\s*\)/g,
  ];
  for (const p of patterns) for (const m of source.matchAll(p)) found.push(m[1]);
  return found;
}

Deno.test("layers: every import under src/ points down", async () => {
  const problems: string[] = [];
  let checked = 0;
  for await (const file of files(SRC)) {
    const rel = file.href.slice(SRC.href.length);
    const layer = rel.split("/")[0];
    const allowed = ALLOWED[layer];
    if (!allowed) {
      problems.push(`${rel}: folder "${layer}" has no place in the layer table`);
      continue;
    }
    for (const spec of specifiers(await Deno.readTextFile(file))) {
      if (!spec.startsWith(".")) continue; // npm: / node: packages
      const target = new URL(spec, file).href;
      if (!target.startsWith(SRC.href)) {
        problems.push(`${rel}: imports ${spec}, outside src/`);
        continue;
      }
      checked++;
      const to = target.slice(SRC.href.length).split("/")[0];
      if (to !== layer && !allowed.includes(to)) {
        problems.push(`${rel}: imports ${spec} (${layer} → ${to})`);
      }
    }
  }
  assert.ok(checked > 50, `only ${checked} imports seen: is the scanner broken?`);
  assert.deepEqual(problems, []);
});

Deno.test("layers: the scanner sees every kind of import it must police", () => {
  const src = `import { a } from "./a.ts";
import type { B } from "../engine/b.ts";
export { c } from "../server/c.ts";
export * from "./d.ts";
import "./side_effect.ts";
const m = await import("../engine/lazy.ts");
const w = new URL("../engine/worker.ts", import.meta.url);
import {
  x,
  y,
} from "../dispatch/multi.ts";`;
  assert.deepEqual(specifiers(src).sort(), [
    "../dispatch/multi.ts",
    "../engine/b.ts",
    "../engine/lazy.ts",
    "../engine/worker.ts",
    "../server/c.ts",
    "./a.ts",
    "./d.ts",
    "./side_effect.ts",
  ]);
});
