/**
 * Bundles wse for a browser page with esbuild (npm, pinned in deno.json): each entry point into
 * one ES module in `outdir`. Two things a page cannot resolve by itself are settled here:
 * - bare specifiers of deno.json's import map (`ws`, `@opentelemetry/api`): esbuild finds each
 *   package where Deno's own resolution put it, and picks its browser entry;
 * - `node:` built-ins: only our TCP transport and the `npm:ws` adapter use them, and a page runs
 *   neither (the engine takes the runtime's `WebSocket` there), so they become an empty module.
 */
import * as esbuild from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** The package a bare specifier names: `ws`, `@opentelemetry/api` (a subpath dropped). */
function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

/** The folder holding `name`'s package.json, found from a file Deno resolved inside it. */
async function packageRoot(name: string, file: string): Promise<string> {
  let dir = dirname(file);
  for (let i = 0; i < 16; i++) { // bounded: a package's files are never nested deeper
    try {
      const manifest = JSON.parse(await Deno.readTextFile(join(dir, "package.json")));
      if (manifest.name === name) return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`no package.json naming ${name} above ${file}`);
}

/**
 * Import-map packages, linked into a `node_modules` folder of the build's own (given to esbuild
 * as `nodePaths`) the first time a module imports them.
 */
function importMapPackages(imports: Record<string, string>, nodeModules: string): esbuild.Plugin {
  const linked = new Map<string, Promise<void>>();
  const link = async (name: string) => {
    const file = fromFileUrl(import.meta.resolve(name));
    const root = await packageRoot(name, file);
    await Deno.mkdir(dirname(join(nodeModules, name)), { recursive: true });
    await Deno.symlink(root, join(nodeModules, name));
  };
  return {
    name: "import-map-packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        const name = packageName(args.path);
        if (!imports[name]?.startsWith("npm:")) return undefined;
        if (!linked.has(name)) linked.set(name, link(name));
        await linked.get(name);
        return undefined; // esbuild resolves it in `nodePaths`, with the browser conditions
      });
    },
  };
}

/** `node:` built-ins as an empty CommonJS module: named imports of it read `undefined`. */
const nodeBuiltinsEmpty: esbuild.Plugin = {
  name: "node-builtins-empty",
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: "node-empty" }));
    build.onLoad(
      { filter: /.*/, namespace: "node-empty" },
      () => ({ contents: "module.exports = {};", loader: "js" }),
    );
  },
};

/**
 * Bundles each of `entries` (output name → source file URL) into `outdir/<name>.js`, for
 * browsers, as ES modules. Stops esbuild's service afterwards (no process is left).
 */
export async function bundleForBrowser(
  entries: Record<string, URL>,
  outdir: string,
): Promise<void> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ) as { imports: Record<string, string> };
  const nodeModules = join(outdir, ".node_modules");
  try {
    await esbuild.build({
      entryPoints: Object.fromEntries(
        Object.entries(entries).map(([name, url]) => [name, fromFileUrl(url)]),
      ),
      outdir,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      nodePaths: [nodeModules],
      plugins: [nodeBuiltinsEmpty, importMapPackages(config.imports, nodeModules)],
      logLevel: "silent",
    });
  } finally {
    await esbuild.stop();
  }
}
