import assert from "node:assert/strict";
import {
  decodeClosePayload,
  encodeClosePayload,
  isValidCloseCode,
  truncateCloseReason,
} from "../../src/protocol/close.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";

Deno.test("isValidCloseCode: the RFC's ranges", () => {
  const valid = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    4999,
  ];
  const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];
  for (const c of valid) assert.ok(isValidCloseCode(c), String(c));
  for (const c of invalid) assert.ok(!isValidCloseCode(c), String(c));
});

Deno.test("decodeClosePayload: empty, 1 byte, bad code, bad reason", () => {
  assert.deepEqual(decodeClosePayload(new Uint8Array(0)), { code: 1005, reason: "" });
  const err = (bytes: number[], code: number) =>
    assert.throws(
      () => decodeClosePayload(new Uint8Array(bytes)),
      (e) => e instanceof ProtocolError && e.closeCode === code,
    );
  err([0x03], 1002);
  err([0x03, 0xed], 1002); // 1005
  err([0x03, 0xe8, 0xff], 1007);
  assert.deepEqual(decodeClosePayload(encodeClosePayload(4000, "ünï")), {
    code: 4000,
    reason: "ünï",
  });
});

Deno.test("encodeClosePayload: refuses unsendable codes and long reasons", () => {
  assert.throws(() => encodeClosePayload(1006), RangeError);
  assert.throws(() => encodeClosePayload(1015), RangeError);
  assert.throws(() => encodeClosePayload(2000), RangeError);
  assert.throws(() => encodeClosePayload(1000, "x".repeat(124)), RangeError);
  assert.equal(encodeClosePayload(1000, "x".repeat(123)).length, 125);
  assert.equal(encodeClosePayload(1005).length, 0);
  assert.throws(() => encodeClosePayload(1005, "reason"), RangeError);
});

Deno.test("truncateCloseReason: never over 123 bytes, never splits a character", () => {
  for (const s of ["a".repeat(500), "é".repeat(100), "😀".repeat(40), "short"]) {
    const t = truncateCloseReason(s);
    assert.ok(new TextEncoder().encode(t).length <= 123);
    assert.ok(s.startsWith(t));
    assert.ok(!t.endsWith("\ud83d"));
  }
});
