/**
 * `deno task bench broker [--quick]`: the two npm Redis clients under Deno, and our RedisBroker
 * on the chosen one, side by side against one local `redis-server` (started by the benchmark).
 *
 * - **rtt**: serial publish → subscribe round trips of 100 B: publish on one connection, wait
 *   until the subscriber connection receives it, repeat.
 * - **flood**: N publishes of 100 B issued without waiting; rate = N / (first publish → the
 *   subscriber has all N). ioredis twice: one `publish()` call per message (each writes to the
 *   socket) and one `pipeline()` per 1,000 messages (and the latter on ioredis 5.11 too, whose
 *   parser differs); node-redis batches the commands of one tick
 *   into one write on its own. RedisBroker three times: batched (its default), with
 *   `maxBatch: 1` (the same code, one write per publish), and `publishWithHistory` (the Lua
 *   script, stream capped at 1,000).
 *
 * All configurations stay connected for the whole run and take turns: each round runs each of
 * them once (rotated order), after one unrecorded warm-up round; reported rates are the medians
 * of the rounds.
 */
import { Redis as IoRedis } from "ioredis";
// Only this comparison uses node-redis and ioredis 5; the import map holds the broker's client.
// deno-lint-ignore no-import-prefix
import { Redis as IoRedis5 } from "npm:ioredis@5.11.1";
// deno-lint-ignore no-import-prefix
import { createClient } from "npm:redis@^6.4.0";
import { RedisBroker } from "../src/server/cluster/redis_broker.ts";
import { startRedisServer } from "../src/testing/redis_server.ts";
import { median, type Row, writeReport } from "./lib/report.ts";

const PAYLOAD = new Uint8Array(100).fill(0x61);

/** One client library behind the same three operations. */
interface Pair {
  /** Calls `onMessage` for every message the subscriber connection receives. */
  listen(onMessage: () => void): Promise<void>;
  publish(): Promise<unknown>;
  /** Publishes `n` messages without waiting, in this library's fastest way. */
  flood?(n: number): Promise<unknown>;
  close(): Promise<void>;
}

