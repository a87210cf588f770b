import assert from "node:assert/strict";
import { createServer } from "node:http";
import { decodeClosePayload } from "../../src/protocol/close.ts";
import { encodeFrame, FrameParser, Opcode } from "../../src/protocol/frames.ts";
import { connect } from "../../src/transport/tcp_client.ts";
import type { WebSocketConnection } from "../../src/transport/tcp_connection.ts";
import { handleNodeUpgrade, serve } from "../../src/transport/tcp_server.ts";
import type { CloseInfo } from "../../src/transport/types.ts";
import { dec, enc, KEY, rawClient, readAll, readFrames, SANITIZE } from "./tcp_helpers.ts";

const upgradeHead = (extra = "", method = "GET", version = "13") =>
  `${method} / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n` +
  `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: ${version}\r\n${extra}\r\n`;

async function answerTo(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(request)).catch(() => {});
  const text = dec.decode(await readAll(conn));
  conn.close();
  return text;
}

Deno.test({
  name: "tcp server: bad handshakes get 400, 405, 426, 431, 403 over a real socket",
  ...SANITIZE,
  async fn() {
    const errors: unknown[] = [];
    const s = serve({
      port: 0,
      checkOrigin: (origin) => origin !== "http://evil.example",
      onConnection: () => assert.fail("no connection expected"),
      onError: (e) => errors.push(e),
    });
    const cases: [string, string, RegExp][] = [
      ["missing key", upgradeHead().replace(/Sec-WebSocket-Key.*\r\n/, ""), /^HTTP\/1.1 400 /],
      ["no Upgrade", upgradeHead().replace("Upgrade: websocket\r\n", ""), /^HTTP\/1.1 400 /],
      ["garbage", "HELLO\r\n\r\n", /^HTTP\/1.1 400 /],
      ["POST", upgradeHead("", "POST"), /^HTTP\/1.1 405 [^]*Allow: GET/],
      ["version 8", upgradeHead("", "GET", "8"), /^HTTP\/1.1 426 [^]*Sec-WebSocket-Version: 13/],
      ["huge head", upgradeHead(`X-Big: ${"a".repeat(20_000)}\r\n`), /^HTTP\/1.1 431 /],
      ["origin", upgradeHead("Origin: http://evil.example\r\n"), /^HTTP\/1.1 403 /],
    ];
    for (const [name, request, expected] of cases) {
      assert.match(await answerTo(s.port, request), expected, name);
    }
    assert.equal(errors.length, cases.length);
    assert.equal(s.connections.size, 0);
    await s.close();
  },
});

Deno.test({
  name: "tcp server: a slow-loris handshake is dropped after handshakeTimeoutMs",
  ...SANITIZE,
  async fn() {
    const s = serve({ port: 0, handshakeTimeoutMs: 200, onConnection: () => {} });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    const t0 = Date.now();
    const rest = await readAll(conn, 5000);
    assert.ok(Date.now() - t0 < 3000, "dropped within its timeout");
    assert.equal(rest.length, 0, "no answer, just a close");
    conn.close();
    await s.close();
  },
});

async function hostile(
  frame: Uint8Array,
  options = {},
): Promise<{ sent: number; info: CloseInfo }> {
  let conn!: WebSocketConnection;
  let r!: () => void;
  const got = new Promise<void>((res) => (r = res));
  const s = serve({
    port: 0,
    maxPayload: 1024,
    ...options,
    onConnection: (ws) => {
      conn = ws;
      r();
    },
  });
  const raw = await rawClient(s.port);
  await got;
  assert.match(raw.head, /^HTTP\/1.1 101 /);
  await raw.conn.write(frame);
  const frames = await readFrames(
    raw.conn,
    new FrameParser({ expectMasked: false }),
    (f) => f.opcode === Opcode.Close,
  );
  const close = frames.find((f) => f.opcode === Opcode.Close);
  assert.ok(close, "the server sent a close frame");
  const tail = await readAll(raw.conn, 3000); // then the server closes TCP
  assert.equal(tail.length, 0);
  raw.conn.close();
  const info = await conn.socketClosed;
  await s.close();
  return { sent: decodeClosePayload(close.payload).code, info };
}

