import assert from "node:assert/strict";
import {
  redisServerInstalled,
  RedisServerNotInstalledError,
  startRedisServer,
} from "../../src/testing/redis_server.ts";

const HAVE_REDIS = await redisServerInstalled();
if (!HAVE_REDIS) {
  console.warn("\n*** SKIPPED: redis_server tests need the Debian package redis-server ***\n");
}

/** Sends one inline command and returns the raw reply. */
async function command(port: number, line: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(line + "\r\n"));
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "redis_server: crash, restart on the same port, data kept only with persistence",
  ignore: !HAVE_REDIS,
  async fn() {
    for (const persistence of [false, true]) {
      const redis = await startRedisServer({ persistence });
      try {
        assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
        assert.equal(await command(redis.port, "SET k v"), "+OK\r\n");
        const port = redis.port;
        await redis.crash();
        assert.equal(redis.running, false);
        await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
        await redis.restart();
        assert.equal(redis.port, port);
        assert.equal(
          await command(port, "GET k"),
          persistence ? "$1\r\nv\r\n" : "$-1\r\n",
          `persistence ${persistence}`,
        );
        await redis.restart(); // a clean stop and start works too
        assert.equal(redis.running, true);
      } finally {
        await redis.stop();
      }
      await redis.stop(); // twice is fine
      assert.equal(redis.running, false);
      await assert.rejects(Deno.stat(redis.dir), Deno.errors.NotFound, "its directory is removed");
    }
  },
});

Deno.test("redis_server: a missing binary is named with its package", async () => {
  const e = await startRedisServer({ binary: "no-such-redis-server" }).catch((e) => e);
  assert.ok(e instanceof RedisServerNotInstalledError);
  assert.match(e.message, /Debian package redis-server/);
  assert.equal(await redisServerInstalled("no-such-redis-server"), false);
});
