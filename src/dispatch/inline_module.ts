/**
 * `InlineModuleDispatcher`: a pool's worker module run on the main thread instead, for where
 * workers cannot share memory and the owner asked to fall back (e.g. a browser page that is not
 * cross-origin isolated). The module is imported in `init()`; its handlers then run as
 * {@linkcode InlineDispatcher} runs handlers: one at a time, in arrival order.
 *
 * @module
 */

import { InlineDispatcher, type InlineOptions } from "./inline.ts";
import type {
  ConnectionHost,
  DispatchConnection,
  Dispatcher,
  HandlerContext,
  Handlers,
} from "./types.ts";

/**
 * Imports a worker module (the one a pool would load in each worker) and runs its handlers on the
 * main thread. `init()` rejects, as a pool's does, when the module cannot be loaded or exports no
 * `onMessage`.
 *
 * @example
 * ```ts ignore
 * import { InlineModuleDispatcher } from "./inline_module.ts";
 * const d = new InlineModuleDispatcher(new URL("./handler.ts", import.meta.url));
 * await d.init(); // imports handler.ts
 * const c = d.open(host); // a ConnectionHost from the engine
 * c.push({ type: "text", data: "job 1" });
 * c.end();
 * await d.close(1000);
 * ```
 */
export class InlineModuleDispatcher<C = HandlerContext> implements Dispatcher {
  readonly #module: URL;
  readonly #options: InlineOptions<C>;
  #inner?: InlineDispatcher<C>;

  /** `module` exports the handlers (`onMessage` at least); `options` as for `InlineDispatcher`. */
  constructor(module: URL, options: InlineOptions<C> = {}) {
    this.#module = module;
    this.#options = options;
  }

  /** Imports the module and starts dispatch. */
  async init(): Promise<void> {
    if (this.#inner) return;
    let mod: Handlers<C>;
    try {
      mod = await import(this.#module.href);
    } catch (e) {
      throw new Error(
        `cannot load the worker module ${this.#module.href}: ${e instanceof Error ? e.message : e}`,
      );
    }
    if (typeof mod.onMessage !== "function") {
      throw new Error(
        `the worker module ${this.#module.href} does not export a function onMessage`,
      );
    }
    this.#inner = new InlineDispatcher(mod, this.#options);
    await this.#inner.init();
  }

  /** A connection opens (after `init()`); its `onConnect` runs before its messages. */
  open(host: ConnectionHost, info?: unknown): DispatchConnection {
    if (!this.#inner) throw new Error("InlineModuleDispatcher: open() before init() resolved");
    return this.#inner.open(host, info);
  }

  /** Shuts down as `InlineDispatcher.close` does. */
  close(timeoutMs: number): Promise<{ abandoned: number }> {
    return this.#inner ? this.#inner.close(timeoutMs) : Promise.resolve({ abandoned: 0 });
  }
}
