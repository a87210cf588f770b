import assert from "node:assert/strict";
import { abortable, deferred, sleep, TimeoutError, withTimeout } from "../../src/util/async.ts";

Deno.test("deferred resolves once and reports settled", async () => {
  const d = deferred<number>();
  assert.equal(d.settled, false);
  d.resolve(1);
  d.resolve(2);
  d.reject(new Error("ignored"));
  assert.equal(d.settled, true);
  assert.equal(await d.promise, 1);
});

Deno.test("sleep resolves after its delay", async () => {
  const t0 = performance.now();
  await sleep(5);
  assert.ok(performance.now() - t0 >= 4);
});

Deno.test("sleep is interrupted by abort and clears its timer", async () => {
  const ac = new AbortController();
  const p = sleep(60_000, ac.signal);
  ac.abort();
  await assert.rejects(p, { name: "AbortError" });
});

Deno.test("sleep rejects at once on an already-aborted signal", async () => {
  const ac = new AbortController();
  ac.abort(new Error("why"));
  await assert.rejects(sleep(60_000, ac.signal), /why/);
});

Deno.test("withTimeout passes a value through and times out with a named error", async () => {
  assert.equal(await withTimeout(Promise.resolve(3), 1000, "x"), 3);
  const err = await withTimeout(new Promise(() => {}), 5, "the answer").catch((e) => e);
  assert.ok(err instanceof TimeoutError);
  assert.match(err.message, /the answer timed out after 5 ms/);
  assert.equal(await withTimeout(Promise.resolve(4), 0, "no limit"), 4);
});

Deno.test("abortable rejects on abort and leaves the promise alone otherwise", async () => {
  assert.equal(await abortable(Promise.resolve(5)), 5);
  const ac = new AbortController();
  const p = abortable(new Promise(() => {}), ac.signal);
  ac.abort();
  await assert.rejects(p, { name: "AbortError" });
});
