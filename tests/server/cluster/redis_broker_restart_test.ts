import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../../../src/server/cluster/broker.ts";
import {
  collector,
  connectBroker,
  readSeq,
  recordEvents,
  redisTest,
  seqPayload,
  until,
} from "./helpers.ts";

type Outcome = { kind: "resolved"; receivers: number } | { kind: "rejected"; error: unknown };

redisTest(
  "redis broker: Redis restarted mid-stream: down/up events, rejections while down, resubscribed, nothing lost silently",
  async (redis) => {
    const pub = await connectBroker(redis);
    const sub = await connectBroker(redis);
    try {
      const pubEvents = recordEvents(pub);
      const subEvents = recordEvents(sub);
      const got = collector();
      await sub.subscribe("stream", got.handler);
      await sub.subscribe("other", () => {});

      const outcomes: Outcome[] = [];
      let seq = 0;
      // Publishes in waves of 20 (unawaited within a wave, so they are batched) until `stop`.
      let stop = false;
      const publisher = (async () => {
        for (let wave = 0; wave < 5000 && !stop; wave++) {
          const wavePromises: Promise<void>[] = [];
          for (let i = 0; i < 20; i++) {
            const n = seq++;
            wavePromises.push(
              pub.publish("stream", seqPayload(n, 0)).then(
                (receivers) => void (outcomes[n] = { kind: "resolved", receivers }),
                (error) => void (outcomes[n] = { kind: "rejected", error }),
              ),
            );
          }
          await Promise.all(wavePromises);
          await new Promise((r) => setTimeout(r, 1));
        }
      })();

      await until(() => got.messages.length >= 200, 10_000, "traffic before the crash");
      await redis.crash();
      await until(
        () => pub.state === "down" && sub.state === "down",
        10_000,
        "both brokers to see the loss",
      );
      const downAt = seq;
      await until(() => seq >= downAt + 100, 10_000, "publishes while Redis is down");
      await redis.restart();
      await until(() => pub.state === "up" && sub.state === "up", 15_000, "both brokers back up");
      const upAt = seq;
      await until(() => seq >= upAt + 200, 10_000, "publishes after the restart");
      stop = true;
      await publisher;

      // Every publish settled one way or the other.
      assert.equal(outcomes.filter(Boolean).length, seq, "every publish settled");
      for (const o of outcomes) {
        if (o.kind === "rejected") {
          assert.ok(o.error instanceof BrokerUnavailableError, String(o.error));
        }
      }
      // Publishes made while both knew Redis was down were rejected.
      for (let n = downAt; n < downAt + 100; n++) {
        assert.equal(outcomes[n].kind, "rejected", `publish ${n} while down must reject`);
      }
      // Delivered at most once, in publish order; everything acknowledged with a receiver arrived.
      await until(
        () => {
          const acked = outcomes.filter((o) => o.kind === "resolved" && o.receivers > 0).length;
          return got.messages.length >= acked;
        },
        10_000,
        "acknowledged messages to arrive",
      );
      const delivered = new Set<number>();
      let last = -1;
      for (const m of got.messages) {
        const { seq: n } = readSeq(m.payload);
        assert.ok(n > last, `in order, no duplicate: ${n} after ${last}`);
        last = n;
        delivered.add(n);
      }
      for (let n = 0; n < seq; n++) {
        const o = outcomes[n];
        if (o.kind === "resolved" && o.receivers > 0) {
          assert.ok(delivered.has(n), `publish ${n} was acknowledged by a subscriber but lost`);
        }
        if (o.kind === "resolved" && o.receivers === 0) {
          assert.ok(!delivered.has(n), `publish ${n} reported 0 receivers yet arrived`);
        }
      }
      // After the restart the subscription works again, through the automatic resubscription.
      assert.ok(outcomes.slice(upAt).some((o) => o.kind === "resolved" && o.receivers === 1));
      assert.ok([...delivered].some((n) => n >= upAt), "messages after the restart arrived");

      for (const events of [pubEvents, subEvents]) {
        const kinds = events.filter((e) => e.type !== "error").map((e) => e.type);
        assert.deepEqual(kinds, ["down", "up"], "one down, one up");
      }
      const up = subEvents.find((e) => e.type === "up");
      assert.deepEqual(up, { type: "up", resubscribed: 2 });
      const down = pubEvents.find((e) => e.type === "down");
      assert.ok(down?.type === "down" && down.error instanceof BrokerUnavailableError);
    } finally {
      await Promise.all([pub.close(), sub.close()]);
    }
  },
);

