import assert from "node:assert/strict";
import type { HistoryResult } from "../../../src/server/cluster/broker.ts";
import { collector, connectBroker, dec, enc, redisTest, until } from "./helpers.ts";

const KEEP = { size: 5, ttlMs: 60_000 };

function texts(r: HistoryResult): string[] {
  assert.ok(r.recovered, `expected a recovery, got ${JSON.stringify(r)}`);
  return r.messages.map((m) => `${m.offset}:${dec.decode(m.payload)}`);
}

redisTest(
  "redis broker history: offsets increase by one and subscribers see them",
  async (redis) => {
    const pub = await connectBroker(redis);
    const sub = await connectBroker(redis);
    try {
      const got = collector();
      await sub.subscribe("news", got.handler);
      const start = await sub.history("news");
      assert.ok(start.recovered);
      assert.equal(start.position.offset, 0, "nothing published yet");
      assert.ok(start.position.epoch.length > 0, "reading created the epoch");
      const positions = [];
      for (let i = 1; i <= 3; i++) {
        positions.push(await pub.publishWithHistory("news", enc.encode(`m${i}`), KEEP));
      }
      assert.deepEqual(positions.map((p) => p.offset), [1, 2, 3]);
      assert.ok(positions.every((p) => p.epoch === start.position.epoch && p.receivers === 1));
      await until(() => got.messages.length === 3, 5000, "three messages");
      assert.deepEqual(
        got.messages.map((m) => [m.position?.offset, m.position?.epoch, dec.decode(m.payload)]),
        [1, 2, 3].map((n) => [n, start.position.epoch, `m${n}`]),
      );
      // Batched history publishes keep their order and get consecutive offsets.
      const burst = await Promise.all(
        Array.from(
          { length: 50 },
          (_, i) => pub.publishWithHistory("news", enc.encode(`b${i}`), KEEP),
        ),
      );
      assert.deepEqual(
        burst.map((p) => p.offset),
        Array.from({ length: 50 }, (_, i) => 4 + i),
      );
    } finally {
      await Promise.all([pub.close(), sub.close()]);
    }
  },
);

redisTest(
  "redis broker history: recovery inside the window returns exactly the missed messages",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const opts = { size: 100, ttlMs: 60_000 };
      let seen = await broker.publishWithHistory("t", enc.encode("a"), opts);
      await broker.publishWithHistory("t", enc.encode("b"), opts);
      await broker.publishWithHistory("t", enc.encode("c"), opts);
      const r = await broker.history("t", { since: { offset: seen.offset, epoch: seen.epoch } });
      assert.deepEqual(texts(r), ["2:b", "3:c"]);
      assert.ok(r.recovered && !r.truncated);
      assert.deepEqual(r.position, { offset: 3, epoch: seen.epoch });
      // Up to date: recovered, nothing missed.
      const none = await broker.history("t", { since: r.position });
      assert.deepEqual(texts(none), []);
      // Paging with a limit.
      seen = { ...seen, offset: 0 };
      const page1 = await broker.history("t", { since: seen, limit: 2 });
      assert.deepEqual(texts(page1), ["1:a", "2:b"]);
      assert.ok(page1.recovered && page1.truncated, "limit cut the answer");
      const page2 = await broker.history("t", {
        since: { offset: 2, epoch: seen.epoch },
        limit: 2,
      });
      assert.deepEqual(texts(page2), ["3:c"]);
      assert.ok(page2.recovered && !page2.truncated);
      // Binary payloads come back byte for byte.
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const p = await broker.publishWithHistory("bin", bytes, opts);
      const back = await broker.history("bin", { since: { offset: p.offset - 1, epoch: p.epoch } });
      assert.ok(back.recovered);
      assert.deepEqual([...back.messages[0].payload], [...bytes]);
    } finally {
      await broker.close();
    }
  },
);

