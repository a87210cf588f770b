/**
 * `deno task bench broker [--quick]`: the two npm Redis clients under Deno, and our RedisBroker
 * on the chosen one, side by side against one local `redis-server` (started by the benchmark).
 *
 * - **rtt**: serial publish → subscribe round trips of 100 B: publish on one connection, wait
 *   until the subscriber connection receives it, repeat.
 * - **flood**: N publishes of 100 B issued without waiting; rate = N / (first publish → the
 *   subscriber has all N). ioredis twice: one `publish()` call per message (each writes to the
 *   socket) and one `pipeline()` per 1,000 messages; node-redis batches the commands of one tick
 *   into one write on its own. RedisBroker three times: batched (its default), with
 *   `maxBatch: 1` (the same code, one write per publish), and `publishWithHistory` (the Lua
 *   script, stream capped at 1,000).
 *
 * Every configuration runs once per set, sets back to back; reported rates are set medians.
 */
import { Redis as IoRedis } from "ioredis";
// Only this comparison uses node-redis; the import map holds the client the broker uses.
// deno-lint-ignore no-import-prefix
import { createClient } from "npm:redis@^6.4.0";
import { RedisBroker } from "../src/server/cluster/redis_broker.ts";
import { startRedisServer } from "../src/testing/redis_server.ts";
import { median, type Row, writeReport } from "./lib/report.ts";

const PAYLOAD = new Uint8Array(100).fill(0x61);
const CHANNEL = "bench";

/** One client library behind the same three operations. */
interface Pair {
  /** Calls `onMessage` for every message the subscriber connection receives. */
  listen(onMessage: () => void): Promise<void>;
  publish(): Promise<unknown>;
  /** Publishes `n` messages without waiting, in this library's fastest way. */
  flood?(n: number): Promise<unknown>;
  close(): Promise<void>;
}

function ioredisPair(url: string, pipelined: boolean): Pair {
  const pub = new IoRedis(url);
  const sub = new IoRedis(url);
  const buf = Buffer.from(PAYLOAD);
  return {
    async listen(onMessage) {
      sub.on("messageBuffer", onMessage);
      await sub.subscribe(CHANNEL);
    },
    publish: () => pub.publish(CHANNEL, buf),
    flood: pipelined
      ? async (n) => {
        const batches: Promise<unknown>[] = [];
        for (let i = 0; i < n; i += 1000) {
          const p = pub.pipeline();
          for (let j = i; j < Math.min(n, i + 1000); j++) p.publish(CHANNEL, buf);
          batches.push(p.exec());
        }
        await Promise.all(batches);
      }
      : undefined,
    async close() {
      await Promise.all([pub.quit(), sub.quit()]);
    },
  };
}

function nodeRedisPair(url: string): Pair {
  const pub = createClient({ url });
  const sub = createClient({ url });
  const buf = Buffer.from(PAYLOAD);
  return {
    async listen(onMessage) {
      await Promise.all([pub.connect(), sub.connect()]);
      await sub.subscribe(CHANNEL, onMessage, true);
    },
    publish: () => pub.publish(CHANNEL, buf),
    async close() {
      await Promise.all([pub.close(), sub.close()]);
    },
  };
}

function brokerPair(url: string, mode: "batched" | "unbatched" | "history"): Pair {
  let pub: RedisBroker | undefined;
  let sub: RedisBroker | undefined;
  const history = { size: 1000, ttlMs: 60_000 };
  return {
    async listen(onMessage) {
      pub = await RedisBroker.connect({ url, maxBatch: mode === "unbatched" ? 1 : undefined });
      sub = await RedisBroker.connect({ url });
      await sub.subscribe(CHANNEL, onMessage);
    },
    publish: () =>
      mode === "history"
        ? pub!.publishWithHistory(CHANNEL, PAYLOAD, history)
        : pub!.publish(CHANNEL, PAYLOAD),
    async close() {
      await Promise.all([pub?.close(), sub?.close()]);
    },
  };
}

