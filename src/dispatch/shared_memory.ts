/**
 * Whether this runtime lets a worker pool share memory with its workers: `SharedArrayBuffer`
 * (which a browser gives only to a cross-origin-isolated page) and `Atomics.waitAsync`.
 *
 * @module
 */

/**
 * Why the worker pool cannot run here, as a sentence to put in an error, or undefined when it
 * can. A browser page that is not cross-origin isolated has no `SharedArrayBuffer`: the answer
 * says so and names the two response headers that isolate it.
 *
 * @example
 * ```ts
 * import { sharedMemoryProblem } from "./shared_memory.ts";
 * const why = sharedMemoryProblem();
 * if (why) console.log(`no worker pool: ${why}`);
 * ```
 */
export function sharedMemoryProblem(): string | undefined {
  const g = globalThis as { crossOriginIsolated?: boolean; SharedArrayBuffer?: unknown };
  // Deno and Node leave `crossOriginIsolated` undefined; only a browser sets it to false.
  if (g.crossOriginIsolated === false) {
    return "workers need SharedArrayBuffer, and this page is not cross-origin isolated " +
      "(crossOriginIsolated is false): serve the page, and the scripts it loads, with the " +
      'headers "Cross-Origin-Opener-Policy: same-origin" and ' +
      '"Cross-Origin-Embedder-Policy: require-corp"';
  }
  if (typeof g.SharedArrayBuffer !== "function") {
    return "workers need SharedArrayBuffer, which this runtime does not have";
  }
  if (typeof (Atomics as { waitAsync?: unknown }).waitAsync !== "function") {
    return "workers need Atomics.waitAsync, which this runtime does not have";
  }
  return undefined;
}