redisTest(
  "redis broker history: an old epoch or an offset outside the window is unrecoverable",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      let last = { offset: 0, epoch: "" };
      for (let i = 1; i <= 12; i++) {
        last = await broker.publishWithHistory(
          "t",
          enc.encode(`m${i}`),
          KEEP,
        );
      }
      // The stream is capped by size: only the last 5 messages are kept.
      const all = await broker.history("t");
      assert.deepEqual(texts(all), ["8:m8", "9:m9", "10:m10", "11:m11", "12:m12"]);
      // Inside the window (the next message, 8, is kept).
      assert.deepEqual(
        texts(await broker.history("t", { since: { offset: 7, epoch: last.epoch } })),
        [
          "8:m8",
          "9:m9",
          "10:m10",
          "11:m11",
          "12:m12",
        ],
      );
      // Offset 6 needs message 7, trimmed.
      const gone = await broker.history("t", { since: { offset: 6, epoch: last.epoch } });
      assert.deepEqual(gone, {
        recovered: false,
        reason: "window",
        position: { offset: 12, epoch: last.epoch },
      });
      const epoch = await broker.history("t", { since: { offset: 11, epoch: "not-the-epoch" } });
      assert.deepEqual(epoch, {
        recovered: false,
        reason: "epoch",
        position: { offset: 12, epoch: last.epoch },
      });
      const future = await broker.history("t", { since: { offset: 99, epoch: last.epoch } });
      assert.equal(future.recovered, false);
    } finally {
      await broker.close();
    }
  },
);

redisTest(
  "redis broker history: an expired history reports its position left the window",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const first = await broker.publishWithHistory("t", enc.encode("a"), { size: 10, ttlMs: 50 });
      await broker.publishWithHistory("t", enc.encode("b"), { size: 10, ttlMs: 50 });
      let r: HistoryResult | undefined;
      const deadline = Date.now() + 10_000;
      do {
        await new Promise((res) => setTimeout(res, 20));
        r = await broker.history("t", { since: first });
      } while (r.recovered && Date.now() < deadline);
      assert.deepEqual(r, {
        recovered: false,
        reason: "window",
        position: { offset: 2, epoch: first.epoch },
      }, "the messages expired, the offsets and epoch did not");
      const next = await broker.publishWithHistory("t", enc.encode("c"), {
        size: 10,
        ttlMs: 60_000,
      });
      assert.deepEqual([next.offset, next.epoch], [3, first.epoch]);
    } finally {
      await broker.close();
    }
  },
);

redisTest(
  "redis broker history: a Redis restart without persistence changes the epoch",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const before = await broker.publishWithHistory("t", enc.encode("a"), KEEP);
      await redis.crash();
      await until(() => broker.state === "down", 10_000, "the loss");
      await redis.restart();
      await until(() => broker.state === "up", 15_000, "the broker back up");
      const r = await broker.history("t", { since: before });
      assert.equal(r.recovered, false);
      assert.ok(!r.recovered && r.reason === "epoch", JSON.stringify(r));
      assert.notEqual(r.position.epoch, before.epoch);
      assert.equal(r.position.offset, 0);
      const after = await broker.publishWithHistory("t", enc.encode("b"), KEEP);
      assert.deepEqual([after.offset, after.epoch], [1, r.position.epoch]);
    } finally {
      await broker.close();
    }
  },
);

redisTest(
  "redis broker history: with persistence the epoch survives a Redis crash and recovery works",
  async (redis) => {
    const broker = await connectBroker(redis);
    try {
      const first = await broker.publishWithHistory("t", enc.encode("a"), KEEP);
      await broker.publishWithHistory("t", enc.encode("b"), KEEP);
      await redis.crash(); // SIGKILL: only the fsynced append-only file is left
      await until(() => broker.state === "down", 10_000, "the loss");
      await redis.restart();
      await until(() => broker.state === "up", 15_000, "the broker back up");
      const r = await broker.history("t", { since: first });
      assert.deepEqual(texts(r), ["2:b"]);
      assert.equal(r.position.epoch, first.epoch);
      const next = await broker.publishWithHistory("t", enc.encode("c"), KEEP);
      assert.deepEqual([next.offset, next.epoch], [3, first.epoch]);
    } finally {
      await broker.close();
    }
  },
  { persistence: true },
);
