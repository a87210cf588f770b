// Clients nobody here wrote, against the server on each mount: npm:ws (echo, a broadcast and a
// publish reaching several clients, the Origin check), Python `websockets` (Debian
// python3-websockets: a script that echoes, subscribes and gets a publish) and headless Chromium
// (a page that subscribes and gets a broadcast and a publish; a cross-origin page is refused).
import assert from "node:assert/strict";
import { WebSocket as WsSocket } from "ws";
import type { ConnectInfo, DisconnectInfo } from "../../src/server/context.ts";
import type { ServerOptions } from "../../src/server/options.ts";
import type { Server } from "../../src/server/server.ts";
import { type Browser, chromiumMissing, launchChromium } from "../browser.ts";
import { probe, skipIfMissing } from "../interop/helpers.ts";
import { SAN, until } from "./helpers.ts";
import { MOUNTS, withServer } from "./mounts.ts";

const PY = "/usr/bin/python3";
const pyMissing = skipIfMissing(
  "python3-websockets",
  probe([PY, "-c", "import websockets; print(websockets.__version__)"]),
);
const browserMissing = skipIfMissing("chromium", chromiumMissing);

/**
 * The test server's app protocol: `sub <topic>` subscribes (answered `subscribed <topic>`),
 * `pub <topic> <text>` publishes, anything else is echoed with its type.
 */
const APP: ServerOptions = {
  onMessage: async (m, ctx) => {
    if (m.type === "binary") return await ctx.send(m.data.slice());
    const [cmd, topic, ...rest] = m.data.split(" ");
    if (cmd === "sub") {
      await ctx.subscribe(topic);
      await ctx.send(`subscribed ${topic}`);
    } else if (cmd === "pub") await ctx.server.publish(topic, rest.join(" "));
    else await ctx.send(m.data);
  },
};

/** What the server reported: every connect and disconnect. */
function record(server: Server): { connects: ConnectInfo[]; disconnects: DisconnectInfo[] } {
  const seen = { connects: [] as ConnectInfo[], disconnects: [] as DisconnectInfo[] };
  server.on("connect", (c) => seen.connects.push(c));
  server.on("disconnect", (d) => seen.disconnects.push(d));
  return seen;
}

/** An npm:ws client that queues what it receives: text as strings, binary as byte arrays. */
async function wsClient(url: string, options: { origin?: string } = {}) {
  const ws = new WsSocket(url, { ...options, handshakeTimeout: 5000 });
  const got: (string | number[])[] = [];
  let wake: (() => void) | undefined;
  ws.on("message", (data: Uint8Array, isBinary: boolean) => {
    got.push(isBinary ? [...data] : String(data));
    wake?.();
  });
  const closed = new Promise<void>((r) => ws.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", (e: Error) => closed.then(() => reject(e)));
  });
  let taken = 0;
  return {
    ws,
    got,
    /** The next message not yet taken (bounded: 5 s). */
    async next(): Promise<string | number[]> {
      const end = Date.now() + 5000;
      while (taken >= got.length && Date.now() < end) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => (wake = r, timer = setTimeout(r, 50)));
        clearTimeout(timer);
      }
      if (taken >= got.length) throw new Error(`no message within 5 s (got ${got.length})`);
      return got[taken++];
    },
    async close(code = 1000, reason = ""): Promise<void> {
      ws.close(code, reason);
      await closed;
    },
  };
}

/** Opens an npm:ws client expecting a refusal; resolves with its error message. */
async function wsRefusal(url: string, origin?: string): Promise<string> {
  const ws = new WsSocket(url, { origin, handshakeTimeout: 5000 });
  let outcome = "opened";
  ws.once("error", (e: Error) => (outcome = e.message));
  ws.once("open", () => ws.close());
  await new Promise<void>((r) => ws.once("close", () => r()));
  return outcome;
}

