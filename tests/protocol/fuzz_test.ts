/**
 * Property tests with fast-check: the parser is split-invariant, nothing but typed errors ever
 * comes out of hostile bytes, and encode/decode and deflate round-trip. Runs are bounded so the
 * suite stays fast.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ProtocolConnection } from "../../src/protocol/connection.ts";
import { type DeflateParams, PerMessageDeflate } from "../../src/protocol/deflate.ts";
import { HandshakeError, ProtocolError } from "../../src/protocol/errors.ts";
import { encodeFrame, type Frame, FrameParser } from "../../src/protocol/frames.ts";
import {
  HttpHeadReader,
  negotiateServer,
  parseResponseHead,
  validateServerResponse,
} from "../../src/protocol/handshake.ts";
import { UTF8_ACCEPT, UTF8_REJECT, validateUtf8 } from "../../src/protocol/utf8.ts";
import { drain, rawFrame } from "./helpers.ts";

const lengthArb = fc.oneof(
  fc.integer({ min: 0, max: 130 }),
  fc.constantFrom(125, 126, 127, 65535, 65536),
  fc.integer({ min: 126, max: 70000 }),
);

const frameArb = fc.record({
  opcode: fc.constantFrom(0, 1, 2, 8, 9, 10),
  fin: fc.boolean(),
  rsv1: fc.boolean(),
  mask: fc.option(fc.uint8Array({ minLength: 4, maxLength: 4 }), { nil: undefined }),
  length: lengthArb,
  seed: fc.integer({ min: 0, max: 255 }),
}).map((f) => {
  const control = f.opcode >= 8;
  const length = control ? f.length % 126 : f.length;
  const payload = new Uint8Array(length).map((_, i) => (i * 31 + f.seed) & 0xff);
  return { ...f, fin: control ? true : f.fin, rsv1: control ? false : f.rsv1, payload };
});

/** Splits `bytes` at the given (sorted, deduplicated) cut points. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.slice(prev, p));
    prev = p;
  }
  return out;
}

Deno.test("fuzz: random valid frames, split at random points, owned or borrowed, parse back the same", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 8, size: "max" }),
      fc.array(fc.nat(), { maxLength: 20, size: "max" }),
      (frames, cuts) => {
        const wire = frames.map((f) =>
          encodeFrame(f.opcode, f.payload, { fin: f.fin, rsv1: f.rsv1, mask: f.mask })
        );
        const all = new Uint8Array(wire.reduce((n, w) => n + w.length, 0));
        let p = 0;
        for (const w of wire) {
          all.set(w, p);
          p += w.length;
        }
        for (const borrowed of [false, true]) {
          const parser = new FrameParser({ allowRsv1: true });
          const got: Frame[] = [];
          // Borrowed: every chunk goes through one read buffer, scribbled over once parsed, and
          // each frame is copied before the next call (its payload is only valid until then).
          const readBuffer = new Uint8Array(all.length);
          for (const chunk of split(all, cuts)) {
            if (borrowed) readBuffer.set(chunk);
            parser.push(borrowed ? readBuffer.subarray(0, chunk.length) : chunk, borrowed);
            let f;
            while ((f = parser.next()) !== undefined) {
              got.push(borrowed ? { ...f, payload: f.payload.slice() } : f);
            }
            if (borrowed) readBuffer.fill(0xee);
          }
          assert.equal(got.length, frames.length);
          got.forEach((g, i) => {
            const f = frames[i];
            assert.equal(g.opcode, f.opcode);
            assert.equal(g.fin, f.fin);
            assert.equal(g.rsv1, f.rsv1);
            assert.equal(g.masked, f.mask !== undefined);
            assert.deepEqual(g.payload, f.payload);
          });
          assert.equal(parser.buffered, 0);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("fuzz: encode/decode round-trip across all length classes", () => {
  fc.assert(
    fc.property(lengthArb, fc.boolean(), (length, masked) => {
      const payload = new Uint8Array(length).fill(0xa5);
      const mask = masked ? new Uint8Array([1, 2, 3, 4]) : undefined;
      const bytes = encodeFrame(2, payload, { mask });
      const header = (length < 126 ? 2 : length < 65536 ? 4 : 10) + (masked ? 4 : 0);
      assert.equal(bytes.length, header + length);
      const p = new FrameParser({});
      p.push(bytes);
      assert.deepEqual(p.next()!.payload, payload);
    }),
    { numRuns: 200 },
  );
});

const DEFLATE: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

function feedSoup(role: "client" | "server", chunks: Uint8Array[], deflate: boolean): void {
  const conn = new ProtocolConnection({
    role,
    maxMessageSize: 1 << 16,
    deflate: deflate ? DEFLATE : null,
  });
  for (const c of chunks) conn.receive(c); // must never throw
  const events = drain(conn);
  const errors = events.filter((e) => e.type === "error");
  assert.ok(errors.length <= 1);
  if (errors.length === 1) {
    assert.equal(events.at(-1), errors[0]);
    assert.ok(errors[0].type === "error" && errors[0].error instanceof ProtocolError);
    assert.ok([1002, 1003, 1007, 1009].includes(errors[0].error.closeCode));
  }
  conn.takeOutgoing();
  conn.receiveEof();
}

Deno.test("fuzz: random byte soup gives only ProtocolErrors, never an exception or a hang", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2048, size: "max" }),
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.constantFrom("client", "server") as fc.Arbitrary<"client" | "server">,
      fc.boolean(),
      (soup, cuts, role, deflate) => feedSoup(role, split(soup, cuts), deflate),
    ),
    { numRuns: 1000 },
  );
});

Deno.test("fuzz: valid streams with random byte mutations give only ProtocolErrors", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 6, size: "max" }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.boolean(),
      (frames, mutations, deflate) => {
        const wire = frames.map((f) =>
          encodeFrame(f.opcode, f.payload.subarray(0, 300), {
            fin: f.fin,
            rsv1: f.rsv1,
            mask: new Uint8Array([9, 8, 7, 6]),
          })
        );
        const all = new Uint8Array(wire.reduce((n, w) => n + w.length, 0));
        let p = 0;
        for (const w of wire) {
          all.set(w, p);
          p += w.length;
        }
        for (const [at, value] of mutations) all[at % all.length] = value;
        feedSoup("server", [all], deflate);
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("fuzz: frames with random header fields (any opcode, RSV, mask, payload) give only ProtocolErrors", () => {
  const rawArb = fc.record({
    opcode: fc.integer({ min: 0, max: 15 }),
    fin: fc.boolean(),
    rsv1: fc.boolean(),
    rsv2: fc.constantFrom(false, false, false, true),
    rsv3: fc.constantFrom(false, false, false, true),
    mask: fc.boolean(),
    payload: fc.uint8Array({ maxLength: 200, size: "max" }),
  });
  fc.assert(
    fc.property(
      fc.array(rawArb, { minLength: 1, maxLength: 10, size: "max" }),
      fc.constantFrom("client", "server") as fc.Arbitrary<"client" | "server">,
      fc.boolean(),
      fc.array(fc.nat(), { maxLength: 6 }),
      (frames, role, deflate, cuts) => {
        const parts = frames.map((f) => rawFrame(f.opcode, f.payload, f));
        const all = new Uint8Array(parts.reduce((n, w) => n + w.length, 0));
        let p = 0;
        for (const w of parts) {
          all.set(w, p);
          p += w.length;
        }
        feedSoup(role, split(all, cuts), deflate);
      },
    ),
    { numRuns: 1500 },
  );
});

Deno.test("fuzz: hostile HTTP heads give only HandshakeErrors", () => {
  const headerish = fc.stringMatching(/^[ -~\r\n:,;=]{0,300}$/, { size: "large" });
  fc.assert(
    fc.property(headerish, headerish, fc.boolean(), (a, b, asRequest) => {
      const raw = new TextEncoder().encode(
        asRequest
          ? `GET / HTTP/1.1\r\n${a}\r\n${b}\r\n\r\n`
          : `HTTP/1.1 101 X\r\n${a}\r\n${b}\r\n\r\n`,
      );
      try {
        if (asRequest) {
          const head = new HttpHeadReader("request").push(raw);
          if (head) negotiateServer(head, { protocols: ["a"], deflate: {} });
        } else {
          const r = parseResponseHead(raw);
          if (r) validateServerResponse(r.head, { key: "dGhlIHNhbXBsZSBub25jZQ==", deflate: {} });
        }
      } catch (e) {
        assert.ok(e instanceof HandshakeError, String(e));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("fuzz: UTF-8 DFA agrees with a fatal TextDecoder, split anywhere", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true });
  const byte = fc.oneof(
    fc.integer({ min: 0, max: 0x7f }),
    fc.integer({ min: 0x80, max: 0xbf }),
    fc.integer({ min: 0xc0, max: 0xff }),
  );
  fc.assert(
    fc.property(fc.array(byte, { maxLength: 24, size: "max" }), fc.nat(), (arr, cut) => {
      const bytes = new Uint8Array(arr);
      let valid = true;
      try {
        fatal.decode(bytes);
      } catch {
        valid = false;
      }
      const c = cut % (bytes.length + 1);
      const s1 = validateUtf8(bytes.subarray(0, c));
      const s2 = s1 === UTF8_REJECT ? UTF8_REJECT : validateUtf8(bytes.subarray(c), s1);
      assert.equal(s2 === UTF8_ACCEPT, valid);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("fuzz: validateUtf8 fails on the same fragment as a streaming fatal TextDecoder", () => {
  // The connection validates fragmented text with validateUtf8 as fragments arrive; this pins its
  // fail-fast point (the RFC's "fail at the first impossible byte") to the platform's decoder, on
  // short fragments (the DFA alone) and on long ones (native check in the middle, DFA at the edges).
  const byte = fc.oneof(
    fc.integer({ min: 0, max: 0x7f }),
    fc.integer({ min: 0x80, max: 0xbf }),
    fc.integer({ min: 0xc0, max: 0xff }),
  );
  const fragment = fc.oneof(
    fc.array(byte, { maxLength: 6, size: "max" }),
    fc.tuple(
      fc.array(byte, { maxLength: 4, size: "max" }),
      fc.integer({ min: 120, max: 300 }),
      fc.constantFrom("a", "é", "€", "😀"),
      fc.array(byte, { maxLength: 4, size: "max" }),
    ).map(([head, n, ch, tail]) => {
      const middle = [...new TextEncoder().encode(ch.repeat(Math.ceil(n / ch.length)))];
      return [...head, ...middle, ...tail];
    }),
  );
  fc.assert(
    fc.property(
      fc.array(fragment, { minLength: 1, maxLength: 5 }),
      (fragments) => {
        const decoder = new TextDecoder("utf-8", { fatal: true });
        let decoderFail = -1;
        for (let i = 0; i <= fragments.length && decoderFail < 0; i++) {
          try {
            if (i < fragments.length) {
              decoder.decode(new Uint8Array(fragments[i]), { stream: true });
            } else decoder.decode();
          } catch {
            decoderFail = i;
          }
        }
        let state = UTF8_ACCEPT;
        let dfaFail = -1;
        for (let i = 0; i < fragments.length && dfaFail < 0; i++) {
          state = validateUtf8(new Uint8Array(fragments[i]), state);
          if (state === UTF8_REJECT) dfaFail = i;
        }
        if (dfaFail < 0 && state !== UTF8_ACCEPT) dfaFail = fragments.length;
        assert.equal(decoderFail, dfaFail, JSON.stringify(fragments));
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("fuzz: deflate round-trip over message sequences, takeover or not, any window", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 3000, size: "max" }),
          fc.string({ maxLength: 500, size: "max" }),
        ),
        { minLength: 1, maxLength: 8, size: "max" },
      ),
      fc.boolean(),
      fc.integer({ min: 9, max: 15 }),
      (messages, noTakeover, bits) => {
        const params = {
          ...DEFLATE,
          clientNoContextTakeover: noTakeover,
          clientMaxWindowBits: bits,
        };
        const c = new PerMessageDeflate(params, "client", { threshold: 0 });
        const s = new PerMessageDeflate(params, "server");
        try {
          for (const m of messages) {
            const data = typeof m === "string" ? new TextEncoder().encode(m.repeat(3)) : m;
            assert.deepEqual(s.decompress(c.compress(data), 1 << 20), data);
          }
        } finally {
          c.dispose();
          s.dispose();
        }
      },
    ),
    { numRuns: 150 },
  );
});
