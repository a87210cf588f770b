import assert from "node:assert/strict";
import { connectBroker, redisTest } from "./helpers.ts";

redisTest(
  "redis broker liveness: members expire unless refreshed; removal is at once",
  async (redis) => {
    const a = await connectBroker(redis);
    const b = await connectBroker(redis);
    try {
      await a.setAlive("nodes", "a", "10.0.0.1:9000", 60_000);
      await b.setAlive("nodes", "b", "10.0.0.2:9000", 60_000);
      await b.setAlive("nodes", "short", "x", 100);
      const listed = await a.listAlive("nodes");
      assert.ok(listed.has("a") && listed.has("b"), "both long-lived members are listed");
      assert.equal(listed.get("a")?.value, "10.0.0.1:9000");
      assert.ok(listed.get("b")!.ttlMs > 0 && listed.get("b")!.ttlMs <= 60_000);
      assert.equal((await a.listAlive("other-group")).size, 0, "groups are separate");

      // "short" expires on its own (polled, bounded); "b" stays because it refreshes.
      const deadline = Date.now() + 10_000;
      while ((await a.listAlive("nodes")).has("short")) {
        assert.ok(Date.now() < deadline, "a member with a 100 ms TTL never expired");
        await b.setAlive("nodes", "b", "10.0.0.2:9001", 60_000);
        await new Promise((r) => setTimeout(r, 20));
      }
      const after = await a.listAlive("nodes");
      assert.deepEqual([...after.keys()].sort(), ["a", "b"]);
      assert.equal(after.get("b")?.value, "10.0.0.2:9001", "a refresh updates the value");

      await a.removeAlive("nodes", "a");
      assert.deepEqual([...(await b.listAlive("nodes")).keys()], ["b"]);
      // A short TTL set after a long one does not cut the group's lifetime under the long member.
      await a.setAlive("nodes", "a", "back", 50);
      const deadline2 = Date.now() + 10_000;
      while ((await b.listAlive("nodes")).has("a")) {
        assert.ok(Date.now() < deadline2, "a never expired");
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await b.listAlive("nodes")).get("b")?.value, "10.0.0.2:9001");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },
);
