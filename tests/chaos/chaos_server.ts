/**
 * A WebSocket server on raw TCP (127.0.0.1) that misbehaves on a schedule, for the chaos suite.
 *
 * Each connection gets `resume <n>` first (`n`: the last client sequence number the server
 * recorded), then a stream `s:1`, `s:2`, … numbered across connections. The client's `c:<n>`
 * messages are recorded in arrival order. A new connection supersedes the older ones: they are
 * closed and their readers finish before `resume` is computed, so `n` is final.
 *
 * About every second (jittered) one fault hits:
 * - `kill`: the listener and every connection close without a close frame; it listens again on
 *   the same port 100–300 ms later (a server killed and restarted);
 * - `drop`: the connection's TCP closes without a close frame;
 * - `stall`: half a frame is written, then nothing (no pong either) until the client gives up or
 *   the next fault drops it;
 * - `garbage`: bytes no client may accept (reserved bits and opcode);
 * - `close`: a close frame with the next code of {@linkcode CLOSE_CODES}, valid or not.
 *
 * @module
 */

import {
  acceptUpgrade,
  ClientFrameReader,
  closeFrame,
  frame,
  frameHeader,
  OP,
  textOf,
  writeAll,
} from "./raw_ws.ts";

/** Every close code the server sends in turn: the valid ones, then some a client must refuse. */
export const CLOSE_CODES: readonly number[] = [
  1000,
  1001,
  1002,
  1003,
  1007,
  1008,
  1009,
  1010,
  1011,
  1012,
  1013,
  1014,
  3000,
  3999,
  4000,
  4999,
  // Not sendable (RFC 6455 §7.4): the client must treat them as a protocol error.
  0,
  999,
  1004,
  1005,
  1006,
  1015,
  2999,
  5000,
];

/** The faults, in the order the schedule cycles through them. */
export const FAULTS = ["kill", "drop", "stall", "garbage", "close"] as const;
/** One kind of fault. */
export type Fault = typeof FAULTS[number];

/** Options of {@linkcode startChaosServer}. */
export interface ChaosServerOptions {
  /** Mean time between faults, in ms (each gap is uniform in ±30 %). */
  faultEveryMs: number;
  /** Time between two `s:` messages on a connection, in ms. */
  streamEveryMs: number;
  /** Index into {@linkcode CLOSE_CODES} of the first `close` fault (spreads codes over servers). */
  firstCode?: number;
  /** Randomness in [0, 1) for the schedule. */
  random: () => number;
}

/** A running chaos server. */
export interface ChaosServer {
  readonly url: string;
  /** `c:` sequence numbers recorded, in arrival order. */
  readonly received: number[];
  /** The last `s:` number written (or attempted). */
  readonly streamed: number;
  /** Connections upgraded. */
  readonly connections: number;
  /** Faults applied, by kind. */
  readonly faults: Record<Fault, number>;
  /** Close codes sent. */
  readonly codes: number[];
  /** Stops injecting faults and makes sure it listens: the network heals. */
  heal(): Promise<void>;
  /** Closes everything and waits for every loop to end. */
  close(): Promise<void>;
}

const GARBAGE = new Uint8Array([0x7f, 0xff, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03]);

