/**
 * A throwaway `redis-server` for tests and examples (Deno, Node, Bun): it listens on a free
 * 127.0.0.1 port with its own temporary directory, keeps nothing on disk unless asked, can crash
 * and come back on the same port (a Redis restart as clients see it), and is stopped for sure.
 *
 * It runs the `redis-server` binary of the Debian package of that name; when the binary is not
 * on `PATH`, {@linkcode startRedisServer} rejects with {@linkcode RedisServerNotInstalledError}.
 *
 * @example
 * ```ts
 * import { startRedisServer } from "./redis_server.ts";
 * const redis = await startRedisServer();
 * console.log(redis.url); // redis://127.0.0.1:<port>
 * await redis.stop();
 * ```
 *
 * @module
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtime } from "../platform/runtime.ts";
import type { ChildProcessHandle } from "../platform/types.ts";

/** How long a start may take before it is reported as failed. */
const READY_TIMEOUT_MS = 10_000;
/** How long a SIGTERM may take before the process is killed. */
const TERM_TIMEOUT_MS = 5_000;

/**
 * Thrown when the `redis-server` binary cannot be found.
 *
 * @example
 * ```ts
 * import { RedisServerNotInstalledError, startRedisServer } from "./redis_server.ts";
 * try {
 *   await (await startRedisServer()).stop();
 * } catch (e) {
 *   if (e instanceof RedisServerNotInstalledError) console.warn(e.message);
 *   else throw e;
 * }
 * ```
 */
export class RedisServerNotInstalledError extends Error {
  /** Always `"RedisServerNotInstalledError"`. */
  override name = "RedisServerNotInstalledError";
  /** Names the missing `binary` and the package that provides it. */
  constructor(binary: string) {
    super(
      `"${binary}" was not found on PATH: install the Debian package redis-server ` +
        `(apt-get install redis-server)`,
    );
  }
}

/**
 * Options of {@linkcode startRedisServer}.
 *
 * @example
 * ```ts
 * import { type RedisServerOptions, startRedisServer } from "./redis_server.ts";
 * const options: RedisServerOptions = { persistence: true };
 * await (await startRedisServer(options)).stop();
 * ```
 */
export interface RedisServerOptions {
  /**
   * Keep the data across {@linkcode RedisServer.restart} and {@linkcode RedisServer.crash}: an
   * append-only file fsynced on every write. Default false: every start is an empty Redis.
   */
  persistence?: boolean;
  /** The binary to run; default `"redis-server"`. */
  binary?: string;
  /** Extra configuration, as `redis-server` command-line arguments (e.g. `["--maxclients", "64"]`). */
  args?: string[];
}

/**
 * A running `redis-server` (see {@linkcode startRedisServer}).
 *
 * @example
 * ```ts
 * import { startRedisServer } from "./redis_server.ts";
 * const redis = await startRedisServer();
 * await redis.crash(); // clients see their connections drop; connecting is refused
 * await redis.restart(); // same port, empty data (no persistence asked)
 * await redis.stop();
 * ```
 */
