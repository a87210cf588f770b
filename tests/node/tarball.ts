/**
 * `deno task test:tarball [runtime...]`: what a Node user gets. Builds the package, packs it
 * (`npm pack`), installs the tarball into a fresh project in a temporary directory (with its
 * dependencies from the registry, as `npm install` resolves them for a user), then:
 * - type-checks `tarball_app/types.ts` against the tarball's `.d.ts` (tsc --strict, no
 *   skipLibCheck, with @types/node of the oldest Node supported);
 * - runs `tarball_app/app.mjs` (a server, a client, a pool of two workers) on each runtime given
 *   (`node`, a path to a Node or Bun binary; default `node`).
 *
 * Prints the counts per runtime; exits with 1 when a check failed.
 *
 * @module
 */

import { basename, resolve } from "node:path";

const ROOT = new URL("../../", import.meta.url);
const DIST = new URL("dist/npm/", ROOT);
const APP = new URL("tarball_app/", import.meta.url);
/** What the type check installs beside the tarball (pinned). */
const TYPESCRIPT = "typescript@5.9.3";
const NODE_TYPES = "@types/node@20";

function path(u: URL): string {
  return decodeURIComponent(u.pathname);
}

/** Runs a command; resolves with its exit code and output (printed too, unless `quiet`). */
async function run(
  cmd: string,
  args: string[],
  cwd: string,
  quiet = false,
): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (text.trim() && !quiet) console.log(text.trimEnd());
  return { code: out.code, out: text };
}

async function must(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.code}`);
  return r.out;
}

const started = Deno.env.get("INIT_CWD") ?? Deno.cwd();
const runtimes = (Deno.args.length ? Deno.args : ["node"]).map((r) =>
  r.includes("/") ? resolve(started, r) : r
);
const dir = await Deno.makeTempDir({ prefix: "wse-tarball-" });
const results: { name: string; pass: number; fail: number }[] = [];
try {
  await must(Deno.execPath(), ["run", "-A", "scripts/build_npm.ts"], path(ROOT));
  const packed = JSON.parse(
    await must("npm", ["pack", "--json", "--pack-destination", dir], path(DIST)),
  ) as { filename: string; files: { path: string }[] }[];
  const files = packed[0].files.map((f) => f.path);
  for (const needed of ["package.json", "mod.js", "mod.d.ts", "src/dispatch/worker.js"]) {
    if (!files.includes(needed)) throw new Error(`the tarball lacks ${needed}`);
  }
  const stray = files.filter((f) => !/\.(js|d\.ts)$|^(package\.json|README\.md|LICENSE)$/.test(f));
  if (stray.length) throw new Error(`the tarball holds files it should not: ${stray.join(", ")}`);
  console.log(`packed ${packed[0].filename}: ${files.length} files`);

  const app = `${dir}/app`;
  await Deno.mkdir(app);
  for await (const e of Deno.readDir(APP)) {
    await Deno.copyFile(new URL(e.name, APP), `${app}/${e.name}`);
  }
  await Deno.writeTextFile(
    `${app}/package.json`,
    JSON.stringify({ name: "wse-tarball-app", private: true, type: "module" }),
  );
  await must("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    `${dir}/${packed[0].filename}`,
    TYPESCRIPT,
    NODE_TYPES,
  ], app);

  const tsc = await run("node", ["node_modules/typescript/bin/tsc", "-p", "."], app);
  results.push({ name: "tsc on the .d.ts", pass: tsc.code === 0 ? 1 : 0, fail: tsc.code ? 1 : 0 });
  for (const runtime of runtimes) {
    const version = (await run(runtime, ["--version"], app, true)).out.trim().replace(/^v/, "");
    const name = `${basename(runtime).startsWith("bun") ? "Bun" : "Node"} ${version}`;
    console.log(`\n=== the app on ${name} ===`);
    const r = await run(runtime, ["app.mjs"], app);
    const pass = r.out.match(/^pass /gm)?.length ?? 0;
    let fail = r.out.match(/^fail /gm)?.length ?? 0;
    if (r.code !== 0 && fail === 0) fail = 1;
    results.push({ name: `the app on ${name}`, pass, fail });
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
console.log("");
for (const r of results) console.log(`tarball test, ${r.name}: ${r.pass} passed, ${r.fail} failed`);
if (results.some((r) => r.fail > 0 || r.pass === 0)) Deno.exit(1);
