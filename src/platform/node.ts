/**
 * Node and Bun: `node:net`/`node:tls` sockets, `node:worker_threads` workers (the same
 * SharedArrayBuffer ring and Atomics lock as Web Workers), `node:child_process`.
 *
 * Loaded only there (`runtime.ts` imports it dynamically), so browsers never see `node:` imports.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { type AddressInfo, connect as netConnect, createServer, isIP, type Socket } from "node:net";
import { availableParallelism, cpus } from "node:os";
import { resolve } from "node:path";
import process from "node:process";
import { connect as tlsConnect, createServer as createTlsServer, rootCertificates } from "node:tls";
import { pathToFileURL } from "node:url";
import { parentPort as nodeParentPort, Worker } from "node:worker_threads";
import {
  type ChildProcessHandle,
  NotSupportedError,
  type ParentPort,
  type Runtime,
  type RuntimeSocket,
  type TcpDialOptions,
  type TcpListener,
  type TcpListenOptions,
  type WorkerEvents,
  type WorkerHandle,
} from "./types.ts";

function dialTcp(options: TcpDialOptions): Promise<RuntimeSocket> {
  const { hostname, port, signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const socket: Socket = options.tls
      ? tlsConnect({
        host: hostname,
        port,
        servername: isIP(hostname) ? undefined : hostname,
        // Node's `ca` replaces the default roots; Deno's `caCerts` adds to them.
        ca: options.caCerts ? [...rootCertificates, ...options.caCerts] : undefined,
      })
      : netConnect({ host: hostname, port });
    const connected = options.tls ? "secureConnect" : "connect";
    const settle = (error?: unknown) => {
      socket.off(connected, onConnect);
      socket.off("error", settle);
      signal?.removeEventListener("abort", onAbort);
      if (error === undefined) return resolve({ kind: "node", socket });
      socket.destroy();
      reject(error);
    };
    const onConnect = () => {
      socket.setNoDelay(true);
      settle();
    };
    const onAbort = () => settle(signal!.reason);
    socket.once(connected, onConnect);
    socket.once("error", settle);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function listenTcp(options: TcpListenOptions): TcpListener {
  const { hostname, port, tls } = options;
  const server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }) : createServer();
  const queue: Socket[] = [];
  let waiting: { resolve(s: RuntimeSocket): void; reject(e: Error): void } | undefined;
  let failure: Error | undefined;
  let addr = { hostname, port };
  const stop = (error: Error) => {
    failure ??= error;
    for (const s of queue.splice(0)) s.destroy();
    waiting?.reject(failure);
    waiting = undefined;
  };
  server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
    if (failure) return void socket.destroy();
    if (!waiting) return void queue.push(socket);
    const w = waiting;
    waiting = undefined;
    w.resolve({ kind: "node", socket });
  });
  const ready = new Promise<void>((resolve, reject) => {
    server.once("listening", () => {
      const a = server.address() as AddressInfo;
      addr = { hostname: a.address, port: a.port };
      resolve();
    });
    server.once("error", (e) => {
      stop(e);
      reject(e);
    });
  });
  ready.catch(() => {}); // also reported by accept()
  server.on("error", () => {}); // after listening (e.g. EMFILE on accept): keep listening
  server.listen(port, hostname);
  return {
    get addr() {
      return addr;
    },
    ready,
    accept() {
      const next = queue.shift();
      if (next) return Promise.resolve({ kind: "node", socket: next });
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => (waiting = { resolve, reject }));
    },
    close() {
      if (failure) return;
      stop(new Error("the listener is closed"));
      server.close();
    },
  };
}

function spawnWorker(url: URL, events: WorkerEvents): WorkerHandle {
  const worker = new Worker(url);
  let terminated = false;
  worker.on("message", (data) => events.message(data));
  worker.on("messageerror", () => {});
  worker.on("error", (e) => events.died(`uncaught ${e}`, e));
  worker.on("exit", (code) => {
    if (!terminated) events.died(`exited with code ${code}`);
  });
  return {
    post: (message) => worker.postMessage(message),
    terminate() {
      terminated = true;
      void worker.terminate();
    },
  };
}

function parentPort(): ParentPort {
  const port = nodeParentPort;
  if (!port) throw new Error("not running in a worker thread");
  return {
    post: (message) => port.postMessage(message),
    listen(listener) {
      port.on("message", listener);
    },
    // A handler ends a worker thread with process.exit(): its owner sees the exit at once.
    onSelfClose() {},
  };
}

function spawnProcess(program: string, args: string[]): Promise<ChildProcessHandle | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: "ignore" });
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
      child.once("exit", (code, signal) => r({ code, signal }))
    );
    const failed = (
      e: Error & { code?: string },
    ) => (e.code === "ENOENT" ? resolve(null) : reject(e));
    child.once("error", failed);
    child.once("spawn", () => {
      child.off("error", failed);
      child.on("error", () => {}); // a failed kill: the process is gone already
      resolve({
        pid: child.pid!,
        exited,
        kill: (signal) => void child.kill(signal),
      });
    });
  });
}

/** The runtime of Node, or of Bun (which implements the same `node:` modules). */
export function nodeRuntime(): Runtime {
  const bun = process.versions.bun;
  const name = bun ? `Bun ${bun}` : `Node ${process.versions.node}`;
  return {
    name,
    tcp: true,
    // Where there is a global WebSocket (Bun; Node from 22, undici's), it takes `{ headers }`.
    webSocketHeaders: true,
    cpuCount: typeof availableParallelism === "function" ? availableParallelism() : cpus().length,
    pathUrl: (path) => pathToFileURL(resolve(path)),
    dialTcp,
    listenTcp,
    spawnWorker,
    parentPort,
    upgradeWebSocket(): never {
      throw new NotSupportedError(
        `Deno.upgradeWebSocket (a Deno.serve handler) is Deno-only: on ${name} upgrade with ` +
          `handleNodeUpgrade() from a node:http server's "upgrade" event, or listen on our own ` +
          `transport (server.listen(), serve())`,
      );
    },
    spawnProcess,
    onExit(fn) {
      process.on("exit", fn);
      return () => void process.off("exit", fn);
    },
    requireDeno(what, instead) {
      throw new NotSupportedError(`${what} is Deno-only: on ${name} ${instead}`);
    },
  };
}
