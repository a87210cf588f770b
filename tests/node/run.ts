/**
 * `deno task test:node [runtime...]`: runs the Node-side suite (`tests/node/*.test.mjs`) on each
 * runtime given — `node` or a path to a Node binary (`node --test`), `bun` or a path to a Bun
 * binary (`bun test`) — against the package as `deno task build:npm` builds it. Default: `node`.
 *
 * It builds `dist/npm`, installs its dependencies there at the versions `deno.lock` pins (the
 * ones the Deno suite runs with), and links `tests/node/node_modules/@wse/engine` to it, so the
 * tests import wse by its package name. Each runtime's pass/fail counts are printed; the exit code
 * is 1 when a test failed or a runtime ran none.
 *
 * @module
 */

import { basename, resolve } from "node:path";

const ROOT = new URL("../../", import.meta.url);
const DIST = new URL("dist/npm/", ROOT);
const HERE = new URL("./", import.meta.url);
/** A runtime's whole run may take this long before it is killed and counted as failed. */
const RUN_TIMEOUT_MS = 5 * 60_000;

function path(u: URL): string {
  return decodeURIComponent(u.pathname);
}

/** Runs a command with inherited stdio; throws when it fails. */
async function run(cmd: string, args: string[], cwd: URL): Promise<void> {
  const { code } = await new Deno.Command(cmd, { args, cwd: path(cwd) }).spawn().status;
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${code}`);
}

/** `name@version` for each npm package, the version deno.lock resolved for deno.json's import. */
async function lockedVersions(names: string[]): Promise<string[]> {
  const read = async (f: string) => JSON.parse(await Deno.readTextFile(new URL(f, ROOT)));
  const imports = (await read("deno.json")).imports as Record<string, string>;
  const specifiers = (await read("deno.lock")).specifiers as Record<string, string>;
  return names.map((name) => {
    const version = specifiers[imports[name]]?.split("_")[0];
    if (!version) throw new Error(`deno.lock pins no version of ${imports[name]}`);
    return `${name}@${version}`;
  });
}

/** Builds dist/npm, installs its dependencies, links it where the tests import it from. */
async function prepare(): Promise<void> {
  await run(Deno.execPath(), ["run", "-A", "scripts/build_npm.ts"], ROOT);
  const pkg = JSON.parse(await Deno.readTextFile(new URL("package.json", DIST)));
  const deps = await lockedVersions(Object.keys(pkg.dependencies ?? {}));
  await run(
    "npm",
    ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", ...deps],
    DIST,
  );
  const link = new URL("node_modules/@wse/engine", HERE);
  await Deno.mkdir(new URL(".", link), { recursive: true });
  await Deno.remove(link).catch(() => {});
  await Deno.symlink("../../../../dist/npm", path(link));
}

/** Runs the suite on one runtime; resolves with its counts. */
async function suite(runtime: string): Promise<{ name: string; pass: number; fail: number }> {
  const bun = basename(runtime).startsWith("bun");
  const files = [];
  for await (const e of Deno.readDir(HERE)) if (e.name.endsWith(".test.mjs")) files.push(e.name);
  files.sort();
  const version = new TextDecoder().decode(
    (await new Deno.Command(runtime, { args: ["--version"] }).output()).stdout,
  ).trim().replace(/^v/, "");
  const name = `${bun ? "Bun" : "Node"} ${version}`;
  console.log(`\n=== Node-side suite on ${name} (${runtime}) ===`);
  const args = bun
    ? ["test", "--timeout", "60000", ...files.map((f) => `./${f}`)]
    : ["--test", "--test-reporter=spec", ...files];
  const child = new Deno.Command(runtime, {
    args,
    cwd: path(HERE),
    env: { NO_COLOR: "1", FORCE_COLOR: "0" }, // the counts are read from plain text
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  let out = "";
  const decoder = new TextDecoder();
  const copy = async (s: ReadableStream<Uint8Array>, to: { write(b: Uint8Array): unknown }) => {
    for await (const chunk of s) {
      out += decoder.decode(chunk, { stream: true });
      to.write(chunk);
    }
  };
  await Promise.all([
    copy(child.stdout, { write: (b) => Deno.stdout.writeSync(b) }),
    copy(child.stderr, { write: (b) => Deno.stderr.writeSync(b) }),
  ]);
  const { code } = await child.status;
  clearTimeout(timer);
  const count = (re: RegExp) => Number(out.match(re)?.[1] ?? 0);
  const pass = bun ? count(/^\s*(\d+) pass$/m) : count(/^\S+ pass (\d+)$/m);
  let fail = bun ? count(/^\s*(\d+) fail$/m) : count(/^\S+ fail (\d+)$/m);
  if (code !== 0 && fail === 0) fail = 1; // it crashed or was killed: not a pass
  return { name, pass, fail };
}

if (import.meta.main) {
  // A path is taken from where this was started (`deno task` runs in the root, and says where it
  // was started in INIT_CWD); a bare name is looked up on PATH.
  const started = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const runtimes = (Deno.args.length ? Deno.args : ["node"]).map((r) =>
    r.includes("/") ? resolve(started, r) : r
  );
  await prepare();
  const results = [];
  for (const r of runtimes) results.push(await suite(r));
  console.log("");
  for (const r of results) {
    console.log(`Node-side suite on ${r.name}: ${r.pass} passed, ${r.fail} failed`);
  }
  if (results.some((r) => r.fail > 0 || r.pass === 0)) Deno.exit(1);
}
