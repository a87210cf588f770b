import assert from "node:assert/strict";
import {
  encodeFrame,
  encodeFrameHeader,
  type Frame,
  FrameParser,
  isControlOpcode,
  Opcode,
} from "../../src/protocol/frames.ts";
import { applyMask } from "../../src/protocol/mask.ts";
import { ProtocolError } from "../../src/protocol/errors.ts";
import { concat, enc, rawFrame } from "./helpers.ts";

function parseAll(parser: FrameParser): Frame[] {
  const out: Frame[] = [];
  let f;
  while ((f = parser.next()) !== undefined) out.push(f);
  return out;
}

Deno.test("encodeFrame: 'Hello Client' is 0x82 0x0C + payload (Tube's own test)", () => {
  const bytes = encodeFrame(Opcode.Binary, enc.encode("Hello Client"));
  assert.deepEqual([...bytes.subarray(0, 2)], [0x82, 0x0c]);
  assert.equal(bytes.length, 14);
});

Deno.test("encodeFrame: minimal length encoding at every boundary", () => {
  for (
    const [len, header] of [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10], [70000, 10]]
  ) {
    const bytes = encodeFrame(Opcode.Binary, new Uint8Array(len));
    assert.equal(bytes.length - len, header, `length ${len}`);
    const code = bytes[1] & 0x7f;
    assert.equal(code, len < 126 ? len : len < 65536 ? 126 : 127);
  }
  // 65535 uses 16 bits (Tube used 64 bits there)
  const b = encodeFrame(Opcode.Binary, new Uint8Array(65535));
  assert.deepEqual([...b.subarray(1, 4)], [126, 0xff, 0xff]);
  assert.equal(encodeFrameHeader(Opcode.Text, 65536).length, 10);
  assert.equal(encodeFrameHeader(Opcode.Text, 10, { mask: new Uint8Array(4) }).length, 6);
});

Deno.test("encodeFrame: flags, masking leaves the input untouched, mask length checked", () => {
  const payload = enc.encode("masked payload that is longer than thirty-two bytes!");
  const copy = payload.slice();
  const key = new Uint8Array([1, 2, 3, 4]);
  const bytes = encodeFrame(Opcode.Text, payload, { fin: false, rsv1: true, mask: key });
  assert.equal(bytes[0], 0x40 | Opcode.Text);
  assert.equal(bytes[1] & 0x80, 0x80);
  assert.deepEqual(payload, copy);
  const p = new FrameParser({ allowRsv1: true, expectMasked: true });
  p.push(bytes);
  const f = p.next()!;
  assert.equal(f.fin, false);
  assert.equal(f.rsv1, true);
  assert.equal(f.masked, true);
  assert.deepEqual(f.payload, copy);
  assert.throws(() => encodeFrame(Opcode.Text, payload, { mask: new Uint8Array(3) }), RangeError);
});

Deno.test("applyMask: matches a byte loop for every length and alignment", () => {
  const key = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
  const base = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);
  for (let offset = 0; offset < 4; offset++) {
    for (const len of [0, 1, 3, 4, 5, 31, 32, 33, 64, 100, 255]) {
      for (let keyOffset = 0; keyOffset < 4; keyOffset++) {
        const buf = base.slice();
        const view = buf.subarray(offset, offset + len);
        applyMask(view, key, keyOffset);
        for (let i = 0; i < len; i++) {
          assert.equal(view[i], base[offset + i] ^ key[(i + keyOffset) & 3]);
        }
      }
    }
  }
});

Deno.test("FrameParser: every split point gives the same frames", () => {
  const wire = concat(
    encodeFrame(Opcode.Text, enc.encode("a")),
    encodeFrame(Opcode.Binary, new Uint8Array(300).fill(7)),
    encodeFrame(Opcode.Ping, new Uint8Array(0)),
    encodeFrame(Opcode.Binary, new Uint8Array(70000).fill(9), { fin: false }),
  );
  const reference = (() => {
    const p = new FrameParser({});
    p.push(wire.slice());
    return parseAll(p);
  })();
  assert.equal(reference.length, 4);
  for (let cut = 0; cut <= wire.length; cut += 97) {
    const p = new FrameParser({});
    p.push(wire.slice(0, cut));
    const got = parseAll(p);
    p.push(wire.slice(cut));
    got.push(...parseAll(p));
    assert.deepEqual(got, reference, `cut at ${cut}`);
  }
});

Deno.test("FrameParser: a whole unmasked frame is a zero-copy subarray", () => {
  const wire = encodeFrame(Opcode.Binary, new Uint8Array(1000).fill(1));
  const p = new FrameParser({});
  p.push(wire);
  const f = p.next()!;
  assert.equal(f.payload.buffer, wire.buffer);
  assert.equal(p.buffered, 0);
});

Deno.test("FrameParser: earlier payloads survive later pushes (no in-place compaction)", () => {
  const p = new FrameParser({});
  const a = encodeFrame(Opcode.Binary, new Uint8Array(10).fill(1));
  const b = encodeFrame(Opcode.Binary, new Uint8Array(10).fill(2));
  p.push(concat(a, b.subarray(0, 3)));
  const first = p.next()!;
  p.push(b.subarray(3));
  for (let i = 0; i < 50; i++) p.push(encodeFrame(Opcode.Binary, new Uint8Array(10).fill(3)));
  parseAll(p);
  assert.deepEqual([...first.payload], Array(10).fill(1));
});

