/**
 * The runtime wse runs on, resolved once when this module loads: Deno, Node or Bun (through the
 * `node:` modules), or a browser. Code elsewhere uses `runtime` and never checks which it is.
 *
 * @module
 */

import { denoRuntime } from "./deno.ts";
import type { Runtime } from "./types.ts";
import { webRuntime } from "./web.ts";

const g = globalThis as {
  Deno?: { version?: unknown };
  process?: { versions?: { node?: string } };
};

/**
 * The current runtime's implementation of {@linkcode Runtime}.
 *
 * @example
 * ```ts
 * import { runtime } from "./runtime.ts";
 * console.log(runtime.name, runtime.tcp);
 * ```
 */
export const runtime: Runtime = g.Deno?.version !== undefined
  ? denoRuntime()
  : g.process?.versions?.node !== undefined
  ? (await import("./node.ts")).nodeRuntime()
  : webRuntime();
