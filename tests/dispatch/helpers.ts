// Shared helpers of the dispatch tests: a recording ConnectionHost, bounded waits, a pool per test.
import type { ConnectionHost, DispatchConnection } from "../../src/dispatch/types.ts";
import {
  ConnectionClosedError,
  type OutgoingData,
  type WireMessage,
} from "../../src/transport/types.ts";
import { PoolDispatcher, type PoolOptions, type PoolSetup } from "../../src/dispatch/pool.ts";

export const ECHO = new URL("./fixtures/echo.ts", import.meta.url);

export class RecordingHost implements ConnectionHost {
  readonly id: string;
  readonly sent: OutgoingData[] = [];
  readonly errors: { error: unknown; workerId: string }[] = [];
  readonly calls: { op: string; args: readonly unknown[] }[] = [];
  endedWith?: { dropped: number };
  closed = false;
  constructor(id: string = crypto.randomUUID()) {
    this.id = id;
  }
  send(data: OutgoingData): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionClosedError());
    this.sent.push(data);
    return Promise.resolve();
  }
  call(op: string, args: readonly unknown[]): unknown {
    this.calls.push({ op, args });
    if (op === "fail") throw new RangeError(`failed ${args[0]}`);
    return `did ${op}(${args.join(",")})`;
  }
  reportError(error: unknown, info: { workerId: string }): void {
    this.errors.push({ error, workerId: info.workerId });
  }
  ended(info: { dropped: number }): void {
    this.endedWith = info;
  }
  texts(): string[] {
    return this.sent.filter((d): d is string => typeof d === "string");
  }
}

/** Waits (bounded: 10 s, 2000 turns) until `cond` holds; throws with `what` otherwise. */
export async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (let i = 0; i < 2000 && Date.now() < end; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

/** Pushes with back-pressure (bounded retries). */
export async function pushAll(
  conn: DispatchConnection,
  messages: Iterable<WireMessage>,
): Promise<void> {
  for (const m of messages) {
    for (let i = 0; !conn.push(m); i++) {
      if (i > 100_000) throw new Error("push stuck");
      await conn.writable();
    }
  }
}

/** A pool of `count` ECHO workers with one open connection, closed at the end. */
export async function withPool(
  options: Partial<PoolOptions>,
  fn: (pool: PoolDispatcher, host: RecordingHost, conn: DispatchConnection) => Promise<void>,
  setup: PoolSetup = {},
): Promise<void> {
  const pool = new PoolDispatcher({ module: ECHO, count: 2, ...options }, setup);
  try {
    await pool.init();
    const host = new RecordingHost();
    await fn(pool, host, pool.open(host));
  } finally {
    await pool.close(2000);
  }
}

export const text = (data: string) => ({ type: "text" as const, data });
export const SAN = { sanitizeOps: true, sanitizeResources: true } as const;
