/** Raw-socket helpers for the transport tests: fake peers that speak just enough HTTP/WebSocket. */
import { decodeClosePayload } from "../../src/protocol/close.ts";
import type { Frame, FrameParser } from "../../src/protocol/frames.ts";
import { acceptKey } from "../../src/protocol/handshake.ts";

export const SANITIZE = { sanitizeOps: true, sanitizeResources: true } as const;
export const enc = new TextEncoder();
export const dec = new TextDecoder();
export const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** Reads until `\r\n\r\n`; returns the head text and the bytes after it (null on EOF). */
export async function readHeadRaw(
  conn: Deno.Conn,
  limitMs = 5000,
): Promise<{ head: string; rest: Uint8Array } | null> {
  let buf = new Uint8Array(0);
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const chunk = new Uint8Array(65536);
    const n = await conn.read(chunk).catch(() => null);
    if (n === null) return null;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    const text = dec.decode(buf);
    const i = text.indexOf("\r\n\r\n");
    if (i >= 0) {
      const headBytes = enc.encode(text.slice(0, i + 4)).length;
      return { head: text.slice(0, i + 4), rest: buf.subarray(headBytes) };
    }
  }
  return null;
}

/** Reads everything until EOF (bounded by `limitMs`). */
export async function readAll(conn: Deno.Conn, limitMs = 5000): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    while (true) {
      const chunk = new Uint8Array(65536);
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) break;
      parts.push(chunk.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads frames until `pred` matches one or EOF; returns all frames read. */
export async function readFrames(
  conn: Deno.Conn,
  parser: FrameParser,
  pred: (f: Frame) => boolean,
  limitMs = 5000,
): Promise<Frame[]> {
  const frames: Frame[] = [];
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    while (true) {
      for (let f = parser.next(); f; f = parser.next()) {
        frames.push(f);
        if (pred(f)) return frames;
      }
      const chunk = new Uint8Array(65536);
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) return frames;
      parser.push(chunk.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A close frame's code and reason. */
export function closeOf(f: Frame): { code: number; reason: string } {
  return decodeClosePayload(f.payload);
}

/** A raw client: opens TCP to our server and sends `request` (default: a valid upgrade). */
export async function rawClient(
  port: number,
  request?: string,
): Promise<{ conn: Deno.Conn; head: string; rest: Uint8Array }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(
    request ??
      `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  const r = await readHeadRaw(conn);
  if (!r) {
    conn.close();
    throw new Error("no handshake answer");
  }
  return { conn, ...r };
}

/**
 * A fake WebSocket server on raw TCP: completes the handshake for one client, then hands the
 * socket to `behave`. `close()` stops it.
 */
export function fakeServer(
  behave: (conn: Deno.Conn, rest: Uint8Array) => Promise<void>,
  answer?: (key: string) => string,
): { port: number; done: Promise<void>; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch {
      return;
    } finally {
      try {
        listener.close();
      } catch { /* closed */ }
    }
    try {
      const r = await readHeadRaw(conn);
      if (!r) return;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(r.head)?.[1] ?? "";
      const text = answer
        ? answer(key)
        : "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`;
      if (text) await conn.write(enc.encode(text));
      await behave(conn, r.rest);
    } finally {
      try {
        conn.close();
      } catch { /* closed by behave */ }
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    done,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
    },
  };
}

/** Polls `cond` every 10 ms until true or `ms` passed. */
export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
