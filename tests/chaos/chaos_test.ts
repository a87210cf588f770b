/**
 * Runs the chaos suite (`chaos_suite.ts`) in a `deno test` process of its own, so its minute of
 * traffic and its workers share no memory with the tests that run beside it in this process
 * (some measure the process's RSS). Its output is printed; its exit status is the verdict.
 *
 * @module
 */

import assert from "node:assert/strict";

Deno.test("chaos suite (every adapter, with and without workers, in its own process)", async () => {
  const suite = new URL("./chaos_suite.ts", import.meta.url);
  const child = new Deno.Command(Deno.execPath(), {
    // Type-checked with the rest of the project by `deno check`.
    args: ["test", "-A", "--no-check", suite.pathname],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await child.output();
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  console.log(out.split("\n").filter((l) => /^\[|^chaos seed/.test(l)).join("\n"));
  assert.equal(code, 0, `the chaos suite failed:\n${out}\n${err}`);
});
