/**
 * Shared pieces of the interoperability tests: the case list, our echo server, the run of cases
 * with our client, peer detection with loud skips, and the results file the matrix is built from.
 *
 * The echo protocol every server in the matrix speaks: data messages are echoed with their type;
 * the text command `close:<code>:<reason>` makes the server start the close handshake. Our own
 * server and the npm:ws and Python peers also understand `frag:` (answer "fragmented text" in three
 * fragments) and `ping:` (ping the client, answer "pinged" once the pong arrived); Deno's server
 * API can do neither.
 */
import assert from "node:assert/strict";
import { connect, type ConnectOptions } from "../../src/transport/tcp_client.ts";
import { serve, type ServeOptions, type WebSocketServer } from "../../src/transport/tcp_server.ts";
import type { WebSocketConnection } from "../../src/transport/tcp_connection.ts";
import { Opcode } from "../../src/protocol/mod.ts";

/** Message sizes every pairing exchanges, as text and as binary. */
export const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024];

/** Per-case outcome of one pairing. */
export type CaseResults = Record<string, boolean>;

/** One row of the matrix. */
export interface MatrixRow {
  peer: string;
  direction: "wse client → peer server" | "peer client → wse server";
  compression: "on" | "off" | "n/a";
  cases: CaseResults;
  note?: string;
}

/** The permissions every test that opens sockets runs with. */
export const SANITIZE = { sanitizeOps: true, sanitizeResources: true } as const;

/** Appends a row to `$WSE_INTEROP_RESULTS` (a JSON-lines file), when set; the matrix script reads it. */
export async function record(row: MatrixRow): Promise<void> {
  const file = Deno.env.get("WSE_INTEROP_RESULTS");
  if (!file) return;
  await Deno.writeTextFile(file, JSON.stringify(row) + "\n", { append: true });
}

/** Asserts every case passed (after recording the row), naming the failures. */
export async function recordAndAssert(row: MatrixRow): Promise<void> {
  await record(row);
  const failed = Object.entries(row.cases).filter(([, ok]) => !ok).map(([k]) => k);
  assert.deepEqual(failed, [], `${row.peer} (${row.direction}, compression ${row.compression})`);
}

/** Is `cmd` runnable? Used to skip a peer loudly when it is not installed. */
export function probe(cmd: string[], check?: (out: string) => boolean): string | undefined {
  try {
    const out = new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" })
      .outputSync();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) return `\`${cmd.join(" ")}\` exited with ${out.code}: ${text.trim()}`;
    if (check && !check(text)) return `\`${cmd.join(" ")}\` printed ${text.trim()}`;
    return undefined;
  } catch (e) {
    return `\`${cmd[0]}\` cannot run: ${(e as Error).message}`;
  }
}

/** Prints the loud skip line; returns true when the peer is missing. */
export function skipIfMissing(peer: string, why: string | undefined): boolean {
  if (why === undefined) return false;
  console.log(`SKIPPED: ${peer} not installed (${why})`);
  return true;
}

/** A text payload of exactly `size` UTF-8 bytes with multi-byte characters in it. */
export function textOf(size: number): string {
  return "é".repeat(size >> 1) + "a".repeat(size & 1);
}

/** `size` random bytes. */
export function bytesOf(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function next(ws: WebSocketConnection, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const m = ws.poll();
    if (m) return m;
    if (ws.isClosed) throw new Error("closed while waiting for a message");
    let timer!: ReturnType<typeof setTimeout>;
    await Promise.race([
      ws.readable(),
      new Promise((r) => (timer = setTimeout(r, Math.max(1, deadline - Date.now())))),
    ]);
    clearTimeout(timer);
    if (Date.now() >= deadline) throw new Error("timed out waiting for a message");
  }
}

/**
 * Runs every client-side case with our client against an echo server at `url`.
 * `expectDeflate` is what the extensions header must say (undefined: do not check).
 */
export async function runOurClient(
  url: string,
  options: ConnectOptions & {
    expectDeflate?: boolean;
    /** The server understands `frag:` and `ping:` (sends fragments / pings us). */
    serverExtras?: boolean;
  },
): Promise<CaseResults> {
  const r: CaseResults = {};
  const ws = await connect(url, options);
  try {
    if (options.expectDeflate !== undefined) {
      r["compression"] = ws.extensions.includes("permessage-deflate") === options.expectDeflate;
    }
    for (const size of SIZES) {
      const bin = bytesOf(size);
      await ws.send(bin);
      const m1 = await next(ws);
      r[`binary ${size}`] = m1.type === "binary" && sameBytes(m1.data, bin);
      const text = textOf(size);
      await ws.send(text);
      const m2 = await next(ws);
      r[`text ${size}`] = m2.type === "text" && m2.data === text;
    }
    const enc = new TextEncoder();
    await ws.sendFrame(Opcode.Text, enc.encode("frag"), false);
    await ws.sendFrame(Opcode.Continuation, enc.encode("mented "), false);
    await ws.sendFrame(Opcode.Continuation, enc.encode("text"), true);
    const m3 = await next(ws);
    r["fragmented (client sends)"] = m3.type === "text" && m3.data === "fragmented text";
    const rtt = await ws.ping(5000);
    r["ping (client pings)"] = rtt >= 0;
    if (options.serverExtras) {
      await ws.send("frag:");
      const m4 = await next(ws);
      r["fragmented (server sends)"] = m4.type === "text" && m4.data === "fragmented text";
      await ws.send("ping:");
      const m5 = await next(ws);
      r["ping (server pings)"] = m5.type === "text" && m5.data === "pinged";
    }
    const info = await ws.close(4001, "bye from wse", 5000);
    r["close from client"] = info.code === 4001 && info.wasClean && info.initiator === "local";
  } finally {
    ws.terminate();
    await ws.socketClosed;
  }
  const ws2 = await connect(url, options);
  try {
    await ws2.send("close:4002:bye from server");
    const info = await ws2.socketClosed;
    r["close from server"] = info.code === 4002 && info.reason === "bye from server" &&
      info.wasClean && info.initiator === "remote";
  } finally {
    ws2.terminate();
    await ws2.socketClosed;
  }
  return r;
}

