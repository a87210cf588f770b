// wse in a browser page (headless Debian Chromium): the engine on the runtime's WebSocket and the
// worker pool on SharedArrayBuffer + Atomics, bundled with esbuild at test time. A wse server
// serves the page, the bundles and the WebSocket on one port: under /isolated/ with the COOP/COEP
// headers (a cross-origin-isolated page: two workers, messages, the pause button), under /plain/
// without them (the pool refuses and says why; `workers.fallback: "inline"` runs the same module
// on the main thread).
import assert from "node:assert/strict";
import { createServer } from "../../src/server/server.ts";
import { type Browser, chromiumMissing, launchChromium, type Page } from "../browser.ts";
import { SAN, until } from "../server/helpers.ts";
import { bundleForBrowser } from "./bundle.ts";

const ROOT = new URL("../../", import.meta.url);

/** Bundled files by the name the page asks for. The engine loads the worker entry and its
 * context module from `./worker.ts` and `./context.ts` next to its own module. */
const SERVED: Record<string, string> = {
  "wse.js": "wse.js",
  "worker.ts": "worker.js",
  "context.ts": "context.js",
  "handler.js": "handler.js",
};

/** What makes a page cross-origin isolated (sent on the page and on every script it loads). */
const ISOLATION = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
};

// In CI a missing browser fails the test instead of skipping it.
const ignore = chromiumMissing !== undefined && !Deno.env.get("CI");
if (ignore) console.log(`SKIPPED: chromium not installed (${chromiumMissing})`);

/** Starts an engine in the page (bundle from `dir`) with a two-worker pool on handler.js. */
function startEngine(dir: string, wsUrl: string, fallback?: "inline"): string {
  return `(async () => {
    const { WebSocketEngine } = await import("/${dir}/wse.js");
    globalThis.engine = new WebSocketEngine({
      url: ${JSON.stringify(wsUrl)},
      reconnect: false,
      workers: {
        module: new URL("/${dir}/handler.js", location.href),
        count: 2,
        ${fallback ? `fallback: ${JSON.stringify(fallback)},` : ""}
      },
      client: {},
    });
    await engine.start();
    return engine.state;
  })()`;
}