Deno.test("FrameParser: header checks fire before the payload arrives", () => {
  const cases: [Uint8Array, number, ConstructorParameters<typeof FrameParser>[0]][] = [
    [rawFrame(1, "x", { rsv2: true }).subarray(0, 2), 1002, {}],
    [rawFrame(1, "x", { rsv1: true }).subarray(0, 2), 1002, {}],
    [rawFrame(3, "x").subarray(0, 2), 1002, {}],
    [rawFrame(9, "x", { fin: false }).subarray(0, 2), 1002, {}],
    [rawFrame(9, new Uint8Array(126)).subarray(0, 2), 1002, {}],
    [rawFrame(2, "x", { mask: false }).subarray(0, 2), 1002, { expectMasked: true }],
    [rawFrame(2, "x").subarray(0, 2), 1002, { expectMasked: false }],
    [rawFrame(2, "", { declaredLength: 1 << 20 }).subarray(0, 10), 1009, { maxFrameSize: 1000 }],
    [rawFrame(2, "", { declaredLength: 1n << 63n }).subarray(0, 10), 1002, {}],
  ];
  for (const [bytes, code, opts] of cases) {
    const p = new FrameParser(opts);
    p.push(bytes.slice());
    assert.throws(() => p.next(), (e) => e instanceof ProtocolError && e.closeCode === code);
    // sticky
    assert.throws(() => p.next(), ProtocolError);
  }
});

Deno.test("FrameParser: RSV1 allowed when an extension claimed it; non-minimal lengths accepted", () => {
  const p = new FrameParser({ allowRsv1: true });
  p.push(rawFrame(1, "x", { rsv1: true, mask: false }));
  assert.equal(p.next()!.rsv1, true);
  p.push(rawFrame(1, "abc", { mask: false, lengthForm: 64 }));
  assert.equal(p.next()!.payload.length, 3);
});

Deno.test("isControlOpcode", () => {
  assert.deepEqual([0, 1, 2, 8, 9, 10].map(isControlOpcode), [
    false,
    false,
    false,
    true,
    true,
    true,
  ]);
});

Deno.test("FrameParser: a header declaring a huge frame does not allocate it up front", () => {
  const p = new FrameParser({ maxFrameSize: 64 * 1024 * 1024 });
  const header = rawFrame(2, new Uint8Array(0), { declaredLength: 60_000_000, mask: false });
  p.push(header.slice(0, 5));
  p.push(header.slice(5));
  assert.equal(p.next(), undefined);
  p.push(new Uint8Array(1));
  assert.equal(p.next(), undefined);
  // Internal buffer stays small: grows with the bytes that actually arrived.
  const used = Deno.memoryUsage().rss;
  for (let i = 0; i < 20; i++) p.push(new Uint8Array(1));
  assert.ok(Deno.memoryUsage().rss - used < 32 * 1024 * 1024);
  assert.equal(p.buffered, 10 + 21);
});

Deno.test("FrameParser: borrowed chunks copy only the frame cut by the end of a read", () => {
  const big = (fill: number) => encodeFrame(Opcode.Binary, new Uint8Array(20_000).fill(fill));
  const small = encodeFrame(Opcode.Binary, new Uint8Array(10).fill(6));
  const wire = concat(small, big(5), small, big(8), small, small);
  const p = new FrameParser({});
  const readBuffer = new Uint8Array(8192);
  const seen: number[] = [];
  const carried: Uint8Array[] = [];
  for (let at = 0; at < wire.length; at += readBuffer.length) {
    const n = Math.min(readBuffer.length, wire.length - at);
    readBuffer.set(wire.subarray(at, at + n));
    p.push(readBuffer.subarray(0, n), true);
    for (let f = p.next(); f; f = p.next()) {
      seen.push(f.payload[0]);
      // A big frame completed across reads lives outside the read buffer and is never reused.
      if (f.payload.length > 4096) carried.push(f.payload);
    }
    // Once parsed, only the cut frame's bytes remain, held by the parser itself.
    assert.ok(p.buffered <= 20_014);
    readBuffer.fill(0xee);
  }
  assert.deepEqual(seen, [6, 5, 6, 8, 6, 6]);
  assert.equal(p.buffered, 0);
  assert.equal(carried.length, 2);
  assert.ok(carried.every((c) => c.buffer !== readBuffer.buffer));
  assert.ok(carried[0].every((b) => b === 5) && carried[1].every((b) => b === 8));
});

Deno.test("FrameParser: a borrowed chunk's whole frames are views of it; one frame object", () => {
  const wire = concat(
    encodeFrame(Opcode.Binary, new Uint8Array(100).fill(1)),
    encodeFrame(Opcode.Text, enc.encode("abc")),
  );
  const p = new FrameParser({});
  p.push(wire, true);
  const a = p.next()!;
  assert.equal(a.payload.buffer, wire.buffer);
  const b = p.next()!;
  assert.equal(a, b, "the frame object is reused");
  assert.equal(b.opcode, Opcode.Text);
  assert.equal(p.next(), undefined);
});
