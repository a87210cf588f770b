/**
 * `deno task example`: an echo server in a subprocess and a client engine that exchanges a
 * message every second (gowse's example). Midway the example kills the server (SIGKILL: the
 * client sees 1006), restarts it on the same port, and the client reconnects with a new session
 * id. Then it stops the client gracefully. It ends by itself in about 10 s.
 *
 * @module
 */

import { WebSocketEngine } from "../../mod.ts";

const t0 = performance.now();
const log = (who: string, line: string) =>
  console.log(`${((performance.now() - t0) / 1000).toFixed(2).padStart(6)}s [${who}] ${line}`);

/** The server subprocess; resolves once it listens, with its port. */
async function spawnServer(port: number): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./server.ts", import.meta.url).pathname, String(port)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (let i = 0; i < 100; i++) { // bounded: the server prints one line when it listens
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    const m = /listening (\d+)/.exec(buffered);
    if (m) {
      void reader.cancel(); // nothing else to read
      log("server", `listening on 127.0.0.1:${m[1]} (pid ${child.pid})`);
      return { child, port: Number(m[1]) };
    }
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error("the echo server did not start");
}

let server = await spawnServer(0);
const url = `ws://127.0.0.1:${server.port}/`;

let counter = 0;
let nextTimer: ReturnType<typeof setTimeout> | undefined;

const engine = new WebSocketEngine({
  url,
  reconnect: { baseDelayMs: 250, maxDelayMs: 2000 },
  stopTimeoutMs: 2000,
  client: {
    async onOpen(ctx) {
      log("client", `open  session=${ctx.sessionId.slice(0, 8)} restarting=${ctx.restarting}`);
      await ctx.send(`hello #${++counter}`);
    },
    onMessage(message, ctx) {
      log("client", `echo  ${JSON.stringify(message.data)} (session ${ctx.sessionId.slice(0, 8)})`);
      // Answer one second later. If this session has ended by then, send() rejects: an old
      // handler never writes on the next connection.
      nextTimer = setTimeout(() => {
        ctx.send(`hello #${++counter}`).catch((e) => log("client", `not sent: ${e.name}`));
      }, 1000);
    },
    onClose(peer, ctx) {
      clearTimeout(nextTimer);
      if (peer) {
        log("client", `close by peer: code=${peer.code} reason=${JSON.stringify(peer.reason)}`);
      } else log("client", "close by us: the engine sends its close frame (default 1001)");
      if (ctx.willReconnect) log("client", "will reconnect (full-jitter backoff)");
    },
    onReadError: (error) => log("client", `read error: ${error}`),
    onCloseError: (error) => log("client", `close error: ${error.message}`),
    onRestartError(error, retryCount) {
      log("client", `reconnect attempt ${retryCount} failed: ${(error as Error).message}`);
    },
  },
});

await engine.start();
await new Promise((r) => setTimeout(r, 3500));

log("example", `killing the server (SIGKILL pid ${server.child.pid})`);
server.child.kill("SIGKILL");
await server.child.status;
await new Promise((r) => setTimeout(r, 1200)); // the client retries against a dead port meanwhile
server = await spawnServer(server.port);
log("example", "server restarted on the same port");

await engine.waitFor("open", { timeoutMs: 10_000 }).catch(() => {});
await new Promise((r) => setTimeout(r, 3200));

log("example", "stopping the client");
await engine.stop();
log("example", `client stopped: isStarted=${engine.isStarted}`);
server.child.kill("SIGTERM");
await server.child.status;
log("example", "server stopped; bye");