function ioredisPair(
  url: string,
  channel: string,
  pipelined: boolean,
  Client: typeof IoRedis = IoRedis,
): Pair {
  const pub = new Client(url);
  const sub = new Client(url);
  const buf = Buffer.from(PAYLOAD);
  return {
    async listen(onMessage) {
      sub.on("messageBuffer", onMessage);
      await sub.subscribe(channel);
    },
    publish: () => pub.publish(channel, buf),
    flood: pipelined
      ? async (n) => {
        const batches: Promise<unknown>[] = [];
        for (let i = 0; i < n; i += 1000) {
          const p = pub.pipeline();
          for (let j = i; j < Math.min(n, i + 1000); j++) p.publish(channel, buf);
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

function nodeRedisPair(url: string, channel: string): Pair {
  const pub = createClient({ url });
  const sub = createClient({ url });
  const buf = Buffer.from(PAYLOAD);
  return {
    async listen(onMessage) {
      await Promise.all([pub.connect(), sub.connect()]);
      await sub.subscribe(channel, onMessage, true);
    },
    publish: () => pub.publish(channel, buf),
    async close() {
      await Promise.all([pub.close(), sub.close()]);
    },
  };
}

function brokerPair(
  url: string,
  channel: string,
  mode: "batched" | "unbatched" | "history",
): Pair {
  let pub: RedisBroker | undefined;
  let sub: RedisBroker | undefined;
  const history = { size: 1000, ttlMs: 60_000 };
  return {
    async listen(onMessage) {
      pub = await RedisBroker.connect({ url, maxBatch: mode === "unbatched" ? 1 : undefined });
      sub = await RedisBroker.connect({ url });
      await sub.subscribe(channel, onMessage);
    },
    publish: () =>
      mode === "history"
        ? pub!.publishWithHistory(channel, PAYLOAD, history)
        : pub!.publish(channel, PAYLOAD),
    async close() {
      await Promise.all([pub?.close(), sub?.close()]);
    },
  };
}

/** A pair, listening, that can time round trips and floods repeatedly. */
interface Probe {
  /** Milliseconds for `n` serial round trips. */
  rtt(n: number): Promise<number>;
  /** Milliseconds from the first of `n` unawaited publishes until all `n` arrived. */
  flood(n: number): Promise<number>;
  close(): Promise<void>;
}

async function probe(pair: Pair): Promise<Probe> {
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
  return {
    async rtt(n) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const got = until(received + 1);
        await pair.publish();
        await got;
      }
      return performance.now() - t0;
    },
    async flood(n) {
      const t0 = performance.now();
      const all = until(received + n);
      if (pair.flood) {
        await pair.flood(n);
      } else {
        const pending: Promise<unknown>[] = [];
        for (let i = 0; i < n; i++) pending.push(pair.publish());
        await Promise.all(pending);
      }
      await all;
      return performance.now() - t0;
    },
    close: () => pair.close(),
  };
}

/** Runs the comparison and writes `bench/results/broker.*`. */
export async function main(flags: string[]): Promise<void> {
  const quick = flags.includes("--quick");
  const rounds = quick ? 5 : 15;
  const rttN = quick ? 500 : 2_000;
  const floodN = quick ? 5_000 : 20_000;
  const redis = await startRedisServer();
  // Each configuration on its own channel: they are all subscribed at once.
  const makers: [string, (url: string, channel: string) => Pair][] = [
    ["ioredis", (url, ch) => ioredisPair(url, ch, false)],
    ["ioredis pipeline()", (url, ch) => ioredisPair(url, ch, true)],
    [
      "ioredis 5.11 pipeline()",
      (url, ch) => ioredisPair(url, ch, true, IoRedis5 as unknown as typeof IoRedis),
    ],
    ["node-redis", (url, ch) => nodeRedisPair(url, ch)],
    ["RedisBroker", (url, ch) => brokerPair(url, ch, "batched")],
    ["RedisBroker maxBatch 1", (url, ch) => brokerPair(url, ch, "unbatched")],
    ["RedisBroker publishWithHistory", (url, ch) => brokerPair(url, ch, "history")],
  ];
  // Round trips do not depend on the write batching: only these are timed for them.
  const rttRows = [
    "ioredis",
    "ioredis 5.11 pipeline()",
    "node-redis",
    "RedisBroker",
    "RedisBroker publishWithHistory",
  ];
  const rtt = new Map<string, number[]>();
  const flood = new Map<string, number[]>();
  const probes: [string, Probe][] = [];
  try {
    for (const [i, [name, make]] of makers.entries()) {
      probes.push([name, await probe(make(redis.url, `bench${i}`))]);
    }
    // Round -1 warms the JIT up and is not recorded. Every round runs each configuration once,
    // in a rotated order, so a slow spell of the shared machine spreads over all of them.
    for (let round = -1; round < rounds; round++) {
      for (let k = 0; k < probes.length; k++) {
        const [name, p] = probes[(k + Math.max(0, round)) % probes.length];
        const rttMs = rttRows.includes(name) ? await p.rtt(rttN) : 0;
        const floodMs = await p.flood(floodN);
        if (round < 0) continue;
        if (rttMs) rtt.set(name, [...(rtt.get(name) ?? []), rttN / (rttMs / 1000)]);
        flood.set(name, [...(flood.get(name) ?? []), floodN / (floodMs / 1000)]);
      }
    }
  } finally {
    for (const [, p] of probes) await p.close();
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
      flood_ioredis6_vs_ioredis5_pipeline: rate("flood", "ioredis pipeline()") /
        rate("flood", "ioredis 5.11 pipeline()"),
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
      rounds,
      rttN,
      floodN,
      method:
        "publisher and subscriber are two connections of the same library in this process; rtt = serial publish then wait for the subscriber; flood = N publishes issued without waiting, timed until the subscriber has all N; all configurations connected at once, taking turns round by round (rotated order, one warm-up round not recorded); medians of the rounds",
    },
  );
}

if (import.meta.main) await main(Deno.args);
