import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  acceptDeflateResponse,
  buildDeflateOffer,
  DEFAULT_DEFLATE_PARAMS,
  negotiateDeflateServer,
  parseExtensions,
  PerMessageDeflate,
} from "../../src/protocol/deflate.ts";
import { HandshakeError, ProtocolError } from "../../src/protocol/errors.ts";
import { enc } from "./helpers.ts";

Deno.test("parseExtensions: lists, parameters, quoted values, errors", () => {
  assert.deepEqual(parseExtensions('permessage-deflate; client_max_window_bits="10", x-foo'), [
    { name: "permessage-deflate", params: [["client_max_window_bits", "10"]] },
    { name: "x-foo", params: [] },
  ]);
  assert.deepEqual(parseExtensions(""), []);
  assert.throws(() => parseExtensions("bad name"), SyntaxError);
  assert.throws(() => parseExtensions('a; b="unterminated'), SyntaxError);
  assert.throws(() => parseExtensions("a; =1"), SyntaxError);
});

Deno.test("buildDeflateOffer", () => {
  assert.equal(buildDeflateOffer({}), "permessage-deflate; client_max_window_bits");
  assert.equal(
    buildDeflateOffer({
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 11,
    }),
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
  );
  assert.throws(() => buildDeflateOffer({ serverMaxWindowBits: 8 }), RangeError);
  assert.throws(() => buildDeflateOffer({ clientMaxWindowBits: 16 }), RangeError);
});

Deno.test("negotiateDeflateServer: honours and answers each parameter", () => {
  const r = (offer: string, opts = {}) => negotiateDeflateServer(offer, opts);
  assert.equal(r("permessage-deflate")?.response, "permessage-deflate");
  assert.equal(r("x-other, foo")?.response, undefined);
  const a = r("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")!;
  assert.equal(
    a.response,
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
  );
  assert.equal(a.params.serverMaxWindowBits, 10);
  assert.ok(a.params.serverNoContextTakeover);
  const b = r("permessage-deflate; client_max_window_bits", {
    clientMaxWindowBits: 12,
    clientNoContextTakeover: true,
  })!;
  assert.equal(
    b.response,
    "permessage-deflate; client_no_context_takeover; client_max_window_bits=12",
  );
  assert.equal(b.params.clientMaxWindowBits, 12);
  const c = r("permessage-deflate; client_max_window_bits=9")!;
  assert.equal(c.response, "permessage-deflate; client_max_window_bits=9");
  // Client cannot be told about a smaller window it did not offer to accept.
  assert.equal(
    r("permessage-deflate", { clientMaxWindowBits: 10 })?.response,
    "permessage-deflate",
  );
  for (
    const bad of [
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; client_max_window_bits=7",
      "permessage-deflate; server_no_context_takeover=1",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; unknown_param",
    ]
  ) assert.equal(r(bad), null, bad);
  assert.equal(r("permessage-deflate; foo, permessage-deflate")?.response, "permessage-deflate");
});

Deno.test("acceptDeflateResponse: validates the server's answer against the offer", () => {
  assert.equal(acceptDeflateResponse("", {}), null);
  assert.equal(acceptDeflateResponse(null, null), null);
  const p = acceptDeflateResponse(
    "permessage-deflate; client_no_context_takeover; server_max_window_bits=9",
    {},
  )!;
  assert.deepEqual(p, {
    ...DEFAULT_DEFLATE_PARAMS,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 9,
  });
  const bad: [string, object | null][] = [
    ["permessage-deflate", null],
    ["x-other", {}],
    ["permessage-deflate, permessage-deflate", {}],
    ["permessage-deflate; client_max_window_bits", {}],
    ["permessage-deflate; client_max_window_bits=12", { clientMaxWindowBits: 10 }],
    ["permessage-deflate", { serverNoContextTakeover: true }],
    ["permessage-deflate", { serverMaxWindowBits: 10 }],
    ["permessage-deflate; server_max_window_bits=12", { serverMaxWindowBits: 10 }],
    ["permessage-deflate; bogus", {}],
    ['permessage-deflate; x="', {}],
  ];
  for (const [header, offer] of bad) {
    assert.throws(() => acceptDeflateResponse(header, offer), HandshakeError, header);
  }
});

Deno.test("PerMessageDeflate: output inflates with plain zlib; tail stripped", () => {
  const d = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "server", { threshold: 0 });
  const msg = enc.encode("interop with zlib ".repeat(30));
  const z = d.compress(msg);
  const withTail = new Uint8Array([...z, 0, 0, 0xff, 0xff]);
  const out = zlib.inflateRawSync(withTail, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual(new Uint8Array(out), msg);
  assert.deepEqual([...d.compress(new Uint8Array(0))], [0]);
  d.dispose();
});

Deno.test("PerMessageDeflate: limit is exact; bombs and corrupt data are typed errors", () => {
  const c = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "client", { threshold: 0 });
  const s = new PerMessageDeflate(
    { ...DEFAULT_DEFLATE_PARAMS, clientNoContextTakeover: true },
    "server",
  );
  const z = c.compress(new Uint8Array(100_000));
  assert.equal(s.decompress(z, 100_000).length, 100_000);
  assert.throws(
    () => s.decompress(z, 99_999),
    (e) => e instanceof ProtocolError && e.closeCode === 1009,
  );
  const bad = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "server");
  assert.throws(
    () => bad.decompress(new Uint8Array([0xff, 0xee, 0xdd]), 1000),
    (e) => e instanceof ProtocolError && e.closeCode === 1007,
  );
  c.dispose();
  s.dispose();
  bad.dispose();
});

Deno.test("PerMessageDeflate: shouldCompress respects threshold and 8-bit windows", () => {
  const d = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "client");
  assert.equal(d.threshold, 1024);
  assert.ok(!d.shouldCompress(1023));
  assert.ok(d.shouldCompress(1024));
  const tiny = new PerMessageDeflate(
    { ...DEFAULT_DEFLATE_PARAMS, clientMaxWindowBits: 8 },
    "client",
    { threshold: 0 },
  );
  assert.ok(!tiny.shouldCompress(5000));
  assert.throws(() => tiny.compress(new Uint8Array(10)), RangeError);
});

Deno.test("PerMessageDeflate: window bits 9..15 all round-trip with takeover over many messages", () => {
  for (let bits = 9; bits <= 15; bits++) {
    const params = { ...DEFAULT_DEFLATE_PARAMS, clientMaxWindowBits: bits };
    const c = new PerMessageDeflate(params, "client", { threshold: 0 });
    const s = new PerMessageDeflate(params, "server");
    for (let i = 0; i < 20; i++) {
      const msg = enc.encode(`message ${i} `.repeat(i * 50 + 1));
      assert.deepEqual(s.decompress(c.compress(msg), 1 << 20), msg);
    }
    c.dispose();
    s.dispose();
  }
});

Deno.test("PerMessageDeflate: messages ending with a BFINAL block (RFC 7692 §7.2.3.3) all inflate", () => {
  const s = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "server");
  for (const text of ["first message", "second message", "third"]) {
    const z = new Uint8Array(zlib.deflateRawSync(enc.encode(text))); // Z_FINISH: BFINAL set
    assert.equal(new TextDecoder().decode(s.decompress(z, 1000)), text);
  }
  s.dispose();
});