async function measure(
  pair: Pair,
  rttN: number,
  floodN: number,
): Promise<{ rtt: number; flood: number }> {
  let received = 0;
  let wake: (() => void) | undefined;
  let want = 0;
  await pair.listen(() => {
    if (++received >= want) wake?.();
  });
  const until = (n: number) =>
    new Promise<void>((resolve) => {
      want = n;
      wake = resolve;
      if (received >= n) resolve();
    });
  const t0 = performance.now();
  for (let i = 0; i < rttN; i++) {
    const got = until(received + 1);
    await pair.publish();
    await got;
  }
  const rtt = rttN / ((performance.now() - t0) / 1000);
  const base = received;
  const t1 = performance.now();
  const all = until(base + floodN);
  if (pair.flood) {
    await pair.flood(floodN);
  } else {
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < floodN; i++) pending.push(pair.publish());
    await Promise.all(pending);
  }
  await all;
  const flood = floodN / ((performance.now() - t1) / 1000);
  await pair.close();
  return { rtt, flood };
}

/** Runs the comparison and writes `bench/results/broker.*`. */
export async function main(flags: string[]): Promise<void> {
  const quick = flags.includes("--quick");
  const sets = quick ? 3 : 5;
  const rttN = quick ? 2_000 : 10_000;
  const floodN = quick ? 20_000 : 100_000;
  const redis = await startRedisServer();
  const makers: [string, (url: string) => Pair][] = [
    ["ioredis", (url) => ioredisPair(url, false)],
    ["ioredis pipeline()", (url) => ioredisPair(url, true)],
    ["node-redis", (url) => nodeRedisPair(url)],
    ["RedisBroker", (url) => brokerPair(url, "batched")],
    ["RedisBroker maxBatch 1", (url) => brokerPair(url, "unbatched")],
    ["RedisBroker publishWithHistory", (url) => brokerPair(url, "history")],
  ];
  // Round trips do not depend on the write batching: only these are timed for them.
  const rttRows = ["ioredis", "node-redis", "RedisBroker", "RedisBroker publishWithHistory"];
  const rtt = new Map<string, number[]>();
  const flood = new Map<string, number[]>();
  try {
    for (let s = 0; s < sets; s++) {
      for (const [name, make] of makers) {
        const r = await measure(make(redis.url), rttRows.includes(name) ? rttN : 0, floodN);
        rtt.set(name, [...(rtt.get(name) ?? []), r.rtt]);
        flood.set(name, [...(flood.get(name) ?? []), r.flood]);
      }
    }
  } finally {
    await redis.stop();
  }
  const rows: Row[] = [];
  for (const [name] of makers) {
    if (rttRows.includes(name)) {
      rows.push({
        group: "publish→subscribe round trips, 100 B",
        name,
        rate: median(rtt.get(name)!),
      });
    }
    rows.push({
      group: `flood of ${floodN} publishes, 100 B`,
      name,
      rate: median(flood.get(name)!),
    });
  }
  const rate = (group: string, name: string) =>
    rows.find((r) => r.group.startsWith(group) && r.name === name)!.rate;
  await writeReport(
    "broker",
    "Redis under Deno: ioredis vs node-redis, and RedisBroker (one local redis-server)",
    rows,
    {
      rtt_ioredis_vs_node_redis: rate("publish", "ioredis") / rate("publish", "node-redis"),
      flood_ioredis_vs_node_redis: rate("flood", "ioredis") / rate("flood", "node-redis"),
      flood_ioredis_pipeline_vs_node_redis: rate("flood", "ioredis pipeline()") /
        rate("flood", "node-redis"),
      flood_broker_batched_vs_unbatched: rate("flood", "RedisBroker") /
        rate("flood", "RedisBroker maxBatch 1"),
      flood_broker_batched_vs_serial_rtt: rate("flood", "RedisBroker") /
        rate("publish", "RedisBroker"),
      flood_broker_vs_ioredis_pipeline: rate("flood", "RedisBroker") /
        rate("flood", "ioredis pipeline()"),
      flood_history_vs_plain: rate("flood", "RedisBroker publishWithHistory") /
        rate("flood", "RedisBroker"),
    },
    {
      quick,
      sets,
      rttN,
      floodN,
      method:
        "publisher and subscriber are two connections of the same library in this process; rtt = serial publish then wait for the subscriber; flood = N publishes issued without waiting, timed until the subscriber has all N; medians of back-to-back sets",
    },
  );
}

if (import.meta.main) await main(Deno.args);