/** Serves one connection of the echo protocol with our server's connection object. */
export async function echoHandler(ws: WebSocketConnection): Promise<void> {
  try {
    for await (const m of ws) {
      if (m.type === "text" && m.data.startsWith("close:")) {
        const [, code] = m.data.split(":");
        void ws.close(Number(code), m.data.slice(7 + code.length));
      } else if (m.type === "text" && m.data === "frag:") {
        const enc = new TextEncoder();
        await ws.sendFrame(Opcode.Text, enc.encode("frag"), false);
        await ws.sendFrame(Opcode.Continuation, enc.encode("mented "), false);
        await ws.sendFrame(Opcode.Continuation, enc.encode("text"), true);
      } else if (m.type === "text" && m.data === "ping:") {
        await ws.ping(5000);
        await ws.send("pinged");
      } else {
        await ws.send(m.data);
      }
    }
  } catch {
    // the peer went away mid-echo; the close info says how
  }
}

/** Our echo server on an ephemeral loopback port; `closes` collects how connections ended. */
export function ourEchoServer(options: Partial<ServeOptions> = {}): {
  server: WebSocketServer;
  url: string;
  closes: { code: number; reason: string }[];
} {
  const closes: { code: number; reason: string }[] = [];
  const server = serve({
    port: 0,
    hostname: "127.0.0.1",
    ...options,
    onConnection: async (ws) => {
      await echoHandler(ws);
      const info = await ws.socketClosed;
      closes.push({ code: info.code, reason: info.reason });
    },
  });
  return { server, url: `ws://127.0.0.1:${server.port}/`, closes };
}

/** Reads lines from a child's stdout. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, i);
        buf = buf.slice(i + 1);
      }
    }
    if (buf) yield buf;
  } finally {
    reader.releaseLock();
  }
}

/**
 * The cases a WHATWG-style client runs against our echo server. Written in plain JavaScript style
 * (no closures over module scope) because the browser test sends its source text to Chromium.
 */
// deno-lint-ignore no-explicit-any
export async function whatwgCases(open: () => any, sizes: number[], deflate?: boolean) {
  const r: Record<string, boolean> = {};
  // deno-lint-ignore no-explicit-any
  const dial = (): Promise<any> =>
    new Promise((resolve, reject) => {
      const ws = open();
      ws.binaryType = "arraybuffer";
      const q: unknown[] = [];
      let waiter: (() => void) | null = null;
      let closeInfo: unknown = null;
      let onClose: ((v: unknown) => void) | null = null;
      ws.onmessage = (e: { data: unknown }) => {
        q.push(e.data);
        if (waiter) {
          const w = waiter;
          waiter = null;
          w();
        }
      };
      ws.onclose = (e: { code: number; reason: string; wasClean: boolean }) => {
        closeInfo = { code: e.code, reason: e.reason, wasClean: e.wasClean };
        if (onClose) onClose(closeInfo);
        if (waiter) waiter();
      };
      ws.onerror = () => reject(new Error("websocket error"));
      ws.onopen = () =>
        resolve({
          ws,
          next: async () => {
            while (!q.length) {
              if (closeInfo) throw new Error("closed while waiting");
              await new Promise<void>((res) => (waiter = res));
            }
            return q.shift();
          },
          closed: () =>
            closeInfo ? Promise.resolve(closeInfo) : new Promise((res) => (onClose = res)),
        });
    });
  const c = await dial();
  if (deflate !== undefined) {
    r["compression"] = String(c.ws.extensions).includes("permessage-deflate") === deflate;
  }
  for (const size of sizes) {
    const bin = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bin.subarray(i, i + 65536));
    c.ws.send(bin);
    const got = await c.next();
    let same = got instanceof ArrayBuffer && got.byteLength === size;
    if (same) {
      const g = new Uint8Array(got as ArrayBuffer);
      for (let i = 0; i < size && same; i++) same = g[i] === bin[i];
    }
    r["binary " + size] = same;
    const text = "é".repeat(size >> 1) + "a".repeat(size & 1);
    c.ws.send(text);
    r["text " + size] = (await c.next()) === text;
  }
  c.ws.send("frag:");
  r["fragmented (server sends)"] = (await c.next()) === "fragmented text";
  c.ws.send("ping:");
  r["ping (server pings)"] = (await c.next()) === "pinged";
  c.ws.close(4001, "bye from client");
  const i1 = await c.closed();
  r["close from client"] = i1.code === 4001 && i1.wasClean;
  const c2 = await dial();
  c2.ws.send("close:4002:bye from server");
  const i2 = await c2.closed();
  r["close from server"] = i2.code === 4002 && i2.reason === "bye from server" && i2.wasClean;
  return r;
}
