/**
 * The example's echo server: `Deno.serve` + `Deno.upgradeWebSocket`, echoing every message with
 * its type. Run alone with `deno run -A examples/echo/server.ts [port]` (0 = any free port); it
 * prints `listening <port>` once ready.
 *
 * @module
 */

/** Starts an echo server on 127.0.0.1:`port`; resolves with the server once it listens. */
export function serveEcho(
  port: number,
  log: (line: string) => void = console.log,
): Deno.HttpServer {
  return Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: (addr) => log(`listening ${addr.port}`),
  }, (req) => {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("this is a WebSocket echo server\n");
    }
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    socket.onmessage = (e) => socket.send(e.data);
    socket.onerror = () => {};
    return response;
  });
}

if (import.meta.main) {
  serveEcho(Number(Deno.args[0] ?? 0));
}
