import assert from "node:assert/strict";
import { isValidUtf8, UTF8_ACCEPT, UTF8_REJECT, validateUtf8 } from "../../src/protocol/utf8.ts";

const fatal = new TextDecoder("utf-8", { fatal: true });
function reference(bytes: Uint8Array): boolean {
  try {
    fatal.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const VECTORS: [number[], boolean][] = [
  [[], true],
  [[0x41], true],
  [[0xc2, 0x80], true],
  [[0xdf, 0xbf], true],
  [[0xe0, 0xa0, 0x80], true],
  [[0xed, 0x9f, 0xbf], true],
  [[0xee, 0x80, 0x80], true],
  [[0xef, 0xbf, 0xbf], true],
  [[0xf0, 0x90, 0x80, 0x80], true],
  [[0xf4, 0x8f, 0xbf, 0xbf], true],
  [[0xc0, 0x80], false],
  [[0xc1, 0xbf], false],
  [[0xe0, 0x9f, 0xbf], false],
  [[0xed, 0xa0, 0x80], false],
  [[0xed, 0xbf, 0xbf], false],
  [[0xf0, 0x8f, 0xbf, 0xbf], false],
  [[0xf4, 0x90, 0x80, 0x80], false],
  [[0xf5, 0x80, 0x80, 0x80], false],
  [[0xff], false],
  [[0x80], false],
  [[0xc2], false],
  [[0xe2, 0x82], false],
  [[0xc2, 0x41], false],
];

Deno.test("validateUtf8: known vectors agree with a fatal TextDecoder", () => {
  for (const [bytes, valid] of VECTORS) {
    const u = new Uint8Array(bytes);
    assert.equal(isValidUtf8(u), valid, bytes.map((b) => b.toString(16)).join(" "));
    assert.equal(reference(u), valid);
  }
});

Deno.test("validateUtf8: all 1- and 2-byte inputs, and 3-byte ones from lead bytes E0..EF, agree", () => {
  for (let a = 0; a < 256; a++) {
    assert.equal(isValidUtf8(new Uint8Array([a])), reference(new Uint8Array([a])));
    for (let b = 0; b < 256; b++) {
      const u = new Uint8Array([a, b]);
      assert.equal(isValidUtf8(u), reference(u), `${a} ${b}`);
    }
  }
  for (let a = 0xe0; a <= 0xf4; a++) {
    for (let b = 0x70; b < 0xc8; b++) {
      for (let c = 0x70; c < 0xc8; c += 3) {
        const u = new Uint8Array([a, b, c, 0x80]);
        assert.equal(isValidUtf8(u), reference(u), `${a} ${b} ${c}`);
      }
    }
  }
});

Deno.test("validateUtf8: state carries across any split; impossible prefixes reject at once", () => {
  const text = new TextEncoder().encode("aé€😀κόσμε");
  for (let cut = 0; cut <= text.length; cut++) {
    const s = validateUtf8(text.subarray(0, cut));
    assert.notEqual(s, UTF8_REJECT);
    assert.equal(validateUtf8(text.subarray(cut), s), UTF8_ACCEPT);
  }
  // F4 90 is beyond U+10FFFF: no continuation can fix it.
  assert.equal(validateUtf8(new Uint8Array([0xf4, 0x90])), UTF8_REJECT);
  assert.equal(validateUtf8(new Uint8Array([0xed, 0xa0])), UTF8_REJECT);
  assert.equal(validateUtf8(new Uint8Array([0xe0, 0x80])), UTF8_REJECT);
  // ... whereas an open but completable sequence is neither.
  const open = validateUtf8(new Uint8Array([0xf4, 0x8f]));
  assert.ok(open !== UTF8_ACCEPT && open !== UTF8_REJECT);
});