class ServerConn {
  readonly conn: Deno.Conn;
  readonly life = new AbortController();
  /** Settles once the reader and the writer have both ended. */
  done: Promise<void> = Promise.resolve();
  #chain: Promise<void> = Promise.resolve();
  stalled = false;
  /** A close frame was sent: no data frame (nor a second close) may follow it. */
  closeSent = false;
  closed = false;
  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }
  /** Writes in order (never two writes at once), unless stalled or closed. */
  write(bytes: Uint8Array): Promise<void> {
    if (this.stalled || this.closed) return this.#chain;
    this.#chain = this.#chain.then(() => this.closed ? undefined : writeAll(this.conn, bytes))
      .catch(() => this.close());
    return this.#chain;
  }
  /** Writes what the stall leaves on the wire, then nothing more. */
  stall(partial: Uint8Array): void {
    void this.write(partial);
    this.stalled = true;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.life.abort();
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * Starts a chaos server on an ephemeral 127.0.0.1 port.
 *
 * @example
 * ```ts ignore
 * const server = startChaosServer({ faultEveryMs: 1000, streamEveryMs: 4, random: Math.random });
 * // ... point a client at server.url
 * await server.heal();
 * await server.close();
 * ```
 */
export function startChaosServer(options: ChaosServerOptions): ChaosServer {
  const received: number[] = [];
  const faults = { kill: 0, drop: 0, stall: 0, garbage: 0, close: 0 } as Record<Fault, number>;
  const codes: number[] = [];
  const conns = new Set<ServerConn>();
  const life = new AbortController();
  let listener: Deno.TcpListener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  let acceptLoop: Promise<void> = Promise.resolve();
  let streamed = 0;
  let connections = 0;
  let codeIndex = options.firstCode ?? 0;
  let faultIndex = 0;
  let healed = false;
  let restarting: Promise<void> = Promise.resolve();

  const serveConn = async (c: ServerConn) => {
    const upgraded = await acceptUpgrade(c.conn).catch(() => undefined);
    if (!upgraded || c.closed) return c.close();
    connections++;
    // Supersede the older connections: their readers finish before `resume` is computed.
    const older = [...conns].filter((o) => o !== c);
    for (const o of older) o.close();
    await Promise.all(older.map((o) => o.done));
    if (c.closed) return;
    await c.write(frame(OP.text, `resume ${received.at(-1) ?? 0}`));
    const reader = new ClientFrameReader();
    if (upgraded.rest.length) reader.push(upgraded.rest);
    const read = (async () => {
      const buf = new Uint8Array(64 * 1024);
      // Bounded by the socket: it ends at EOF or when the connection is closed.
      for (;;) {
        let n: number | null;
        try {
          n = await c.conn.read(buf);
        } catch {
          break;
        }
        if (n === null) break;
        reader.push(buf.slice(0, n));
        for (let f = reader.next(); f; f = reader.next()) {
          if (f.opcode === OP.text) {
            const t = textOf(f.payload);
            if (t.startsWith("c:")) received.push(Number(t.slice(2)));
          } else if (f.opcode === OP.ping) {
            void c.write(frame(OP.pong, f.payload));
          } else if (f.opcode === OP.close) {
            if (!c.closeSent) await c.write(frame(OP.close, f.payload.slice(0, 2)));
            c.close();
            return;
          }
        }
      }
      c.close();
    })();
    const stream = (async () => {
      // Bounded by the connection's life: it ends when the connection closes.
      while (!c.life.signal.aborted) {
        await pause(options.streamEveryMs, c.life.signal);
        if (c.life.signal.aborted || c.stalled || c.closeSent) continue;
        await c.write(frame(OP.text, `s:${++streamed}`));
      }
    })();
    await Promise.all([read, stream]);
  };

  const serve = (l: Deno.TcpListener) => {
    acceptLoop = (async () => {
      // Bounded by the listener: it ends when the listener is closed.
      for (;;) {
        let conn: Deno.TcpConn;
        try {
          conn = await l.accept();
        } catch {
          return;
        }
        conn.setNoDelay(true);
        const c = new ServerConn(conn);
        conns.add(c);
        c.done = serveConn(c).catch(() => c.close()).finally(() => conns.delete(c));
      }
    })();
  };
  serve(listener);

  const newest = () => [...conns].at(-1);
  const apply = async (fault: Fault) => {
    faults[fault]++;
    const c = newest();
    switch (fault) {
      case "kill": {
        listener?.close();
        listener = undefined;
        await acceptLoop;
        const all = [...conns];
        for (const o of all) o.close();
        await Promise.all(all.map((o) => o.done));
        const down = 100 + Math.floor(options.random() * 200);
        restarting = pause(down, life.signal).then(() => {
          if (!listener) serve(listener = Deno.listen({ hostname: "127.0.0.1", port }));
        });
        await restarting;
        break;
      }
      case "drop":
        c?.close();
        break;
      case "stall":
        if (c?.stalled) c.close(); // a stalled connection is dropped by the next fault
        else c?.stall(new Uint8Array([...frameHeader(OP.text, 100), ...new Uint8Array(50)]));
        break;
      case "garbage":
        if (c?.stalled) c.close();
        else void c?.write(GARBAGE);
        break;
      case "close": {
        if (c?.stalled) {
          c.close();
          break;
        }
        if (!c || c.closeSent) break;
        const code = CLOSE_CODES[codeIndex++ % CLOSE_CODES.length];
        codes.push(code);
        void c.write(closeFrame(code));
        c.closeSent = true;
        // A client that does not answer is dropped by a later fault.
        break;
      }
    }
  };

  const schedule = (async () => {
    // Bounded by the server's life: heal() or close() end it.
    while (!life.signal.aborted) {
      const gap = options.faultEveryMs * (0.7 + 0.6 * options.random());
      await pause(gap, life.signal);
      if (life.signal.aborted) break;
      await apply(FAULTS[faultIndex++ % FAULTS.length]);
    }
  })();

  return {
    url: `ws://127.0.0.1:${port}/`,
    received,
    get streamed() {
      return streamed;
    },
    get connections() {
      return connections;
    },
    faults,
    codes,
    async heal() {
      if (healed) return;
      healed = true;
      life.abort();
      await schedule;
      await restarting;
      if (!listener) serve(listener = Deno.listen({ hostname: "127.0.0.1", port }));
      for (const c of conns) if (c.stalled) c.close();
    },
    async close() {
      await this.heal();
      listener?.close();
      listener = undefined;
      await acceptLoop;
      const all = [...conns];
      for (const c of all) c.close();
      await Promise.all(all.map((c) => c.done));
    },
  };
}
