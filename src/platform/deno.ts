/**
 * Deno: `Deno.connect`/`Deno.listen` (+ TLS), Web Workers, `Deno.Command`, `Deno.upgradeWebSocket`.
 *
 * @module
 */

import type {
  ChildProcessHandle,
  Runtime,
  RuntimeSocket,
  TcpDialOptions,
  TcpListener,
  TcpListenOptions,
} from "./types.ts";
import { spawnWebWorker, webParentPort } from "./web.ts";

async function dialTcp(options: TcpDialOptions): Promise<RuntimeSocket> {
  const { hostname, port } = options;
  const tcp = await Deno.connect({ hostname, port });
  // Deno's TlsConn has no setNoDelay, but the TCP socket under it can have Nagle turned off
  // before the TLS layer takes it.
  try {
    tcp.setNoDelay(true);
  } catch { /* best effort */ }
  if (!options.tls) return { kind: "deno", conn: tcp };
  return { kind: "deno", conn: await Deno.startTls(tcp, { hostname, caCerts: options.caCerts }) };
}

function listenTcp(options: TcpListenOptions): TcpListener {
  const { hostname, port, tls } = options;
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key })
    : Deno.listen({ hostname, port, transport: "tcp" });
  const addr = listener.addr as Deno.NetAddr;
  return {
    addr: { hostname: addr.hostname, port: addr.port },
    ready: Promise.resolve(),
    accept: () => listener.accept().then((conn): RuntimeSocket => ({ kind: "deno", conn })),
    close() {
      try {
        listener.close();
      } catch { /* already closed */ }
    },
  };
}

function spawnProcess(program: string, args: string[]): Promise<ChildProcessHandle | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? Promise.resolve(null) : Promise.reject(e);
  }
  return Promise.resolve({
    pid: child.pid,
    exited: child.status.then((s) => ({ code: s.code, signal: s.signal })),
    kill(signal) {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    },
  });
}

/** The Deno runtime. */
export function denoRuntime(): Runtime {
  const name = `Deno ${Deno.version.deno}`;
  return {
    name,
    tcp: true,
    webSocketHeaders: true,
    cpuCount: navigator.hardwareConcurrency ?? 1,
    pathUrl(path) {
      const cwd = Deno.cwd().replace(/\\/g, "/");
      return new URL(path, `file://${cwd.startsWith("/") ? "" : "/"}${cwd}/`);
    },
    dialTcp,
    listenTcp,
    spawnWorker: spawnWebWorker,
    parentPort: webParentPort,
    upgradeWebSocket: (request, options) => Deno.upgradeWebSocket(request, options),
    spawnProcess,
    onExit(fn) {
      globalThis.addEventListener("unload", fn);
      return () => globalThis.removeEventListener("unload", fn);
    },
    requireDeno() {},
  };
}
