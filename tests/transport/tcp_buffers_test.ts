import assert from "node:assert/strict";
import { recycleBuffer, takeBuffer } from "../../src/transport/tcp_buffers.ts";
import { nextMaskKey } from "../../src/protocol/mask.ts";

Deno.test("tcp buffers: power-of-two classes, reuse, foreign buffers ignored", () => {
  const a = takeBuffer(3000);
  assert.equal(a.length, 4096);
  assert.equal(takeBuffer(1).length, 1024);
  assert.equal(takeBuffer((1 << 20) + 1).length, (1 << 20) + 1, "over 1 MiB: plain allocation");
  recycleBuffer(a);
  assert.equal(takeBuffer(4000), a, "a recycled buffer is handed out again");
  recycleBuffer(new Uint8Array(8192).subarray(0, 4096)); // a view: ignored
  recycleBuffer(new Uint8Array(3000)); // not a class size: ignored
  assert.notEqual(takeBuffer(4096).byteOffset, undefined);
  const keys = new Set<string>();
  for (let i = 0; i < 2000; i++) keys.add(nextMaskKey().join(","));
  assert.ok(keys.size > 1900, "mask keys vary");
});