const mask = new Uint8Array([1, 2, 3, 4]);

Deno.test({
  name: "tcp server: hostile frames get the right close code and no leak",
  ...SANITIZE,
  async fn() {
    const cases: [string, Uint8Array, number][] = [
      ["unmasked frame", encodeFrame(Opcode.Text, enc.encode("hi")), 1002],
      ["invalid UTF-8", encodeFrame(Opcode.Text, new Uint8Array([0xc3, 0x28]), { mask }), 1007],
      ["too big", encodeFrame(Opcode.Binary, new Uint8Array(2048), { mask }), 1009],
      ["reserved opcode", encodeFrame(3, new Uint8Array(1), { mask }), 1002],
      [
        "RSV1 without deflate",
        encodeFrame(Opcode.Text, enc.encode("x"), { mask, rsv1: true }),
        1002,
      ],
      ["fragmented ping", encodeFrame(Opcode.Ping, new Uint8Array(1), { mask, fin: false }), 1002],
      ["stray continuation", encodeFrame(Opcode.Continuation, enc.encode("x"), { mask }), 1002],
    ];
    for (const [name, frame, code] of cases) {
      const r = await hostile(frame);
      assert.equal(r.sent, code, name);
      assert.equal(r.info.code, code, name);
      assert.equal(r.info.wasClean, false, name);
    }
  },
});

Deno.test({
  name: "tcp server: close() says 1001 to every client and waits for them",
  ...SANITIZE,
  async fn() {
    const s = serve({ port: 0, onConnection: async (ws) => void (await ws.closed) });
    const a = await connect(`ws://127.0.0.1:${s.port}/`);
    const b = await connect(`ws://127.0.0.1:${s.port}/`);
    while (s.connections.size < 2) await new Promise((r) => setTimeout(r, 5));
    await s.close();
    for (const ws of [a, b]) {
      const info = await ws.socketClosed;
      assert.equal(info.code, 1001);
      assert.equal(info.initiator, "remote");
    }
  },
});

Deno.test({
  name: "tcp server: handleNodeUpgrade upgrades node:http sockets (echo, close, bad request)",
  ...SANITIZE,
  async fn() {
    const closes: CloseInfo[] = [];
    const tasks: Promise<unknown>[] = [];
    const server = createServer((_req, res) => res.end("plain"));
    server.on("upgrade", (req, socket, head) => {
      tasks.push((async () => {
        const ws = await handleNodeUpgrade(req, socket, head, { protocols: ["p1"] });
        if (!ws) return;
        for await (const m of ws) await ws.send(m.data);
        closes.push(await ws.socketClosed);
      })());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const ws = await connect(`ws://127.0.0.1:${port}/`, { protocols: ["p1"] });
    assert.equal(ws.protocol, "p1");
    await ws.send("via node:http");
    await ws.send(new Uint8Array(100_000).fill(9));
    const got = [];
    for await (const m of ws) {
      got.push(m);
      if (got.length === 2) break;
    }
    assert.deepEqual(got[0], { type: "text", data: "via node:http" });
    assert.equal((got[1].data as Uint8Array).length, 100_000);
    const info = await ws.close(4005, "node bye");
    assert.equal(info.code, 4005);
    assert.match(await answerTo(port, upgradeHead("", "GET", "7")), /^HTTP\/1.1 426 /);
    await Promise.all(tasks);
    assert.deepEqual(closes, [{
      code: 4005,
      reason: "node bye",
      wasClean: true,
      initiator: "remote",
    }]);
    await new Promise<void>((r) => server.close(() => r()));
  },
});
