/**
 * What the rest of wse needs from the JavaScript runtime it runs on (Deno, Node, Bun, a browser):
 * TCP and TLS sockets, workers, child processes, and a few facts. `runtime.ts` picks the
 * implementation once, when it is loaded; nothing else under `src/` asks which runtime it is on.
 *
 * @module
 */

import type { Socket } from "node:net";

/**
 * An operation the adapter or the runtime cannot perform (e.g. `ping` on the WHATWG `WebSocket`,
 * raw TCP in a browser); the message says what to use instead.
 *
 * @example
 * ```ts
 * import { NotSupportedError } from "./types.ts";
 * const e = new NotSupportedError("this adapter cannot ping");
 * console.log(e instanceof NotSupportedError); // true
 * ```
 */
export class NotSupportedError extends Error {
  /** Always `"NotSupportedError"`. */
  override name = "NotSupportedError";
}

/** A network address as Deno reports it (only TCP ones have a hostname and port). */
export interface DenoAddr {
  /** `"tcp"`, `"udp"`, `"unix"`... */
  readonly transport: string;
  /** IP address, for TCP. */
  readonly hostname?: string;
  /** Port, for TCP. */
  readonly port?: number;
}

/** The part of a Deno TCP or TLS connection (`Deno.Conn`) wse uses. */
export interface DenoConn {
  /** Reads into `p`; resolves with the count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with the count written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the connection. */
  close(): void;
  /** Half-closes: sends FIN after what was written. */
  closeWrite(): Promise<void>;
  /** Local address. */
  readonly localAddr: DenoAddr;
  /** Remote address. */
  readonly remoteAddr: DenoAddr;
}

/**
 * A connected socket as the runtime hands it out: a Deno connection, or a `node:net` socket
 * (Node and Bun, and `node:http` upgrades everywhere). The transport wraps either one.
 */
export type RuntimeSocket =
  | { readonly kind: "deno"; readonly conn: DenoConn }
  | { readonly kind: "node"; readonly socket: Socket };

/** Where and how {@linkcode Runtime.dialTcp} connects. */
export interface TcpDialOptions {
  /** Host name or IP address. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** Speak TLS over the connection, checking the server's certificate for `hostname`. */
  tls?: boolean;
  /** Extra PEM CA certificates trusted besides the runtime's own (TLS only). */
  caCerts?: string[];
  /** Aborting closes a connection still being made (where the runtime allows it). */
  signal?: AbortSignal;
}

/** Where and how {@linkcode Runtime.listenTcp} listens. */
export interface TcpListenOptions {
  /** Address to bind. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate chain and key: accept TLS connections. */
  tls?: { cert: string; key: string };
}

/** A listening TCP (or TLS) socket. */
export interface TcpListener {
  /** The bound address; on Node and Bun, known once {@linkcode TcpListener.ready} resolved. */
  readonly addr: { readonly hostname: string; readonly port: number };
  /**
   * Resolves once the socket is bound (at once on Deno, whose `listen` is synchronous); rejects
   * when it could not be (e.g. the port is taken).
   */
  readonly ready: Promise<void>;
  /** The next connection; rejects once the listener is closed. */
  accept(): Promise<RuntimeSocket>;
  /** Stops listening (idempotent); a pending `accept` rejects. */
  close(): void;
}

/** What a worker's owner hears from it. */
export interface WorkerEvents {
  /** A message the worker posted. */
  message(data: unknown): void;
  /** The worker died: an uncaught error, or it ended itself (not called after `terminate()`). */
  died(reason: string, cause?: unknown): void;
}

/** A worker thread as its owner sees it. */
export interface WorkerHandle {
  /** Posts a message (structured clone; SharedArrayBuffers are shared, not copied). */
  post(message: unknown): void;
  /** Stops the worker at once. */
  terminate(): void;
}

/** The owner of the current worker, as the worker sees it. */
export interface ParentPort {
  /** Posts a message to the owner. */
  post(message: unknown): void;
  /** Sets the one listener of the owner's messages (call it before the first `await`). */
  listen(listener: (data: unknown) => void): void;
  /** Runs `before` when code in the worker asks it to end itself (`self.close()`). */
  onSelfClose(before: () => void): void;
}

/** A child process started by {@linkcode Runtime.spawnProcess}. */
export interface ChildProcessHandle {
  /** Its process id. */
  readonly pid: number;
  /** Settles when it exited: its exit code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Sends a signal (ignored once it exited). */
  kill(signal: "SIGTERM" | "SIGKILL" | "SIGSTOP" | "SIGCONT"): void;
}

/** The runtime differences, one implementation per runtime (see `runtime.ts`). */
export interface Runtime {
  /** Its name and version, for messages: `"Deno 2.9.6"`, `"Node 22.12.0"`, `"Bun 1.2.0"`. */
  readonly name: string;
  /** Raw TCP sockets exist (our own RFC 6455 client and server can run). */
  readonly tcp: boolean;
  /** The global `WebSocket` takes request headers (`new WebSocket(url, { headers })`). */
  readonly webSocketHeaders: boolean;
  /** Logical CPUs this process may use. */
  readonly cpuCount: number;
  /** A path relative to the current working directory (the page, in a browser) as a URL. */
  pathUrl(path: string): URL;
  /** Opens a TCP connection (TLS when `tls`), with Nagle's algorithm off. */
  dialTcp(options: TcpDialOptions): Promise<RuntimeSocket>;
  /** Listens on TCP (TLS with `tls`); throws or rejects `ready` when it cannot bind. */
  listenTcp(options: TcpListenOptions): TcpListener;
  /** Starts a module worker running `url` (a JavaScript module the runtime can load). */
  spawnWorker(url: URL, events: WorkerEvents): WorkerHandle;
  /** In a worker: the port to its owner. */
  parentPort(): ParentPort;
  /** Upgrades a `Request` with the runtime's own WebSocket server (`Deno.upgradeWebSocket`). */
  upgradeWebSocket(
    request: Request,
    options: { protocol?: string; idleTimeout?: number },
  ): { socket: WebSocket; response: Response };
  /** Starts `program` with `args`, no stdio; resolves with null when it is not found. */
  spawnProcess(program: string, args: string[]): Promise<ChildProcessHandle | null>;
  /** Runs `fn` synchronously when the process exits; returns what removes it. */
  onExit(fn: () => void): () => void;
  /** Throws a {@linkcode NotSupportedError} unless this is Deno: `what` needs Deno's own API. */
  requireDeno(what: string, instead: string): void;
}