Deno.test({
  name: "Chromium page: engine + two-worker pool when cross-origin isolated; refusal or inline " +
    "fallback when not",
  ignore,
  ...SAN,
  async fn(t) {
    const dist = await Deno.makeTempDir({ prefix: "wse-browser-" });
    const got: string[] = [];
    const server = createServer({
      onMessage: async (m, ctx) => {
        if (m.type !== "text") return;
        got.push(m.data);
        const [cmd, arg] = m.data.split(" ");
        if (cmd === "holding") await ctx.send("release");
        else if (cmd === "question") await ctx.send(`answer ${arg}`);
      },
      fetch: async (request) => {
        const [, dir, file] = new URL(request.url).pathname.split("/");
        if (dir !== "isolated" && dir !== "plain") return new Response("", { status: 404 });
        const headers: Record<string, string> = dir === "isolated" ? { ...ISOLATION } : {};
        if (file === "") {
          headers["content-type"] = "text/html";
          return new Response("<!doctype html><title>wse in a page</title>", { headers });
        }
        if (!Object.hasOwn(SERVED, file)) return new Response("", { status: 404 });
        headers["content-type"] = "text/javascript";
        return new Response(await Deno.readFile(`${dist}/${SERVED[file]}`), { headers });
      },
    });
    let browser: Browser | undefined;
    try {
      await bundleForBrowser({
        wse: new URL("mod.ts", ROOT),
        worker: new URL("src/dispatch/worker.ts", ROOT),
        context: new URL("src/engine/context.ts", ROOT),
        handler: new URL("fixtures/page_handler.ts", import.meta.url),
      }, dist);
      const { port } = await server.listen({ port: 0 });
      await server.ready;
      const base = `http://127.0.0.1:${port}`;
      const wsUrl = `ws://127.0.0.1:${port}/`;
      browser = await launchChromium();
      const b = browser;

      /** Opens `/<dir>/`, runs `fn` on it, stops the page's engine and closes the page. */
      const onPage = async (dir: string, fn: (page: Page) => Promise<void>) => {
        got.length = 0;
        const page = await b.newPage(`${base}/${dir}/`);
        try {
          await fn(page);
        } finally {
          await page.evaluate(`globalThis.engine?.stop()`).catch(() => {});
          await page.close();
          await until(() => server.count === 0, "the page's connection to end");
        }
      };
      const only = () => server.ids().next().value as string;
      const sendJobs = async (n: number) => {
        for (let i = 0; i < n; i++) await server.send(only(), `job ${i}`);
        await until(() => got.filter((g) => g.startsWith("done ")).length === n, `${n} jobs`);
        return got.filter((g) => g.startsWith("done ")).map((g) => g.split(" ")[2]);
      };
      const pauseRoundTrip = async (tag: string) => {
        await server.send(only(), `pause ${tag}`);
        await until(() => got.some((g) => g.startsWith("paused ")), "the pause round trip");
        const line = got.find((g) => g.startsWith("paused "))!;
        assert.match(line, new RegExp(`^paused \\S+ read answer ${tag}$`));
        assert.ok(got.includes(`question ${tag}`));
        return line.split(" ")[1];
      };

      await t.step("isolated page: two workers take messages; the pause button", async () => {
        await onPage("isolated", async (page) => {
          assert.equal(await page.evaluate("crossOriginIsolated"), true);
          assert.equal(await page.evaluate(startEngine("isolated", wsUrl)), "open");
          await until(() => server.count === 1, "the page's connection");

          const workers = await sendJobs(20);
          for (const w of workers) assert.match(w, /^w\d+$/, "handled in a worker, not on main");

          // One worker holds its message until another handles "release": both ran at once.
          await server.send(only(), "hold");
          await until(
            () =>
              got.some((g) => /^(held|hold-timed-out) /.test(g)) &&
              got.some((g) => g.startsWith("released ")),
            "the hold and the release",
          );
          const held = got.find((g) => g.startsWith("held "))?.split(" ")[1];
          const released = got.find((g) => g.startsWith("released "))?.split(" ")[1];
          assert.ok(held, `the holding worker was released (got ${got.slice(-3)})`);
          assert.ok(released);
          assert.notEqual(held, released);

          // The pause button: the answer is read by the lease, not dispatched to a worker.
          assert.match(await pauseRoundTrip("7"), /^w\d+$/);
          got.length = 0;
          assert.deepEqual(new Set(await sendJobs(5)).has("main"), false, "dispatch resumed");
          assert.deepEqual(got.filter((g) => g.startsWith("unexpected")), []);
        });
      });

      await t.step("page not isolated: the pool refuses and says why", async () => {
        await onPage("plain", async (page) => {
          assert.equal(await page.evaluate("crossOriginIsolated"), false);
          const refusal = await page.evaluate<{ name: string; message: string }>(
            `${startEngine("plain", wsUrl)}.then(
              (state) => ({ name: "started", message: state }),
              (e) => ({ name: e.name, message: e.message }),
            )`,
          );
          assert.equal(refusal.name, "EngineOptionError");
          assert.match(refusal.message, /crossOriginIsolated is false/);
          assert.match(refusal.message, /Cross-Origin-Opener-Policy: same-origin/);
          assert.match(refusal.message, /Cross-Origin-Embedder-Policy: require-corp/);
          assert.match(refusal.message, /workers\.fallback/);
          assert.equal(server.count, 0);
        });
      });

      await t.step("what the page's WebSocket cannot do: request headers, heartbeat", async () => {
        await onPage("plain", async (page) => {
          const errors = await page.evaluate<string[]>(`(async () => {
            const { WebSocketEngine } = await import("/plain/wse.js");
            const url = ${JSON.stringify(wsUrl)};
            const out = [];
            const engine = new WebSocketEngine({
              url, reconnect: false, headers: { "x-token": "1" }, client: {},
            });
            await engine.start().then(() => out.push("started"), (e) =>
              out.push(e.name + ": " + e.cause?.name + ": " + e.cause?.message));
            try {
              new WebSocketEngine({ url, heartbeat: { intervalMs: 1000 }, client: {} });
              out.push("constructed");
            } catch (e) {
              out.push(e.name + ": " + e.message);
            }
            return out;
          })()`);
          assert.match(errors[0], /^EngineStartError: NotSupportedError: .*request headers/);
          assert.match(errors[1], /^EngineOptionError: .*heartbeat.*cannot/);
          assert.equal(server.count, 0);
        });
      });

      await t.step("page not isolated, fallback inline: the module runs on main", async () => {
        await onPage("plain", async (page) => {
          assert.equal(await page.evaluate(startEngine("plain", wsUrl, "inline")), "open");
          await until(() => server.count === 1, "the page's connection");
          assert.deepEqual(new Set(await sendJobs(10)), new Set(["main"]));
          assert.equal(await pauseRoundTrip("8"), "main");
          assert.deepEqual(got.filter((g) => g.startsWith("unexpected")), []);
        });
      });
    } finally {
      await browser?.close();
      await server.stop({ timeoutMs: 2000 });
      await Deno.remove(dist, { recursive: true });
    }
  },
});