redisTest(
  "redis broker: operations reject while down; subscribe then works once back",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      await redis.crash();
      await until(() => broker.state === "down", 10_000, "the loss");
      await assert.rejects(broker.publish("c", new Uint8Array(1)), BrokerUnavailableError);
      await assert.rejects(broker.subscribe("c", () => {}), BrokerUnavailableError);
      await assert.rejects(broker.history("c"), BrokerUnavailableError);
      await assert.rejects(broker.setAlive("g", "m", "v", 1000), BrokerUnavailableError);
      await broker.unsubscribe("c", () => {}); // never rejects for a lost connection
      await redis.restart();
      await until(() => broker.state === "up", 15_000, "the broker back up");
      const got = collector();
      await broker.subscribe("c", got.handler);
      assert.equal(await broker.publish("c", new Uint8Array([7])), 1);
      await until(() => got.messages.length === 1, 5000, "the message");
    } finally {
      await broker.close();
    }
  },
);

redisTest("redis broker: close while Redis is down leaves nothing running", async (redis) => {
  const broker = await connectBroker(redis, { reconnectMinDelayMs: 200, reconnectMaxDelayMs: 200 });
  await redis.crash();
  await until(() => broker.state === "down", 10_000, "the loss");
  await broker.close();
  assert.equal(broker.state, "closed");
});

redisTest(
  "redis broker: a lost subscriber connection alone is a down and an up, resubscribed",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const events = recordEvents(broker);
      const got = collector();
      await broker.subscribe("a", got.handler);
      await broker.subscribe("b", got.handler);
      // Redis drops every connection in subscriber mode: only the broker's second connection.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: redis.port });
      await conn.write(new TextEncoder().encode("CLIENT KILL TYPE pubsub\r\n"));
      await conn.read(new Uint8Array(64));
      conn.close();
      await until(() => events.some((e) => e.type === "up"), 15_000, "the resubscription");
      assert.deepEqual(events.map((e) => e.type), ["down", "up"]);
      assert.deepEqual(events[1], { type: "up", resubscribed: 2 });
      assert.equal(await broker.publish("a", new Uint8Array([1])), 1);
      assert.equal(await broker.publish("b", new Uint8Array([2])), 1);
      await until(() => got.messages.length === 2, 5000, "both messages");
    } finally {
      await broker.close();
    }
  },
);

redisTest(
  "redis broker: a hung Redis is a down after commandTimeoutMs, and an up once it answers",
  async (redis) => {
    const broker = await connectBroker(redis, { commandTimeoutMs: 300 });
    try {
      const events = recordEvents(broker);
      assert.equal(await broker.publish("c", new Uint8Array([1])), 0);
      redis.pause();
      const hung = broker.publish("c", new Uint8Array([2]));
      await assert.rejects(hung, BrokerUnavailableError);
      assert.equal(broker.state, "down");
      assert.equal(events[0]?.type, "down");
      assert.match(events[0]?.type === "down" ? events[0].error.message : "", /did not answer/);
      await assert.rejects(broker.publish("c", new Uint8Array([3])), BrokerUnavailableError);
      redis.resume();
      await until(() => broker.state === "up", 15_000, "the broker back up");
      assert.equal(await broker.publish("c", new Uint8Array([4])), 0);
    } finally {
      redis.resume();
      await broker.close();
    }
  },
);
