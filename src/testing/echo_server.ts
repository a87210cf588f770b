/**
 * A public test kit for users' own tests (Deno only): a restartable, fault-injecting echo server on
 * 127.0.0.1. It sits behind a TCP proxy that can drop every connection at once (the client sees
 * 1006, as when a server is killed), hang (forward nothing, close nothing), refuse handshakes
 * with an HTTP status, and come back on the same port.
 *
 * @example
 * ```ts
 * import { startEchoServer } from "./echo_server.ts";
 * const server = startEchoServer();
 * const ws = new WebSocket(server.url);
 * await new Promise((r) => (ws.onopen = r));
 * ws.close();
 * await server.close();
 * ```
 *
 * @module
 */

import { runtime } from "../platform/runtime.ts";

/**
 * A restartable, fault-injecting echo server (see {@linkcode startEchoServer}).
 *
 * @example
 * ```ts
 * import { type EchoServer, startEchoServer } from "./echo_server.ts";
 * const server: EchoServer = startEchoServer();
 * server.rejectStatus = 403; // handshakes now fail with HTTP 403
 * await server.close();
 * ```
 */
export interface EchoServer {
  /** `ws://127.0.0.1:<port>/` of the proxy (stable across restarts). */
  readonly url: string;
  /** Answer handshakes with this HTTP status instead of upgrading (0 = upgrade). */
  rejectStatus: number;
  /** Subprotocols the server accepts (the first offered one in this list is selected). */
  acceptProtocols: string[];
  /** When false, messages are not echoed. */
  echo: boolean;
  /** Every text/binary message the server received, in order. */
  readonly received: (string | ArrayBuffer)[];
  /** Request headers of every upgrade. */
  readonly upgrades: Headers[];
  /** Close codes the server saw from clients. */
  readonly closes: { code: number; reason: string }[];
  /** Open server-side sockets. */
  readonly sockets: Set<WebSocket>;
  /** Sends `data` to every open client. */
  broadcast(data: string | Uint8Array): void;
  /** Closes every open client with a close frame. */
  closeAll(code?: number, reason?: string): void;
  /** Stops forwarding bytes (both ways) without closing anything: a hung peer. */
  freeze(): void;
  /** Forwards again what was held. */
  thaw(): void;
  /** Stops listening and drops every connection without a close frame. */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  /** Kills and shuts everything down. */
  close(): Promise<void>;
}

async function copy(
  from: Deno.Conn,
  to: Deno.Conn,
  gate: () => Promise<void> | undefined,
): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      await gate(); // frozen: hold the bytes, like a peer that hangs
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } catch { /* closed under us */ }
  try {
    await to.closeWrite();
  } catch { /* already closed */ }
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

/**
 * Starts an echo server and its proxy on ephemeral 127.0.0.1 ports. Call `close()` at the end
 * of the test: it releases every socket, so Deno's resource sanitizer stays happy.
 *
 * @example
 * ```ts
 * import { startEchoServer } from "./echo_server.ts";
 * const server = startEchoServer();
 * await server.kill(); // clients see 1006; connecting is refused
 * await server.restart(); // same URL again
 * await server.close();
 * ```
 */
export function startEchoServer(): EchoServer {
  runtime.requireDeno(
    "startEchoServer (its peer is Deno.serve's own WebSocket)",
    'test against serve() from "@wse/engine/transport" instead',
  );
  const sockets = new Set<WebSocket>();
  const received: (string | ArrayBuffer)[] = [];
  const upgrades: Headers[] = [];
  const closes: { code: number; reason: string }[] = [];
  const inner = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      if (kit.rejectStatus) return new Response("refused by test", { status: kit.rejectStatus });
      upgrades.push(new Headers(req.headers));
      const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) =>
        s.trim()
      );
      const protocol = offered.find((p) => kit.acceptProtocols.includes(p));
      const { socket, response } = Deno.upgradeWebSocket(req, { protocol, idleTimeout: 0 });
      socket.binaryType = "arraybuffer";
      socket.onopen = () => sockets.add(socket);
      socket.onmessage = (e) => {
        received.push(e.data);
        if (kit.echo && socket.readyState === WebSocket.OPEN) socket.send(e.data);
      };
      socket.onclose = (e) => {
        sockets.delete(socket);
        closes.push({ code: e.code, reason: e.reason });
      };
      socket.onerror = () => {};
      return response;
    },
  );
  const innerPort = inner.addr.port;

  let listener: Deno.TcpListener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const pairs = new Set<{ a: Deno.Conn; b?: Deno.Conn; done: Promise<void> }>();
  let acceptLoop: Promise<void> = Promise.resolve();
  let frozen: { promise: Promise<void>; resolve(): void } | undefined;
  const gate = () => frozen?.promise;

  const serve = (l: Deno.TcpListener) => {
    acceptLoop = (async () => {
      for (;;) {
        let a: Deno.Conn;
        try {
          a = await l.accept();
        } catch {
          return; // listener closed
        }
        const pair: { a: Deno.Conn; b?: Deno.Conn; done: Promise<void> } = {
          a,
          done: Promise.resolve(),
        };
        pair.done = (async () => {
          try {
            pair.b = await Deno.connect({ hostname: "127.0.0.1", port: innerPort });
          } catch {
            closeQuietly(a);
            return;
          }
          await Promise.all([copy(a, pair.b, gate), copy(pair.b, a, gate)]);
          closeQuietly(a);
          closeQuietly(pair.b);
        })();
        pairs.add(pair);
        void pair.done.then(() => pairs.delete(pair));
      }
    })();
  };
  serve(listener);

  const thaw = () => {
    frozen?.resolve();
    frozen = undefined;
  };
  const kill = async () => {
    thaw();
    if (listener) {
      closeQuietly(listener);
      listener = undefined;
    }
    await acceptLoop;
    const all = [...pairs];
    for (const p of all) {
      closeQuietly(p.a);
      if (p.b) closeQuietly(p.b);
    }
    await Promise.all(all.map((p) => p.done));
  };

  const kit: EchoServer = {
    url: `ws://127.0.0.1:${port}/`,
    rejectStatus: 0,
    acceptProtocols: [],
    echo: true,
    received,
    upgrades,
    closes,
    sockets,
    broadcast(data) {
      for (const s of sockets) if (s.readyState === WebSocket.OPEN) s.send(data);
    },
    closeAll(code = 1000, reason = "") {
      for (const s of sockets) s.close(code, reason);
    },
    freeze() {
      if (frozen) return;
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      frozen = { promise, resolve };
    },
    thaw,
    kill,
    async restart() {
      if (listener) return;
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      serve(listener);
      await Promise.resolve();
    },
    async close() {
      await kill();
      // Let server-side sockets see their drop before shutting the server down.
      for (let i = 0; i < 100 && sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 5));
      await inner.shutdown();
    },
  };
  return kit;
}
