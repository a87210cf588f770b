import assert from "node:assert/strict";
import { deferred, sleep, TimeoutError, within } from "../../src/util/async.ts";

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

Deno.test("within passes a value through and times out with a named error", async () => {
  assert.equal(await within(Promise.resolve(3), { timeoutMs: 1000, what: "x" }), 3);
  const err = await within(new Promise(() => {}), { timeoutMs: 5, what: "the answer" })
    .catch((e) => e);
  assert.ok(err instanceof TimeoutError);
  assert.match(err.message, /the answer timed out after 5 ms/);
  assert.equal(err.timeoutMs, 5);
  assert.equal(await within(Promise.resolve(4), { timeoutMs: 0 }), 4);
  assert.equal(await within(Promise.resolve(4), { timeoutMs: Infinity }), 4);
});

Deno.test("within rejects with the signal's reason, also one aborted before the call", async () => {
  const ac = new AbortController();
  const p = within(new Promise(() => {}), { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, { name: "AbortError" });
  await assert.rejects(within(Promise.resolve(1), { signal: ac.signal }), { name: "AbortError" });
  const why = new AbortController();
  why.abort(new Error("why"));
  await assert.rejects(within(Promise.resolve(1), { signal: why.signal }), /why/);
});

Deno.test("within gives a function a signal that aborts when the wait is given up", async () => {
  let seen: unknown;
  const err = await within((signal) =>
    new Promise((resolve) => {
      signal.addEventListener("abort", () => {
        seen = signal.reason;
        resolve(0);
      });
    }), { timeoutMs: 5, what: "w" }).catch((e) => e);
  assert.ok(err instanceof TimeoutError);
  assert.equal(seen, err);
  // A function that throws synchronously rejects the wait.
  await assert.rejects(
    within(() => {
      throw new Error("sync");
    }, {}),
    /sync/,
  );
  // A rejection after the timeout is absorbed (no unhandled rejection).
  const late = within(new Promise((_, reject) => setTimeout(() => reject(new Error("late")), 20)), {
    timeoutMs: 1,
  });
  await assert.rejects(late, TimeoutError);
  await sleep(30);
});
