import assert from "node:assert/strict";
import { backoffCeiling, fullJitterDelay } from "../../src/engine/backoff.ts";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { ENGINE_DEFAULTS } from "../../src/engine/options.ts";
import { startEchoServer, until } from "./kit.ts";

const policy = { baseDelayMs: 500, maxDelayMs: 30_000 };

Deno.test("full jitter: every delay lies in [0, min(cap, base * 2^attempt))", () => {
  for (let attempt = 0; attempt < 80; attempt++) {
    const ceiling = Math.min(30_000, 500 * 2 ** attempt);
    assert.equal(backoffCeiling(attempt, policy), ceiling);
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      const d = fullJitterDelay(attempt, policy, () => r);
      assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}, r ${r}: ${d}`);
      assert.equal(d, Math.floor(r * ceiling));
    }
  }
  assert.equal(fullJitterDelay(1e6, policy, () => 0.5), 15_000); // no overflow past the cap
});

Deno.test("full jitter: a broken random source never stretches the delay", () => {
  for (const r of [1, 2, -1, NaN, Infinity]) {
    assert.equal(fullJitterDelay(3, policy, () => r), 0);
  }
});

Deno.test("defaults suit a real server (500 ms base, 30 s cap), not gowse's 5 s / 5 min", () => {
  assert.equal(ENGINE_DEFAULTS.baseDelayMs, 500);
  assert.equal(ENGINE_DEFAULTS.maxDelayMs, 30_000);
});

Deno.test({
  name: "the retry loop jitters every attempt, caps, resets per cycle (injected sleep and random)",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const server = startEchoServer();
    const slept: number[] = [];
    const randoms = [0.9, 0.5, 0.1, 0.99, 0.7, 0.3];
    let i = 0;
    let failures = 0;
    const engine = new WebSocketEngine({
      url: server.url,
      client: { onRestartError: () => void failures++ },
      reconnect: {
        baseDelayMs: 100,
        maxDelayMs: 400,
        random: () => randoms[i++ % randoms.length],
        sleep: (ms, signal) => {
          slept.push(ms);
          return signal.aborted ? Promise.reject(signal.reason) : Promise.resolve();
        },
      },
    });
    await engine.start();
    await server.kill();
    await until(() => failures >= 5, "five failed attempts");
    // attempt k sleeps floor(r_k * min(400, 100 * 2^k)): no sleeping in this test.
    assert.deepEqual(slept.slice(0, 5), [90, 100, 40, 396, 280]);
    await server.restart();
    await until(() => engine.state === "open", "reconnected");
    const cycle1 = slept.length;
    await server.kill();
    await until(() => slept.length > cycle1, "second cycle");
    // The second cycle starts again at attempt 0: its ceiling is the base.
    assert.ok(slept[cycle1] < 100);
    await engine.stop();
    await server.close();
  },
});
