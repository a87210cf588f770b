/**
 * Headless Chromium (Debian `chromium`) for the tests that need a real browser, driven over the
 * Chrome DevTools Protocol with Deno's own `WebSocket`: launch on a fresh profile, open pages,
 * evaluate JavaScript in them, then close everything (the browser process is killed if it does
 * not exit by itself, and the profile removed). Debugging listens on 127.0.0.1 only.
 */
import { probe } from "./interop/helpers.ts";

/** The browser's command. */
export const CHROMIUM = "chromium";

/** Why Chromium cannot run here, or undefined when it can (tests skip loudly on a reason). */
export const chromiumMissing: string | undefined = probe(
  [CHROMIUM, "--version"],
  (o) => /Chromium/.test(o),
);

/** Flags for a quiet, network-free headless browser. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A page (tab) of the browser. */
export interface Page {
  /** Evaluates `expression` in the page (awaiting a promise) and returns its JSON value. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Polls `expression` until it is truthy (bounded); throws naming `what` otherwise. */
  waitFor(expression: string, what: string, timeoutMs?: number): Promise<void>;
  /** Closes the tab (its WebSockets close as when a user closes it). */
  close(): Promise<void>;
}

/** A running browser. */
export interface Browser {
  /** E.g. "Chrome/156.0.8078.114". */
  readonly version: string;
  /** Opens a tab on `url` and waits until it loaded. */
  newPage(url: string): Promise<Page>;
  /** Closes the browser, kills it if it lingers, removes its profile. */
  close(): Promise<void>;
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** A DevTools Protocol connection: numbered commands and their answers; events are ignored. */
class Cdp {
  readonly #ws: WebSocket;
  readonly #pending = new Map<
    number,
    { resolve(v: Json): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> }
  >();
  readonly #closed: Promise<void>;
  #next = 1;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.#closed = new Promise((resolve) => {
      ws.onclose = () => {
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error("the DevTools connection closed"));
        }
        this.#pending.clear();
        resolve();
      };
    });
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error) p.reject(new Error(`${m.error.message} (${m.error.code})`));
      else p.resolve(m.result);
    };
  }

  static open(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(new Cdp(ws));
      ws.onerror = (e) => reject(new Error(`DevTools at ${url}: ${(e as ErrorEvent).message}`));
    });
  }

  send(method: string, params: Json = {}, sessionId?: string, timeoutMs = 10_000): Promise<Json> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  close(): Promise<void> {
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.close();
    return this.#closed;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads the port and path Chromium writes once its DevTools endpoint listens (bounded). */
async function devToolsEndpoint(profile: string, exited: () => boolean): Promise<string> {
  const file = `${profile}/DevToolsActivePort`;
  for (let i = 0; i < 300 && !exited(); i++) { // 30 s
    try {
      const [port, path] = (await Deno.readTextFile(file)).split("\n");
      if (port && path) return `ws://127.0.0.1:${port}${path}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await sleep(100);
  }
  throw new Error(exited() ? "chromium exited before it listened" : "chromium did not listen");
}

/** Removes a profile; Chromium's helper processes may hold it for a moment (bounded retries). */
async function removeProfile(profile: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      await Deno.remove(profile, { recursive: true });
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      await sleep(100);
    }
  }
}

/** Launches headless Chromium on a fresh profile with DevTools on an ephemeral loopback port. */
export async function launchChromium(): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "wse-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      ...CHROMIUM_FLAGS,
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => (exited = true, s));
  let cdp: Cdp | undefined;

  const shutdown = async () => {
    if (cdp) {
      await cdp.send("Browser.close", {}, undefined, 3000).catch(() => {}); // it may drop first
      await cdp.close();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([status, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* it exited meanwhile */ }
    }
    await status;
    await removeProfile(profile);
  };

  try {
    cdp = await Cdp.open(await devToolsEndpoint(profile, () => exited));
    const version = (await cdp.send("Browser.getVersion")).product as string;
    const session = cdp;
    return {
      version,
      async newPage(url) {
        const { targetId } = await session.send("Target.createTarget", { url: "about:blank" });
        const { sessionId } = await session.send("Target.attachToTarget", {
          targetId,
          flatten: true,
        });
        const page: Page = {
          async evaluate<T>(expression: string): Promise<T> {
            const r = await session.send("Runtime.evaluate", {
              expression,
              returnByValue: true,
              awaitPromise: true,
            }, sessionId);
            if (r.exceptionDetails) {
              const d = r.exceptionDetails;
              throw new Error(`the page threw: ${d.exception?.description ?? d.text}`);
            }
            return r.result.value as T;
          },
          async waitFor(expression, what, timeoutMs = 15_000) {
            const end = Date.now() + timeoutMs;
            let last: unknown;
            for (let i = 0; i < 1000 && Date.now() < end; i++) {
              try {
                if (await page.evaluate(expression)) return;
              } catch (e) {
                last = e; // e.g. the context went away while the page navigated
              }
              await sleep(25);
            }
            throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
          },
          close: () => session.send("Target.closeTarget", { targetId }),
        };
        const nav = await session.send("Page.navigate", { url }, sessionId);
        if (nav.errorText) throw new Error(`${url}: ${nav.errorText}`);
        await page.waitFor(
          `location.href !== "about:blank" && document.readyState === "complete"`,
          `${url} to load`,
        );
        return page;
      },
      close: shutdown,
    };
  } catch (e) {
    await shutdown();
    throw e;
  }
}
