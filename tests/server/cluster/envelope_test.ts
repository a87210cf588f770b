// The cluster's wire between nodes: data envelopes, batches of sends, binary acks, control JSON.
import assert from "node:assert/strict";
import {
  decodeAcks,
  decodeControl,
  decodeData,
  encodeAcks,
  encodeBatch,
  encodeControl,
  encodeData,
  K,
  unpackBatch,
} from "../../../src/server/cluster/envelope.ts";

Deno.test("envelope: a data envelope round-trips text, binary, fields and its number", () => {
  const text = decodeData(encodeData(K.SEND, ["a", "b.xyz", "00-trace-01", ""], 0xfffffffe, "hé"));
  assert.deepEqual(text, {
    kind: K.SEND,
    fields: ["a", "b.xyz", "00-trace-01", ""],
    n: 0xfffffffe,
    data: "hé",
  });
  const bin = decodeData(encodeData(K.PUBLISH, ["a", "room"], 0, Uint8Array.of(0, 1, 255)));
  assert.equal(bin.kind, K.PUBLISH);
  assert.deepEqual([...(bin.data as Uint8Array)], [0, 1, 255]);
});

Deno.test("envelope: cut-short envelopes and batches are RangeErrors, not garbage", () => {
  const whole = encodeData(K.SEND, ["a", "b.xyz"], 1, "x");
  assert.throws(() => decodeData(whole.subarray(0, 5)), RangeError);
  assert.throws(() => decodeData(whole.subarray(0, 10)), RangeError);
  const batch = encodeBatch([whole, whole]);
  assert.throws(() => unpackBatch(batch.subarray(0, 3)), RangeError);
  assert.throws(() => unpackBatch(batch.subarray(0, batch.length - 1)), RangeError);
});

Deno.test("envelope: a batch keeps its envelopes whole and in order", () => {
  const parts = Array.from(
    { length: 300 },
    (_, i) => encodeData(K.SEND, ["a", `b.${i}`], i, `m${i}`),
  );
  const batch = encodeBatch(parts);
  assert.equal(batch[0], K.BATCH);
  const back = unpackBatch(batch).map((p) => decodeData(p));
  assert.deepEqual(back.map((e) => e.n), parts.map((_, i) => i));
  assert.deepEqual(back.map((e) => e.data), parts.map((_, i) => `m${i}`));
  assert.deepEqual(back.map((e) => e.fields[1]), parts.map((_, i) => `b.${i}`));
  assert.deepEqual(unpackBatch(encodeBatch([])), []);
});

Deno.test("envelope: acks carry u32 ids; control messages are JSON behind their kind", () => {
  const ids = [0, 1, 65_536, 0xffffffff];
  const acks = encodeAcks(ids);
  assert.equal(acks[0], K.ACKS);
  assert.deepEqual(decodeAcks(acks), ids);
  assert.deepEqual(decodeAcks(encodeAcks([])), []);
  const ctl = encodeControl({ t: "hb", node: "a" });
  assert.equal(ctl[0], K.CONTROL);
  assert.deepEqual(decodeControl(ctl), { t: "hb", node: "a" });
});
