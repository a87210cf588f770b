// Shared helpers of the pool tests: a recording DispatchHost and a bounded wait.
import type { DispatchHost } from "../../src/engine/dispatcher.ts";
import { ConnectionClosedError, type OutgoingData } from "../../src/transport/types.ts";
import { PoolDispatcher, type PoolOptions } from "../../src/pool/pool.ts";

export const ECHO = new URL("./fixtures/echo.ts", import.meta.url);

export class RecordingHost implements DispatchHost {
  readonly sessionId: string;
  readonly sent: OutgoingData[] = [];
  readonly errors: { error: unknown; workerId: string }[] = [];
  restarts = 0;
  exits = 0;
  ended = false;
  constructor(sessionId: string = crypto.randomUUID()) {
    this.sessionId = sessionId;
  }
  send(data: OutgoingData): Promise<void> {
    if (this.ended) return Promise.reject(new ConnectionClosedError());
    this.sent.push(data);
    return Promise.resolve();
  }
  restart(): void {
    this.restarts++;
  }
  exit(): void {
    this.exits++;
  }
  reportError(error: unknown, info: { workerId: string }): void {
    this.errors.push({ error, workerId: info.workerId });
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
  pool: PoolDispatcher,
  messages: Iterable<Parameters<PoolDispatcher["push"]>[0]>,
): Promise<void> {
  for (const m of messages) {
    for (let i = 0; !pool.push(m); i++) {
      if (i > 100_000) throw new Error("push stuck");
      await pool.writable();
    }
  }
}

export async function withPool(
  options: Partial<PoolOptions>,
  fn: (pool: PoolDispatcher, host: RecordingHost) => Promise<void>,
): Promise<void> {
  const pool = new PoolDispatcher({ module: ECHO, count: 2, ...options });
  try {
    await pool.init();
    const host = new RecordingHost();
    pool.attach(host);
    await fn(pool, host);
  } finally {
    await pool.close(2000);
  }
}

export const text = (data: string) => ({ type: "text" as const, data });
export const SAN = { sanitizeOps: true, sanitizeResources: true } as const;
