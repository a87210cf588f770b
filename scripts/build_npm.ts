/**
 * `deno task build:npm`: builds the package Node and Bun run, into `dist/npm/`: JavaScript and
 * `.d.ts` beside it for every module the entry points reach (TypeScript's compiler, from npm,
 * pinned), the pool's worker entry as `src/dispatch/worker.js`, `package.json` with one export per
 * entry point, README and LICENSE. `npm pack dist/npm` makes the tarball.
 *
 * Each file is emitted as it is (no type check: `deno check` does that), its relative `.ts` imports
 * rewritten to `.js`. `new URL("./x.ts", import.meta.url)` (the worker entry) is not an import:
 * a transformer rewrites it, and the build fails if its target was not built.
 *
 * @module
 */

import ts from "typescript";

const ROOT = new URL("../", import.meta.url);
const OUT = new URL("dist/npm/", ROOT);

/** package.json subpath → source entry point (the same as deno.json's `exports`). */
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))) as {
  name: string;
  version: string;
  description: string;
  license: string;
  exports: Record<string, string>;
  imports: Record<string, string>;
};

/** Modules loaded by URL at run time, not by an import: they must be built too. */
const LOADED_BY_URL = ["src/dispatch/worker.ts"];

function path(u: URL): string {
  return decodeURIComponent(u.pathname);
}

async function build(): Promise<void> {
  await Deno.remove(OUT, { recursive: true }).catch(() => {});
  const roots = [...Object.values(config.exports), ...LOADED_BY_URL].map((p) =>
    path(new URL(p, ROOT))
  );
  const program = ts.createProgram({
    rootNames: roots,
    options: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      allowImportingTsExtensions: true,
      rewriteRelativeImportExtensions: true,
      declaration: true,
      noCheck: true,
      skipLibCheck: true,
      types: [],
      lib: ["lib.es2024.d.ts", "lib.dom.d.ts"],
      rootDir: path(ROOT),
      outDir: path(OUT),
      newLine: ts.NewLineKind.LineFeed,
      removeComments: false,
      sourceMap: false,
    },
  });
  const loaded = new Set<string>();
  const result = program.emit(undefined, undefined, undefined, false, {
    before: [urlRewriter(loaded)],
  });
  const errors = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) {
    throw new Error(ts.formatDiagnostics(errors, {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => path(ROOT),
      getNewLine: () => "\n",
    }));
  }
  for (const js of loaded) {
    if (!(await exists(new URL(js, OUT)))) {
      throw new Error(`${js} is loaded by URL but was not built`);
    }
  }
  await Deno.writeTextFile(
    new URL("package.json", OUT),
    JSON.stringify(packageJson(npmDependencies(program)), null, 2) + "\n",
  );
  for (const f of ["README.md", "LICENSE"]) await Deno.copyFile(new URL(f, ROOT), new URL(f, OUT));
  const modules = program.getSourceFiles().filter((f) => f.fileName.startsWith(path(ROOT))).length;
  console.log(
    `build:npm: ${modules} modules (.js + .d.ts) in ${path(OUT)}; loaded by URL: ${[...loaded]}`,
  );
}

/**
 * A transformer that rewrites the string of `new URL("./x.ts", import.meta.url)` to `./x.js`,
 * recording each target (relative to the root) in `loaded`.
 */
function urlRewriter(loaded: Set<string>): ts.TransformerFactory<ts.SourceFile> {
  return (context) => (file) => {
    const visit = (node: ts.Node): ts.Node => {
      if (
        ts.isNewExpression(node) && ts.isIdentifier(node.expression) &&
        node.expression.text === "URL" && node.arguments?.length === 2 &&
        ts.isStringLiteral(node.arguments[0]) && /^\.\.?\/.*\.ts$/.test(node.arguments[0].text) &&
        ts.isPropertyAccessExpression(node.arguments[1]) &&
        ts.isMetaProperty(node.arguments[1].expression) && node.arguments[1].name.text === "url"
      ) {
        const js = node.arguments[0].text.replace(/\.ts$/, ".js");
        loaded.add(new URL(js, `file://${file.fileName}`).href.slice(ROOT.href.length));
        return context.factory.updateNewExpression(node, node.expression, node.typeArguments, [
          context.factory.createStringLiteral(js),
          node.arguments[1],
        ]);
      }
      return ts.visitEachChild(node, visit, context);
    };
    return ts.visitNode(file, visit) as ts.SourceFile;
  };
}

async function exists(u: URL): Promise<boolean> {
  try {
    await Deno.stat(u);
    return true;
  } catch {
    return false;
  }
}

/** The npm packages the built modules import, with the version ranges deno.json maps them to. */
function npmDependencies(program: ts.Program): Record<string, string> {
  const deps: Record<string, string> = {};
  for (const file of program.getSourceFiles()) {
    if (!file.fileName.startsWith(path(ROOT)) || file.fileName.includes("/node_modules/")) continue;
    for (const { fileName: spec } of ts.preProcessFile(file.text, true, true).importedFiles) {
      if (spec.startsWith(".") || spec.startsWith("node:")) continue;
      const name = spec.startsWith("@")
        ? spec.split("/").slice(0, 2).join("/")
        : spec.split("/")[0];
      const range = config.imports[name]?.match(/^npm:(?:@[^@/]+\/)?[^@]+@(.+)$/)?.[1];
      if (!range) {
        throw new Error(`${file.fileName} imports ${spec}: deno.json maps it to no npm package`);
      }
      deps[name] = range;
    }
  }
  return Object.fromEntries(Object.entries(deps).sort());
}

function packageJson(dependencies: Record<string, string>): unknown {
  const exports: Record<string, { types: string; default: string }> = {};
  for (const [subpath, source] of Object.entries(config.exports)) {
    const js = source.replace(/\.ts$/, ".js");
    exports[subpath] = { types: js.replace(/\.js$/, ".d.ts"), default: js };
  }
  return {
    name: config.name,
    version: config.version,
    description: config.description,
    license: config.license,
    type: "module",
    engines: { node: ">=20" },
    exports,
    files: ["**/*.js", "**/*.d.ts", "README.md", "LICENSE"],
    dependencies,
  };
}

await build();