for (const m of MOUNTS) {
  const test = (name: string, fn: () => Promise<void>, ignore = false) =>
    Deno.test({ name: `[${m.name}] ${name}`, ignore, ...SAN, fn });

  test("npm:ws: echo text and binary; the server sees the close code", async () => {
    await withServer(m, APP, async (server, at) => {
      const seen = record(server);
      const c = await wsClient(at.url);
      c.ws.send("héllo from ws");
      assert.equal(await c.next(), "héllo from ws");
      c.ws.send(new Uint8Array([0, 1, 2, 255]));
      assert.deepEqual(await c.next(), [0, 1, 2, 255]);
      await c.close(4001, "bye from ws");
      await until(() => seen.disconnects.length === 1, "the disconnect");
      const { code, reason, wasClean } = seen.disconnects[0];
      assert.deepEqual({ code, reason, wasClean }, {
        code: 4001,
        reason: "bye from ws",
        wasClean: true,
      });
    });
  });

  test("npm:ws: a broadcast and a publish reach several clients, only the subscribers", async () => {
    await withServer(m, APP, async (server, at) => {
      const cs = [];
      for (let i = 0; i < 4; i++) cs.push(await wsClient(at.url));
      const [a, b] = cs;
      for (const s of [a, b]) {
        s.ws.send("sub news");
        assert.equal(await s.next(), "subscribed news");
      }
      assert.equal(server.broadcast("to all"), 4);
      for (const c of cs) assert.equal(await c.next(), "to all");
      cs[3].ws.send("pub news extra extra");
      assert.equal(await a.next(), "extra extra");
      assert.equal(await b.next(), "extra extra");
      assert.equal(server.broadcast("end"), 4);
      for (const c of cs) assert.equal(await c.next(), "end");
      // a connection's messages arrive in order: "end" after a publish it would have had
      assert.deepEqual(cs[2].got, ["to all", "end"]);
      assert.deepEqual(cs[3].got, ["to all", "end"]);
      for (const c of cs) await c.close();
    });
  });

  test("npm:ws: a foreign Origin gets 403; same origin, or a listed one, connects", async () => {
    await withServer(m, APP, async (server, at) => {
      const seen = record(server);
      assert.match(await wsRefusal(at.url, "http://evil.example"), /403/);
      const same = await wsClient(at.url, { origin: `http://127.0.0.1:${at.port}` });
      await same.close();
      const none = await wsClient(at.url); // no Origin: not a browser, passes
      await none.close();
      assert.equal(seen.connects.length, 2);
    });
    await withServer(
      m,
      { ...APP, checkOrigin: ["https://app.example"] },
      async (server, at) => {
        const seen = record(server);
        const listed = await wsClient(at.url, { origin: "https://app.example" });
        listed.ws.send("hi");
        assert.equal(await listed.next(), "hi");
        await listed.close();
        assert.match(await wsRefusal(at.url, "http://evil.example"), /403/);
        assert.match(await wsRefusal(at.url, `http://127.0.0.1:${at.port}`), /403/);
        // as with the default, a client that sends no Origin is not a browser page: it passes
        const plain = await wsClient(at.url);
        await plain.close();
        assert.equal(seen.connects.length, 2);
      },
    );
  });

  test("Python websockets: echo, subscribe, a publish, a clean close", async () => {
    await withServer(m, APP, async (server, at) => {
      const seen = record(server);
      const child = new Deno.Command(PY, {
        args: [new URL("./peers/py_pubsub.py", import.meta.url).pathname, at.url],
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const output = child.output();
      try {
        await until(() => server.subscribers("news") === 1, "the script's subscription", 15_000);
        assert.equal(server.publish("news", "from the server"), 1);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const out = await Promise.race([
          output,
          new Promise<never>((_, reject) =>
            timer = setTimeout(() => reject(new Error("the script did not end in 20 s")), 20_000)
          ),
        ]).finally(() => clearTimeout(timer));
        const report = JSON.parse(new TextDecoder().decode(out.stdout));
        assert.deepEqual(report, {
          echo_text: "héllo from python",
          echo_binary: [0, 1, 2, 255],
          subscribed: "subscribed news",
          published: "from the server",
          close_code: 1000,
        });
        await until(() => seen.disconnects.length === 1, "the disconnect");
        const { code, reason, wasClean } = seen.disconnects[0];
        assert.deepEqual({ code, reason, wasClean }, {
          code: 1000,
          reason: "bye from python",
          wasClean: true,
        });
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* it ended */ }
        await output;
      }
    });
  }, pyMissing);
}

/** Opens a WebSocket in the page, subscribes to "news"; what the page says of it. */
function subscribeInPage(url: string): string {
  return `(async () => {
    const ws = new WebSocket(${JSON.stringify(url)});
    window.ws = ws;
    window.got = [];
    ws.onmessage = (e) => got.push(e.data);
    const opened = await new Promise((r) => {
      ws.onopen = () => r(true);
      ws.onerror = () => r(false);
    });
    if (!opened) return "refused";
    ws.send("sub news");
    for (let i = 0; i < 200 && !got.includes("subscribed news"); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    return got.includes("subscribed news") ? "subscribed" : "no answer, got: " + got.join();
  })()`;
}

Deno.test({
  name:
    "headless Chromium on every mount: subscribe, a broadcast and a publish; cross-origin refused",
  ignore: browserMissing,
  ...SAN,
  async fn(t) {
    // The page's origin is this other port: allowed by a list, refused by the default check.
    const pages = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response("<!doctype html><title>wse clients</title>", {
          headers: { "content-type": "text/html" },
        }),
    );
    const pageOrigin = `http://127.0.0.1:${pages.addr.port}`;
    let browser: Browser | undefined;
    try {
      browser = await launchChromium();
      const b = browser;
      for (const m of MOUNTS) {
        await t.step(m.name, async () => {
          await withServer(m, { ...APP, checkOrigin: [pageOrigin] }, async (server, at) => {
            const seen = record(server);
            const page = await b.newPage(`${pageOrigin}/`);
            try {
              assert.equal(await page.evaluate(subscribeInPage(at.url)), "subscribed");
              assert.equal(seen.connects[0].headers.origin, pageOrigin);
              assert.equal(server.broadcast("to every tab"), 1);
              assert.equal(server.publish("news", "headline"), 1);
              await page.waitFor(
                `got.includes("to every tab") && got.includes("headline")`,
                "the broadcast and the publish",
              );
              await page.evaluate(`ws.close(4002, "bye from chromium")`);
              await until(() => seen.disconnects.length === 1, "the disconnect");
              const { code, reason, wasClean } = seen.disconnects[0];
              assert.deepEqual({ code, reason, wasClean }, {
                code: 4002,
                reason: "bye from chromium",
                wasClean: true,
              });
            } finally {
              await page.close();
            }
          });
          await withServer(m, APP, async (server, at) => {
            const seen = record(server);
            const page = await b.newPage(`${pageOrigin}/`);
            try {
              assert.equal(await page.evaluate(subscribeInPage(at.url)), "refused");
              assert.equal(seen.connects.length, 0);
            } finally {
              await page.close();
            }
          });
        });
      }
    } finally {
      await browser?.close();
      await pages.shutdown();
    }
  },
});
