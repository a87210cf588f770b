/**
 * `deno task bench [name] [--quick]`: runs `bench/<name>.ts` (all of them when no name is given).
 * Each benchmark writes `bench/results/<name>.json` and `<name>.svg` (`<name>-quick.*` with
 * `--quick`), and prints one JSON object of ratios as its last line.
 */
const known = ["dispatch", "protocol", "server", "broker", "cluster"];
const names = Deno.args.filter((a) => !a.startsWith("--"));
const flags = Deno.args.filter((a) => a.startsWith("--"));
for (const name of names.length ? names : known) {
  if (!known.includes(name)) {
    console.error(`unknown benchmark "${name}"; known: ${known.join(", ")}`);
    Deno.exit(2);
  }
  const mod = await import(`./${name}.ts`);
  await mod.main(flags);
}
