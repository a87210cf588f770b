import assert from "node:assert/strict";
import { HandshakeError } from "../../src/protocol/errors.ts";
import {
  acceptKey,
  buildClientRequest,
  buildHttpResponse,
  generateKey,
  hasToken,
  HttpHeadReader,
  isValidKey,
  negotiateServer,
  parseRequestHead,
  parseResponseHead,
  rejectionResponse,
  validateServerResponse,
} from "../../src/protocol/handshake.ts";
import { ProtocolConnection } from "../../src/protocol/connection.ts";
import { concat, dec, enc } from "./helpers.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

Deno.test("acceptKey: the RFC 6455 §1.3 example", () => {
  assert.equal(acceptKey(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("generateKey: base64 of 16 random bytes, different each time", () => {
  const a = generateKey();
  assert.ok(isValidKey(a));
  assert.equal(atob(a).length, 16);
  assert.notEqual(a, generateKey());
  assert.ok(!isValidKey(btoa("x".repeat(15))));
  assert.ok(!isValidKey(btoa("x".repeat(17))));
});

Deno.test("hasToken: case-insensitive, inside comma lists", () => {
  assert.ok(hasToken("keep-alive, Upgrade", "upgrade"));
  assert.ok(hasToken("UPGRADE", "upgrade"));
  assert.ok(!hasToken("keep-alive", "upgrade"));
  assert.ok(!hasToken("upgrades", "upgrade"));
  assert.ok(!hasToken(null, "upgrade"));
});

Deno.test("buildClientRequest: request line, Host with port, handshake and user headers", () => {
  const text = dec.decode(buildClientRequest("ws://example.com:8080/chat?room=1", {
    key: KEY,
    protocols: ["v2.chat", "v1.chat"],
    deflate: {},
    headers: { Origin: "http://example.com", Authorization: "Bearer t" },
  }));
  const lines = text.split("\r\n");
  assert.equal(lines[0], "GET /chat?room=1 HTTP/1.1");
  assert.ok(text.endsWith("\r\n\r\n"));
  for (
    const l of [
      "Host: example.com:8080",
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${KEY}`,
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Protocol: v2.chat, v1.chat",
      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
      "Origin: http://example.com",
      "Authorization: Bearer t",
    ]
  ) assert.ok(lines.includes(l), l);
  const plain = dec.decode(buildClientRequest(new URL("wss://example.com/"), { key: KEY }));
  assert.ok(plain.includes("Host: example.com\r\n"));
  assert.ok(!plain.includes("Sec-WebSocket-Protocol"));
});

Deno.test("buildClientRequest: refuses header injection, reserved headers, bad input", () => {
  assert.throws(
    () => buildClientRequest("ws://a/", { key: KEY, headers: { "X-A": "1\r\nEvil: 1" } }),
    TypeError,
  );
  assert.throws(
    () => buildClientRequest("ws://a/", { key: KEY, headers: { "Bad Name": "1" } }),
    TypeError,
  );
  assert.throws(
    () => buildClientRequest("ws://a/", { key: KEY, headers: { "Sec-WebSocket-Key": KEY } }),
    TypeError,
  );
  assert.throws(() => buildClientRequest("ftp://a/", { key: KEY }), TypeError);
  assert.throws(() => buildClientRequest("ws://a/", { key: "short" }), TypeError);
  assert.throws(() => buildClientRequest("ws://a/", { key: KEY, protocols: ["a b"] }), TypeError);
  assert.throws(
    () => buildClientRequest("ws://a/", { key: KEY, protocols: ["a", "a"] }),
    TypeError,
  );
  const custom = dec.decode(buildClientRequest("ws://a/", { key: KEY, headers: { host: "b" } }));
  assert.ok(custom.includes("Host: b\r\n") && !custom.includes("Host: a"));
});

Deno.test("full handshake loop: client request → server 101 → client check, frames right behind", () => {
  const key = generateKey();
  const clientOpts = { key, protocols: ["b", "a"], deflate: { clientMaxWindowBits: 12 } };
  const request = buildClientRequest("ws://localhost:9/x", clientOpts);
  const reqReader = new HttpHeadReader("request");
  assert.equal(reqReader.push(request.subarray(0, 10)), undefined);
  const head = reqReader.push(request.subarray(10))!;
  assert.equal(head.target, "/x");
  const n = negotiateServer(head, { protocols: ["a", "b"], deflate: {} });
  assert.ok("accept" in n);
  assert.equal(n.protocol, "b"); // the client's preference order wins by default
  assert.equal(n.extensions, "permessage-deflate; client_max_window_bits=12");
  // The server's first frame arrives in the same read as its 101.
  const server = new ProtocolConnection({ role: "server", deflate: n.deflate });
  server.sendText("welcome");
  const resReader = new HttpHeadReader("response");
  const res = resReader.push(concat(n.accept, ...server.takeOutgoing()))!;
  const result = validateServerResponse(res, clientOpts);
  assert.equal(result.protocol, "b");
  assert.equal(result.deflate?.clientMaxWindowBits, 12);
  const client = new ProtocolConnection({ role: "client", deflate: result.deflate });
  client.receive(resReader.rest);
  assert.deepEqual(client.nextEvent(), { type: "text", data: "welcome" });
});

Deno.test("negotiateServer works on a fetch Request (Deno.serve)", () => {
  const req = new Request("http://localhost/", {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": KEY,
      "sec-websocket-version": "13",
      host: "localhost",
    },
  });
  const n = negotiateServer(req);
  assert.ok("accept" in n);
  assert.equal(n.responseHeaders["Sec-WebSocket-Accept"], acceptKey(KEY));
  const text = dec.decode(n.accept);
  assert.ok(text.startsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  assert.ok(text.endsWith("\r\n\r\n"));
});

function req(extra: Record<string, string>, method = "GET") {
  const headers = new Headers({
    host: "h",
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": KEY,
    "sec-websocket-version": "13",
  });
  for (const [k, v] of Object.entries(extra)) v === "" ? headers.delete(k) : headers.set(k, v);
  return { method, headers, version: "HTTP/1.1" };
}

Deno.test("negotiateServer: rejections carry the status, headers and a body saying why", () => {
  const r405 = negotiateServer(req({}, "POST"));
  assert.ok("reject" in r405 && r405.reject.status === 405 && r405.reject.headers.Allow === "GET");
  const r426 = negotiateServer(req({ "sec-websocket-version": "8" }));
  assert.ok("reject" in r426 && r426.reject.headers["Sec-WebSocket-Version"] === "13");
  const r400 = negotiateServer(req({ "sec-websocket-key": "" }));
  assert.ok("reject" in r400 && r400.reject.status === 400 && /Key/.test(r400.reject.body));
  const bytes = dec.decode(rejectionResponse(r426.reject));
  assert.ok(bytes.startsWith("HTTP/1.1 426 Upgrade Required\r\n"));
  assert.ok(bytes.includes("Sec-WebSocket-Version: 13\r\n"));
  assert.ok(bytes.includes("Content-Length: "));
  assert.ok(bytes.endsWith(r426.reject.body));
});

Deno.test("negotiateServer: selectProtocol, no match, and refusing extra reserved headers", () => {
  const offered = req({ "sec-websocket-protocol": "x, y" });
  const picked = negotiateServer(offered, { selectProtocol: (list) => list[1] });
  assert.ok("accept" in picked && picked.protocol === "y");
  const none = negotiateServer(offered, { protocols: ["z"] });
  assert.ok(
    "accept" in none && none.protocol === "" && !("Sec-WebSocket-Protocol" in none.responseHeaders),
  );
  assert.throws(() => negotiateServer(offered, { selectProtocol: () => "z" }), TypeError);
  assert.throws(() => negotiateServer(req({}), { headers: { Upgrade: "x" } }), TypeError);
  const extra = negotiateServer(req({}), { headers: { "X-Server": "wse" } });
  assert.ok("accept" in extra && dec.decode(extra.accept).includes("X-Server: wse\r\n"));
});

Deno.test("negotiateServer: deflate declined when not enabled, or offer unparsable", () => {
  const offer = req({ "sec-websocket-extensions": "permessage-deflate" });
  const off = negotiateServer(offer);
  assert.ok("accept" in off && off.deflate === null && off.extensions === "");
  const broken = negotiateServer(req({ "sec-websocket-extensions": 'permessage-deflate; x="' }), {
    deflate: {},
  });
  assert.ok("accept" in broken && broken.deflate === null);
});

Deno.test("parseRequestHead / parseResponseHead: incremental, limits, errors", () => {
  const raw = enc.encode("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\nrest");
  for (let cut = 0; cut < raw.length - 4; cut++) {
    assert.equal(parseRequestHead(raw.subarray(0, cut)), undefined);
  }
  const r = parseRequestHead(raw)!;
  assert.equal(r.bytesConsumed, raw.length - 4);
  assert.equal(r.head.headers.get("x-dup"), "1, 2");
  assert.throws(
    () => parseRequestHead(new Uint8Array(16 * 1024).fill(65)),
    (e) => e instanceof HandshakeError && e.status === 431,
  );
  assert.throws(
    () => parseResponseHead(new Uint8Array(16 * 1024).fill(65)),
    (e) => e instanceof HandshakeError && e.status === undefined,
  );
  assert.throws(() => parseResponseHead(enc.encode("HTTP/1.1 abc\r\n\r\n")), HandshakeError);
  assert.throws(
    () => parseResponseHead(enc.encode("HTTP/1.1 101 OK\r\nBad Header\r\n\r\n")),
    HandshakeError,
  );
  const reader = new HttpHeadReader("response");
  reader.push(enc.encode("HTTP/1.1 101 OK\r\n\r\n"));
  assert.throws(() => reader.push(enc.encode("x")));
});

Deno.test("validateServerResponse: a 3xx says redirects are not followed", () => {
  const head =
    parseResponseHead(enc.encode("HTTP/1.1 301 Moved\r\nLocation: ws://b/\r\n\r\n"))!.head;
  assert.throws(
    () => validateServerResponse(head, { key: KEY }),
    (e) =>
      e instanceof HandshakeError && e.status === 301 && e.location === "ws://b/" &&
      /redirects are not followed/.test(e.message),
  );
});

Deno.test("buildHttpResponse: 101 has no body headers", () => {
  const t = dec.decode(buildHttpResponse(101, { Upgrade: "websocket" }));
  assert.equal(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
});
