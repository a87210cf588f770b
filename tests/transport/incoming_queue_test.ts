import assert from "node:assert/strict";
import { IncomingQueue } from "../../src/transport/incoming_queue.ts";
import type { ReadOverflowError, WireMessage } from "../../src/transport/types.ts";

const bin = (n: number, fill = 0): WireMessage => ({
  type: "binary",
  data: new Uint8Array(n).fill(fill),
});
const drop = { code: 1006, reason: "", wasClean: false, initiator: "drop" } as const;

Deno.test("queue is FIFO and counts bytes", () => {
  const q = new IncomingQueue();
  q.push({ type: "text", data: "ab" });
  q.push(bin(3));
  assert.equal(q.length, 2);
  assert.equal(q.queuedBytes, 4 + 3);
  assert.deepEqual(q.poll(), { type: "text", data: "ab" });
  assert.equal((q.poll() as { data: Uint8Array }).data.byteLength, 3);
  assert.equal(q.poll(), undefined);
  assert.equal(q.queuedBytes, 0);
});

Deno.test("watermarks pause above high and resume at low, once each", () => {
  const calls: string[] = [];
  const q = new IncomingQueue({
    highWaterMark: 10,
    lowWaterMark: 4,
    onPause: () => calls.push("pause"),
    onResume: () => calls.push("resume"),
  });
  for (let i = 0; i < 5; i++) q.push(bin(3));
  assert.deepEqual(calls, ["pause"]);
  assert.equal(q.paused, true);
  q.poll(); // 12
  q.poll(); // 9
  q.poll(); // 6
  assert.deepEqual(calls, ["pause"]);
  q.poll(); // 3
  assert.deepEqual(calls, ["pause", "resume"]);
});

Deno.test("readable resolves on push and on end; closed settles after drain", async () => {
  const q = new IncomingQueue();
  const r = q.readable();
  q.push(bin(1));
  await r;
  q.end(drop);
  let closed = false;
  q.closed.then(() => closed = true);
  await Promise.resolve();
  assert.equal(closed, false, "not closed while a message is queued");
  q.poll();
  assert.deepEqual(await q.closed, drop);
  await q.readable(); // ended: resolves at once
  q.push(bin(1));
  assert.equal(q.length, 0, "pushes after end are ignored");
});

Deno.test("overflow 'close' reports once and stops queueing", () => {
  const errors: ReadOverflowError[] = [];
  const q = new IncomingQueue({ maxQueuedBytes: 10, onOverflow: (e) => errors.push(e) });
  q.push(bin(8));
  q.push(bin(8));
  q.push(bin(1));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].policy, "close");
  assert.equal(q.length, 1);
});

Deno.test("overflow 'drop-oldest' keeps the newest and reports each drop", () => {
  const errors: ReadOverflowError[] = [];
  const q = new IncomingQueue({
    maxQueuedBytes: 10,
    overflow: "drop-oldest",
    onOverflow: (e) => errors.push(e),
  });
  q.push(bin(4, 1));
  q.push(bin(4, 2));
  q.push(bin(4, 3));
  assert.equal(errors.length, 1);
  assert.deepEqual([...(q.poll() as { data: Uint8Array }).data], [2, 2, 2, 2]);
  assert.deepEqual([...(q.poll() as { data: Uint8Array }).data], [3, 3, 3, 3]);
});

Deno.test("overflow 'drop-newest' rejects the newcomer and reports it", () => {
  const errors: ReadOverflowError[] = [];
  const q = new IncomingQueue({
    maxQueuedBytes: 10,
    overflow: "drop-newest",
    onOverflow: (e) => errors.push(e),
  });
  q.push(bin(6, 1));
  q.push(bin(6, 2));
  assert.equal(errors.length, 1);
  assert.equal(q.length, 1);
});

Deno.test("a single message larger than the bound still gets through", () => {
  const q = new IncomingQueue({ maxQueuedBytes: 10 });
  q.push(bin(100));
  assert.equal(q.length, 1);
});

Deno.test("memory stays bounded over a long stream (array compacts)", () => {
  const q = new IncomingQueue();
  for (let i = 0; i < 100_000; i++) {
    q.push(bin(1));
    if (i % 10 !== 0) q.poll();
  }
  assert.equal(q.length, 10_000);
  while (q.poll()) { /* drain */ }
  assert.equal(q.length, 0);
});

Deno.test("listen: called synchronously after each push and on end; may poll from inside", () => {
  const q = new IncomingQueue();
  const seen: (number | "end")[] = [];
  q.listen(() => {
    for (let m = q.poll(); m; m = q.poll()) seen.push((m as { data: Uint8Array }).data.byteLength);
    if (q.ended) seen.push("end");
  });
  q.push(bin(1));
  q.push(bin(2));
  assert.deepEqual(seen, [1, 2], "each push drained at once, nothing left queued");
  assert.equal(q.length, 0);
  q.end(drop);
  assert.deepEqual(seen, [1, 2, "end"]);
  q.listen(undefined);
  const q2 = new IncomingQueue();
  q2.push(bin(1)); // no listener: queued as before
  assert.equal(q2.length, 1);
});
