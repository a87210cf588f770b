// A context manager on AsyncLocalStorage, as an app registers one (e.g. npm's
// @opentelemetry/context-async-hooks) so that the active context follows awaits. Deno's built-in
// OpenTelemetry (OTEL_DENO=true) registers its own.
import { AsyncLocalStorage } from "node:async_hooks";
import { type Context, context, type ContextManager, ROOT_CONTEXT } from "@opentelemetry/api";

class StorageContextManager implements ContextManager {
  #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

/** Registers the context manager globally (once). */
export function useContextManager(): void {
  context.setGlobalContextManager(new StorageContextManager());
}
