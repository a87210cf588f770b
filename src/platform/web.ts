/**
 * Web Workers (Deno and browsers share them), and the runtime of a browser page: workers, no raw
 * sockets, no processes.
 *
 * @module
 */

import {
  type ChildProcessHandle,
  NotSupportedError,
  type ParentPort,
  type Runtime,
  type RuntimeSocket,
  type TcpListener,
  type WorkerEvents,
  type WorkerHandle,
} from "./types.ts";

/** Starts a module Web Worker on `url`. */
export function spawnWebWorker(url: URL, events: WorkerEvents): WorkerHandle {
  const worker = new Worker(url, { type: "module" });
  worker.onmessage = (e: MessageEvent) => events.message(e.data);
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault(); // handled: the owner replaces the worker
    events.died(`uncaught ${e.message}`, e.error);
  };
  worker.onmessageerror = () => {};
  return {
    post: (message) => worker.postMessage(message),
    terminate: () => worker.terminate(),
  };
}

/** The global scope of a Web Worker, as far as {@linkcode webParentPort} uses it. */
interface WorkerScope {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent) => void) | null;
  close(): void;
}

/** The owner of the current Web Worker. */
export function webParentPort(): ParentPort {
  const scope = globalThis as unknown as WorkerScope;
  return {
    post: (message) => scope.postMessage(message),
    listen(listener) {
      scope.onmessage = (e: MessageEvent) => listener(e.data);
    },
    onSelfClose(before) {
      const close = scope.close.bind(scope);
      scope.close = () => {
        before();
        close();
      };
    },
  };
}

/** The runtime of a browser page (or any runtime without `Deno` or `process`). */
export function webRuntime(): Runtime {
  const name = "this browser";
  const unsupported = (what: string, instead: string) =>
    new NotSupportedError(`${what} is not available in ${name}: ${instead}`);
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return {
    name,
    tcp: false,
    webSocketHeaders: false,
    cpuCount: nav?.hardwareConcurrency ?? 1,
    pathUrl: (path) =>
      new URL(path, (globalThis as { location?: { href: string } }).location?.href),
    dialTcp: (): Promise<RuntimeSocket> =>
      Promise.reject(unsupported("raw TCP", "use whatwgAdapter() (the default there)")),
    listenTcp(): TcpListener {
      throw unsupported("listening on TCP", "run the server on Deno, Node or Bun");
    },
    spawnWorker: spawnWebWorker,
    parentPort: webParentPort,
    upgradeWebSocket(): never {
      throw unsupported("a WebSocket server", "run the server on Deno, Node or Bun");
    },
    spawnProcess: (): Promise<ChildProcessHandle | null> =>
      Promise.reject(unsupported("starting a process", "run it on Deno, Node or Bun")),
    onExit(fn) {
      globalThis.addEventListener("pagehide", fn);
      return () => globalThis.removeEventListener("pagehide", fn);
    },
    requireDeno(what, instead) {
      throw new NotSupportedError(`${what} is Deno-only: in ${name} ${instead}`);
    },
  };
}
