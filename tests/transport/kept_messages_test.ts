import assert from "node:assert/strict";
import { KeptMessages } from "../../src/transport/kept_messages.ts";

Deno.test("KeptMessages: copies, in order; a refusal keeps that message first", () => {
  const kept = new KeptMessages();
  const scratch = new Uint8Array(3000);
  for (let i = 0; i < 100; i++) {
    const n = (i * 37) % 3000;
    scratch.fill(i, 0, n);
    kept.push(i % 3 === 0, scratch.subarray(0, n));
    scratch.fill(0xee); // the source is reused at once
  }
  assert.equal(kept.length, 100);
  let next = 0;
  let refusals = 1;
  const take = (text: boolean, payload: Uint8Array) => {
    if (next === 40 && refusals-- > 0) return false;
    assert.equal(text, next % 3 === 0);
    assert.equal(payload.length, (next * 37) % 3000);
    assert.ok(payload.every((b) => b === next));
    next++;
    return true;
  };
  assert.equal(kept.offer(take), false);
  assert.equal(kept.length, 60);
  // More arrive behind the kept ones (and may move them inside the buffer).
  for (let i = 100; i < 150; i++) kept.push(i % 3 === 0, new Uint8Array((i * 37) % 3000).fill(i));
  assert.equal(kept.offer(take), true);
  assert.equal(next, 150);
  assert.equal(kept.length, 0);
  assert.equal(kept.bytes, 0);
});
