import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { BrokerClosedError, BrokerUnavailableError } from "../../../src/server/cluster/broker.ts";
import { RedisBroker } from "../../../src/server/cluster/redis_broker.ts";
import {
  collector,
  connectBroker,
  dec,
  enc,
  HAVE_REDIS,
  readSeq,
  recordEvents,
  redisTest,
  seqPayload,
  until,
} from "./helpers.ts";

redisTest(
  "redis broker: a publish on one instance reaches a subscriber on another",
  async (redis) => {
    const a = await connectBroker(redis);
    const b = await connectBroker(redis);
    const other = await connectBroker(redis, { prefix: "other:" });
    try {
      const got = collector();
      const foreign = collector();
      await b.subscribe("node.b", got.handler);
      await other.subscribe("node.b", foreign.handler);
      assert.equal(await a.publish("node.b", enc.encode("hello")), 1, "one subscription reached");
      assert.equal(
        await a.publish("nobody", enc.encode("lost")),
        0,
        "nobody listens: 0, not silence",
      );
      await until(() => got.messages.length === 1, 5000, "the message");
      assert.equal(got.messages[0].channel, "node.b");
      assert.equal(dec.decode(got.messages[0].payload), "hello");
      assert.equal(got.messages[0].position, undefined);
      assert.equal(foreign.messages.length, 0, "another prefix is another namespace");
      const empty = collector();
      await b.subscribe("empty", empty.handler);
      await a.publish("empty", new Uint8Array(0));
      await until(() => empty.messages.length === 1, 5000, "the empty message");
      assert.equal(empty.messages[0].payload.byteLength, 0);
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  },
);

redisTest(
  "redis broker: one broker subscription per channel, however many handlers",
  async (redis) => {
    const pub = await connectBroker(redis);
    const sub = await connectBroker(redis);
    try {
      const h1 = collector();
      const h2 = collector();
      await Promise.all([sub.subscribe("room", h1.handler), sub.subscribe("room", h2.handler)]);
      await sub.subscribe("room", h1.handler); // the same handler again: no effect
      assert.equal(
        await pub.publish("room", enc.encode("1")),
        1,
        "one subscription for 2 handlers",
      );
      await until(
        () => h1.messages.length === 1 && h2.messages.length === 1,
        5000,
        "both handlers",
      );
      await sub.unsubscribe("room", h1.handler);
      assert.equal(await pub.publish("room", enc.encode("2")), 1, "still subscribed for h2");
      await until(() => h2.messages.length === 2, 5000, "h2's second message");
      await sub.unsubscribe("room", h2.handler);
      assert.equal(await pub.publish("room", enc.encode("3")), 0, "the last handler unsubscribed");
      assert.equal(h1.messages.length, 1);
      assert.equal(h2.messages.length, 2);
      // Interleaved subscribe/unsubscribe calls settle to what the handler count says.
      const ops: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) {
        ops.push(sub.subscribe("churn", h1.handler), sub.unsubscribe("churn", h1.handler));
      }
      ops.push(sub.subscribe("churn", h2.handler));
      await Promise.all(ops);
      assert.equal(await pub.publish("churn", enc.encode("x")), 1);
      await sub.unsubscribe("churn", h2.handler);
      assert.equal(await pub.publish("churn", enc.encode("y")), 0);
    } finally {
      await Promise.all([pub.close(), sub.close()]);
    }
  },
);

redisTest(
  "redis broker: a flood arrives whole, once each, in order per publisher",
  async (redis) => {
    const PER_PUBLISHER = 5000;
    const p1 = await connectBroker(redis);
    const p2 = await connectBroker(redis, { maxBatch: 64 }); // also split into many pipelines
    const sub = await connectBroker(redis);
    try {
      const got = collector();
      await sub.subscribe("flood", got.handler);
      const sends: Promise<number>[] = [];
      for (let i = 0; i < PER_PUBLISHER; i++) {
        sends.push(p1.publish("flood", seqPayload(i, 1)), p2.publish("flood", seqPayload(i, 2)));
      }
      const receivers = await Promise.all(sends);
      assert.ok(receivers.every((n) => n === 1), "every publish reached the subscriber");
      await until(() => got.messages.length >= 2 * PER_PUBLISHER, 20_000, "the whole flood");
      const next = [0, 0, 0];
      for (const m of got.messages) {
        const { seq, tag } = readSeq(m.payload); // payload views are intact after the flood
        assert.equal(seq, next[tag], `publisher ${tag}: expected ${next[tag]}, got ${seq}`);
        next[tag]++;
      }
      assert.deepEqual(next.slice(1), [PER_PUBLISHER, PER_PUBLISHER]);
      assert.equal(got.messages.length, 2 * PER_PUBLISHER, "no duplicates");
    } finally {
      await Promise.all([p1.close(), p2.close(), sub.close()]);
    }
  },
);

redisTest(
  "redis broker: a 300 KB payload spans many reads, arrives intact, leaves no timer",
  async (redis) => {
    const a = await connectBroker(redis);
    const b = await connectBroker(redis);
    try {
      const got = collector();
      await b.subscribe("big", got.handler);
      const big = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff);
      const p = await a.publishWithHistory("big", big, { size: 10, ttlMs: 60_000 });
      assert.equal(await a.publish("big", big), 1);
      await until(() => got.messages.length === 2, 10_000, "both big messages");
      for (const m of got.messages) assert.ok(Buffer.compare(m.payload, big) === 0, "intact");
      const h = await b.history("big", { since: { offset: p.offset - 1, epoch: p.epoch } });
      assert.ok(h.recovered && Buffer.compare(h.messages[0].payload, big) === 0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },
);

redisTest(
  "redis broker: a throwing handler is reported and does not stop the others",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const events = recordEvents(broker);
      const ok = collector();
      await broker.subscribe("c", () => {
        throw new Error("handler bug");
      });
      await broker.subscribe("c", ok.handler);
      await broker.publish("c", enc.encode("x"));
      await until(() => ok.messages.length === 1, 5000, "the good handler");
      const errors = events.filter((e) => e.type === "error");
      assert.equal(errors.length, 1);
      assert.match(errors[0].type === "error" ? errors[0].error.message : "", /handler bug/);
    } finally {
      await broker.close();
    }
  },
);

redisTest("redis broker: close rejects what follows with BrokerClosedError", async (redis) => {
  const broker = await connectBroker(redis);
  const inFlight = broker.publish("c", enc.encode("sent before close"));
  await broker.close();
  assert.equal(await inFlight, 0, "what was queued before close was still written");
  await assert.rejects(broker.publish("c", enc.encode("late")), BrokerClosedError);
  await assert.rejects(broker.subscribe("c", () => {}), BrokerUnavailableError);
  await assert.rejects(broker.listAlive("g"), BrokerClosedError);
  assert.equal(broker.state, "closed");
  await broker.close(); // twice is fine
});

Deno.test({
  name: "redis broker: connect to a port where nothing listens rejects, leaving nothing running",
  ignore: !HAVE_REDIS,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    await assert.rejects(
      RedisBroker.connect({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 500 }),
      BrokerUnavailableError,
    );
  },
});
