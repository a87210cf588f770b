import assert from "node:assert/strict";
import { SendBuffer, SendBufferFullError, utf8Length } from "../../src/engine/send_buffer.ts";

Deno.test("utf8Length counts what TextEncoder would produce", () => {
  const enc = new TextEncoder();
  for (const s of ["", "abc", "é", "€", "😀", "a😀b€é", "\ud800", "x\udc00y", "\ud83d"]) {
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
  }
});

Deno.test("SendBuffer: FIFO, counts, copies bytes, withdraws, takes all", () => {
  const b = new SendBuffer({ maxMessages: 10, maxBytes: 100 });
  const bytes = new Uint8Array([1, 2, 3]);
  b.push("héllo");
  const { entry } = b.push(bytes);
  bytes[0] = 9; // the caller reuses its buffer: the queued copy is unchanged
  b.push("last");
  assert.equal(b.length, 3);
  assert.equal(b.bytes, 6 + 3 + 4);
  assert.deepEqual([...(b.messages()[1] as Uint8Array)], [1, 2, 3]);
  assert.equal(b.remove(entry), true);
  assert.equal(b.remove(entry), false);
  assert.deepEqual(b.shift()?.data, "héllo");
  assert.deepEqual(b.takeAll(), ["last"]);
  assert.equal(b.length, 0);
  assert.equal(b.bytes, 0);
});

Deno.test("SendBuffer: reject-newest keeps the queue; drop-oldest makes room by bytes", () => {
  const reject = new SendBuffer({ maxMessages: 2, maxBytes: 100 });
  reject.push("a");
  reject.push("b");
  assert.throws(() => reject.push("c"), (e: unknown) => {
    assert.ok(e instanceof SendBufferFullError);
    assert.equal(e.policy, "reject-newest");
    assert.equal(e.limit, "maxMessages");
    return true;
  });
  assert.deepEqual(reject.messages(), ["a", "b"]);
  const drop = new SendBuffer({ maxMessages: 10, maxBytes: 6, overflow: "drop-oldest" });
  drop.push("aa");
  drop.push("bb");
  drop.push("cc");
  assert.deepEqual(drop.push("dddd").dropped.map((m) => m.data), ["aa", "bb"]);
  assert.deepEqual(drop.messages(), ["cc", "dddd"]);
  assert.throws(() => drop.push("1234567"), SendBufferFullError);
  assert.deepEqual(drop.messages(), ["cc", "dddd"]);
});