export interface RedisServer {
  /** The loopback port; it stays the same across restarts. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** The working directory (the append-only file lives here with `persistence`). */
  readonly dir: string;
  /** True while the process runs. */
  readonly running: boolean;
  /** Kills the process with SIGKILL (no shutdown, no save); the port and directory are kept. */
  crash(): Promise<void>;
  /**
   * Stops the process with SIGSTOP: connections stay open and nothing answers, as with a hung
   * server or a silent network. {@linkcode RedisServer.resume} undoes it.
   */
  pause(): void;
  /** Continues a paused process (SIGCONT). */
  resume(): void;
  /** Stops the process if it runs (SIGTERM), then starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops the process and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * True when `binary` (default `"redis-server"`) can be run; tests use it to skip, loudly, on a
 * machine without the Debian package redis-server.
 *
 * @example
 * ```ts
 * import { redisServerInstalled } from "./redis_server.ts";
 * if (!(await redisServerInstalled())) console.warn("redis-server missing: tests skipped");
 * ```
 */
export async function redisServerInstalled(binary = "redis-server"): Promise<boolean> {
  try {
    const child = await runtime.spawnProcess(binary, ["--version"]);
    return child !== null && (await child.exited).code === 0;
  } catch {
    return false;
  }
}

/** Asks the OS for a free loopback port (there is a short race until redis-server binds it). */
async function freePort(): Promise<number> {
  const l = runtime.listenTcp({ hostname: "127.0.0.1", port: 0 });
  try {
    await l.ready;
    return l.addr.port;
  } finally {
    l.close();
  }
}

/** The log, or "" when there is none yet. */
async function logText(dir: string): Promise<string> {
  try {
    return await readFile(join(dir, "redis.log"), "utf8");
  } catch {
    return "";
  }
}

async function readLog(dir: string): Promise<string> {
  const text = await logText(dir);
  return text ? text.split("\n").slice(-12).join("\n") : "(no log)";
}

/**
 * Starts `redis-server` on a free 127.0.0.1 port and resolves once it answers `PING`.
 *
 * The process is also killed when this process exits, so a test that forgets
 * {@linkcode RedisServer.stop} does not leave it running (a SIGKILL of this process still would).
 *
 * @example
 * ```ts
 * import { startRedisServer } from "./redis_server.ts";
 * const redis = await startRedisServer({ persistence: true });
 * await redis.restart(); // the data survives: an append-only file, fsynced on every write
 * await redis.stop();
 * ```
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = options.binary ?? "redis-server";
  const dir = await mkdtemp(join(tmpdir(), "wse-redis-"));
  const persistence = options.persistence ?? false;
  let port = 0;
  let child: ChildProcessHandle | undefined;
  let stopped = false;
  // Killing synchronously at exit is the only cleanup left when a caller never calls stop().
  const onUnload = () => child?.kill("SIGKILL");

  const spawn = async (): Promise<void> => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--logfile",
      "redis.log",
      "--daemonize",
      "no",
      "--save",
      "",
      "--appendonly",
      persistence ? "yes" : "no",
      "--appendfsync",
      "always",
      ...(options.args ?? []),
    ];
    // Ready is what redis-server logs once it listens and has loaded its data: only this
    // start's lines count (a restart appends to the same log).
    const logged = (await logText(dir)).length;
    const proc = await runtime.spawnProcess(binary, args);
    if (!proc) throw new RedisServerNotInstalledError(binary);
    child = proc;
    let exited = false;
    proc.exited.then(() => (exited = true));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline && !exited) {
      if ((await logText(dir)).includes("Ready to accept connections", logged)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!exited) proc.kill("SIGKILL");
    const status = await proc.exited;
    child = undefined;
    throw new Error(
      `redis-server did not become ready on 127.0.0.1:${port} ` +
        `(exit code ${status.code}, signal ${status.signal}); log tail:\n${await readLog(dir)}`,
    );
  };

  const halt = async (signal: "SIGTERM" | "SIGKILL"): Promise<void> => {
    const proc = child;
    if (!proc) return;
    child = undefined;
    proc.kill("SIGCONT"); // a paused process would not act on SIGTERM
    proc.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const forced = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        proc.kill("SIGKILL");
        resolve();
      }, TERM_TIMEOUT_MS);
    });
    await Promise.race([proc.exited, forced]);
    clearTimeout(timer);
    await proc.exited;
  };

  const offExit = runtime.onExit(onUnload);
  try {
    // The free port may be taken by someone else before redis-server binds it: try a few.
    for (let attempt = 0;; attempt++) {
      port = await freePort();
      try {
        await spawn();
        break;
      } catch (e) {
        if (e instanceof RedisServerNotInstalledError || attempt >= 2) throw e;
      }
    }
  } catch (e) {
    offExit();
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw e;
  }

  return {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    dir,
    get running() {
      return child !== undefined;
    },
    crash: () => halt("SIGKILL"),
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    async restart() {
      if (stopped) throw new Error("this redis-server was stopped");
      await halt("SIGTERM");
      await spawn();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt("SIGTERM");
      offExit();
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    },
  };
}
