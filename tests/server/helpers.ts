// Clients and waits for the server tests.
import { deferred } from "../../src/util/async.ts";

export const SAN = { sanitizeOps: true, sanitizeResources: true } as const;

/** Waits (bounded: 10 s, 2000 turns) until `cond` holds; throws with `what` otherwise. */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (let i = 0; i < 2000 && Date.now() < end; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

/** A Deno `WebSocket` client that records what it receives. */
export interface Client {
  ws: WebSocket;
  received: string[];
  closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
  /** Resolves with the next message not yet taken by `next` (bounded). */
  next(): Promise<string>;
  close(code?: number, reason?: string): Promise<void>;
}

/** Opens a client; rejects if the handshake fails (with the HTTP status when there is one). */
export function client(
  url: string,
  options: { headers?: Record<string, string>; protocols?: string[]; path?: string } = {},
): Promise<Client> {
  const ws = new WebSocket(new URL(options.path ?? "/", url).href, {
    headers: options.headers,
    protocols: options.protocols,
  });
  ws.binaryType = "arraybuffer";
  const received: string[] = [];
  let taken = 0;
  const closed = deferred<{ code: number; reason: string; wasClean: boolean }>();
  let wake: (() => void) | undefined;
  ws.onmessage = (e) => {
    received.push(
      typeof e.data === "string" ? e.data : `bin:${(e.data as ArrayBuffer).byteLength}`,
    );
    wake?.();
  };
  ws.onclose = (e) => {
    closed.resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
    wake?.();
  };
  const c: Client = {
    ws,
    received,
    closed: closed.promise,
    async next() {
      for (let i = 0; i < 1000 && taken >= received.length; i++) {
        if (closed.settled) throw new Error(`closed before a message came (${received.length})`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, 10);
        });
        clearTimeout(timer);
      }
      if (taken >= received.length) throw new Error("no message came");
      return received[taken++];
    },
    async close(code = 1000, reason = "") {
      ws.close(code, reason);
      await closed.promise;
    },
  };
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(c);
    ws.onerror = (e) => {
      if (ws.readyState !== WebSocket.OPEN) reject(new Error((e as ErrorEvent).message));
    };
  });
}

/** Sends a raw HTTP request and returns the status code of the answer. */
export async function rawStatus(port: number, request: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    const buf = new Uint8Array(4096);
    let text = "";
    for (let i = 0; i < 100 && !text.includes("\r\n"); i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return Number(text.split(" ")[1]);
  } finally {
    conn.close();
  }
}

/** An upgrade request, as raw bytes' text. */
export function upgradeRequest(port: number, headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  return `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}
