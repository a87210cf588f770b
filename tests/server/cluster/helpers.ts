/** Helpers for the broker tests: a real redis-server per test, skipped loudly when missing. */
import type { Broker, BrokerEvent, BrokerMessage } from "../../../src/server/cluster/broker.ts";
import { RedisBroker, type RedisBrokerOptions } from "../../../src/server/cluster/redis_broker.ts";
import {
  type RedisServer,
  redisServerInstalled,
  type RedisServerOptions,
  startRedisServer,
} from "../../../src/testing/redis_server.ts";

/** False on a machine without redis-server: the tests are then registered as ignored. */
export const HAVE_REDIS = await redisServerInstalled();
if (!HAVE_REDIS) {
  console.warn(
    "\n*** SKIPPED: the Redis broker tests need redis-server (Debian package redis-server; " +
      "apt-get install redis-server). It is not on PATH. ***\n",
  );
}

export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** Fast reconnects, so a restart test does not wait on back-off. */
export const FAST: RedisBrokerOptions = {
  reconnectMinDelayMs: 20,
  reconnectMaxDelayMs: 100,
  connectTimeoutMs: 5000,
};

/** Registers a test that gets a fresh redis-server, stopped whatever happens. */
export function redisTest(
  name: string,
  fn: (redis: RedisServer) => Promise<void>,
  options: RedisServerOptions = {},
): void {
  Deno.test({
    name,
    ignore: !HAVE_REDIS,
    sanitizeOps: true,
    sanitizeResources: true,
    async fn() {
      const redis = await startRedisServer(options);
      try {
        await fn(redis);
      } finally {
        await redis.stop();
      }
    },
  });
}

/** Connects a broker; `using`-style cleanup is done by the caller with `close()`. */
export function connectBroker(
  redis: RedisServer,
  options: RedisBrokerOptions = {},
): Promise<RedisBroker> {
  return RedisBroker.connect({ url: redis.url, ...FAST, ...options });
}

/** Polls `pred` every 10 ms until it holds, or fails after `ms`. */
export async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Collects a broker's events. */
export function recordEvents(broker: Broker): BrokerEvent[] {
  const events: BrokerEvent[] = [];
  broker.on((e) => events.push(e));
  return events;
}

/** A handler that keeps every message. */
export function collector(): { messages: BrokerMessage[]; handler: (m: BrokerMessage) => void } {
  const messages: BrokerMessage[] = [];
  return { messages, handler: (m) => messages.push(m) };
}

/** 4-byte big-endian sequence number followed by a tag, so content can be checked. */
export function seqPayload(seq: number, tag: number): Uint8Array {
  const b = new Uint8Array(100);
  new DataView(b.buffer).setUint32(0, seq);
  b[4] = tag;
  b.fill(seq & 0xff, 5);
  return b;
}

/** Reads back {@linkcode seqPayload}, checking its filler; throws on corruption. */
export function readSeq(p: Uint8Array): { seq: number; tag: number } {
  const seq = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
  for (let i = 5; i < p.length; i++) {
    if (p[i] !== (seq & 0xff)) throw new Error(`payload of ${seq} corrupted at byte ${i}`);
  }
  return { seq, tag: p[4] };
}
