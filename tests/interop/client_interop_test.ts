/**
 * Interop, our client against servers nobody here wrote: npm:ws, Deno.serve +
 * Deno.upgradeWebSocket, and Python `websockets` (Debian python3-websockets, /usr/bin/python3).
 * Every peer is started by the test on loopback and stopped by it.
 */
import { type WebSocket as WsSocket, WebSocketServer } from "ws";
import { lines, probe, recordAndAssert, runOurClient, SANITIZE, skipIfMissing } from "./helpers.ts";

const PY = "/usr/bin/python3";
const pyMissing = probe([PY, "-c", "import websockets; print(websockets.__version__)"]);

async function wsServer(compression: boolean) {
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    perMessageDeflate: compression,
    maxPayload: 64 << 20,
  });
  await new Promise<void>((r) => wss.on("listening", () => r()));
  wss.on("connection", (ws: WsSocket) => {
    ws.on("message", (data: Uint8Array, isBinary: boolean) => {
      if (isBinary) return ws.send(data, { binary: true });
      const s = data.toString();
      if (s.startsWith("close:")) {
        const [, code] = s.split(":");
        ws.close(Number(code), s.slice(7 + code.length));
      } else if (s === "frag:") {
        ws.send("frag", { fin: false });
        ws.send("mented ", { fin: false });
        ws.send("text", { fin: true });
      } else if (s === "ping:") {
        ws.once("pong", () => ws.send("pinged"));
        ws.ping("ws-server-ping");
      } else ws.send(s);
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

for (const compression of [false, true]) {
  Deno.test({
    name: `interop: wse client → npm:ws server, compression ${compression ? "on" : "off"}`,
    ...SANITIZE,
    async fn() {
      const peer = await wsServer(compression);
      try {
        const cases = await runOurClient(peer.url, {
          compression,
          expectDeflate: compression,
          serverExtras: true,
        });
        await recordAndAssert({
          peer: "npm:ws 8 server (in Deno)",
          direction: "wse client → peer server",
          compression: compression ? "on" : "off",
          cases,
        });
      } finally {
        await peer.close();
      }
    },
  });
}

Deno.test({
  name: "interop: wse client → Deno.serve + Deno.upgradeWebSocket (no permessage-deflate)",
  ...SANITIZE,
  async fn() {
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.binaryType = "arraybuffer";
      socket.onmessage = (e) => {
        if (typeof e.data === "string" && e.data.startsWith("close:")) {
          const [, code] = e.data.split(":");
          socket.close(Number(code), e.data.slice(7 + code.length));
        } else socket.send(e.data);
      };
      return response;
    });
    try {
      // We offer deflate; Deno's server has none and must decline it.
      const cases = await runOurClient(`ws://127.0.0.1:${server.addr.port}/`, {
        compression: true,
        expectDeflate: false,
      });
      await recordAndAssert({
        peer: "Deno.upgradeWebSocket on Deno.serve",
        direction: "wse client → peer server",
        compression: "n/a",
        cases,
        note:
          "Deno's server has no permessage-deflate (our offer is declined, checked); its API cannot send fragments or pings",
      });
    } finally {
      await server.shutdown();
    }
  },
});

for (const compression of [false, true]) {
  const name = `interop: wse client → Python websockets server, compression ${
    compression ? "on" : "off"
  }`;
  const missing = skipIfMissing("python3-websockets", pyMissing);
  Deno.test({
    name,
    ignore: missing,
    ...SANITIZE,
    async fn() {
      const child = new Deno.Command(PY, {
        args: [
          new URL("./peers/py_server.py", import.meta.url).pathname,
          compression ? "on" : "off",
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const out = lines(child.stdout);
      try {
        const first = await out.next();
        const port = Number(/PORT (\d+)/.exec(String(first.value))?.[1]);
        const cases = await runOurClient(`ws://127.0.0.1:${port}/`, {
          compression,
          expectDeflate: compression,
          serverExtras: true,
        });
        // The Python server logs how each connection ended: it saw our 4001.
        const seen: string[] = [];
        for (let i = 0; i < 2; i++) {
          const l = await out.next();
          if (l.done) break;
          seen.push(String(l.value));
        }
        cases["peer saw our close code"] = seen.some((l) =>
          l.startsWith("CLOSED 4001 bye from wse")
        );
        await recordAndAssert({
          peer: "Python websockets 10.4 server",
          direction: "wse client → peer server",
          compression: compression ? "on" : "off",
          cases,
        });
      } finally {
        await child.stdin.close();
        await out.return(undefined);
        await child.stdout.cancel().catch(() => {});
        await child.status;
      }
    },
  });
}
