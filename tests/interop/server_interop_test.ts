/**
 * Interop, clients nobody here wrote against our server: npm:ws, Deno's `WebSocket`, Python
 * `websockets` (Debian python3-websockets, /usr/bin/python3) and headless Chromium (Debian
 * `chromium`). Every peer is started by the test on loopback and stopped by it.
 */
import assert from "node:assert/strict";
import { WebSocket as WsSocket } from "ws";
import { type Browser, chromiumMissing, launchChromium } from "../browser.ts";
import {
  ourEchoServer,
  probe,
  recordAndAssert,
  SANITIZE,
  SIZES,
  skipIfMissing,
  whatwgCases,
} from "./helpers.ts";

const PY = "/usr/bin/python3";
const pyMissing = probe([PY, "-c", "import websockets; print(websockets.__version__)"]);

for (const compression of [false, true]) {
  Deno.test({
    name: `interop: npm:ws client → wse server, compression ${compression ? "on" : "off"}`,
    ...SANITIZE,
    async fn() {
      const { server, url, closes } = ourEchoServer({ compression });
      try {
        const cases = await whatwgCases(
          () => new WsSocket(url, { perMessageDeflate: compression, maxPayload: 64 << 20 }),
          SIZES,
          compression,
        );
        // ws can also send fragments and pings itself.
        const ws = new WsSocket(url, { perMessageDeflate: compression });
        await new Promise((r) => ws.once("open", r));
        const got = new Promise<string>((r) => ws.once("message", (d: Uint8Array) => r(String(d))));
        ws.send("frag", { fin: false });
        ws.send("mented ", { fin: false });
        ws.send("text", { fin: true });
        cases["fragmented (client sends)"] = (await got) === "fragmented text";
        const pong = new Promise<boolean>((r) =>
          ws.once("pong", (d: Uint8Array) => r(String(d) === "ws-ping"))
        );
        ws.ping("ws-ping");
        cases["ping (client pings)"] = await pong;
        await new Promise<void>((r) => {
          ws.once("close", () => r());
          ws.close(1000);
        });
        await server.close();
        cases["server saw close code"] = closes.some((c) =>
          c.code === 4001 && c.reason === "bye from client"
        );
        await recordAndAssert({
          peer: "npm:ws 8 client (in Deno)",
          direction: "peer client → wse server",
          compression: compression ? "on" : "off",
          cases,
        });
      } finally {
        await server.close();
      }
    },
  });
}

Deno.test({
  name: "interop: Deno WebSocket client → wse server (no permessage-deflate)",
  ...SANITIZE,
  async fn() {
    const { server, url, closes } = ourEchoServer({ compression: true });
    try {
      // Deno's client offers no extension even though our server would accept one.
      const cases = await whatwgCases(() => new WebSocket(url), SIZES, false);
      await server.close();
      cases["server saw close code"] = closes.some((c) => c.code === 4001);
      await recordAndAssert({
        peer: "Deno WebSocket client",
        direction: "peer client → wse server",
        compression: "n/a",
        cases,
        note: "Deno's client offers no permessage-deflate; it cannot send fragments or pings",
      });
    } finally {
      await server.close();
    }
  },
});

for (const compression of [false, true]) {
  const missing = skipIfMissing("python3-websockets", pyMissing);
  Deno.test({
    name: `interop: Python websockets client → wse server, compression ${
      compression ? "on" : "off"
    }`,
    ignore: missing,
    ...SANITIZE,
    async fn() {
      const { server, url, closes } = ourEchoServer({ compression });
      try {
        const out = await new Deno.Command(PY, {
          args: [
            new URL("./peers/py_client.py", import.meta.url).pathname,
            url,
            compression ? "on" : "off",
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "{}";
        const cases = JSON.parse(text);
        assert.equal(cases.error, undefined, cases.error);
        await server.close();
        cases["server saw close code"] = closes.some((c) =>
          c.code === 4001 && c.reason === "bye from python"
        );
        await recordAndAssert({
          peer: "Python websockets 10.4 client",
          direction: "peer client → wse server",
          compression: compression ? "on" : "off",
          cases,
        });
      } finally {
        await server.close();
      }
    },
  });
}

function page(): string {
  return `<!doctype html><meta charset="utf-8"><title>wse interop</title><script type="module">
const whatwgCases = ${whatwgCases.toString()};
const p = new URLSearchParams(location.search);
let results;
try {
  results = await whatwgCases(() => new WebSocket(p.get("ws")), ${
    JSON.stringify(SIZES)
  }, p.get("comp") === "on");
  results.userAgent = navigator.userAgent;
} catch (e) {
  results = { error: String(e && e.stack || e) };
}
await fetch("/report", { method: "POST", body: JSON.stringify(results) });
</script>`;
}

for (const compression of [false, true]) {
  const missing = skipIfMissing("chromium", chromiumMissing);
  Deno.test({
    name: `interop: headless Chromium → wse server, compression ${compression ? "on" : "off"}`,
    ignore: missing,
    ...SANITIZE,
    async fn() {
      const { server, url, closes } = ourEchoServer({ compression });
      let report!: (v: Record<string, unknown>) => void;
      const reported = new Promise<Record<string, unknown>>((r) => (report = r));
      const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
        const u = new URL(req.url);
        if (u.pathname === "/report") {
          report(await req.json());
          return new Response("ok");
        }
        if (u.pathname === "/") {
          return new Response(page(), { headers: { "content-type": "text/html; charset=utf-8" } });
        }
        return new Response("not found", { status: 404 });
      });
      let browser: Browser | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        browser = await launchChromium();
        await browser.newPage(
          `http://127.0.0.1:${http.addr.port}/?ws=${encodeURIComponent(url)}&comp=${
            compression ? "on" : "off"
          }`,
        );
        const result = await Promise.race([
          reported,
          new Promise<Record<string, unknown>>((
            r,
          ) => (timer = setTimeout(() => r({ error: "no report within 60 s" }), 60_000))),
        ]);
        assert.equal(result.error, undefined, String(result.error));
        const ua = String(result.userAgent);
        delete result.userAgent;
        const cases = result as Record<string, boolean>;
        cases["server saw close code"] = closes.some((c) =>
          c.code === 4001 && c.reason === "bye from client"
        );
        await recordAndAssert({
          peer: `Chromium ${/Chrome\/([\d.]+)/.exec(ua)?.[1]?.split(".")[0] ?? "?"} (headless)`,
          direction: "peer client → wse server",
          compression: compression ? "on" : "off",
          cases,
          note: "browsers cannot send fragments or pings: our server sends them",
        });
      } finally {
        clearTimeout(timer);
        await browser?.close();
        await http.shutdown();
        await server.close();
      }
    },
  });
}
