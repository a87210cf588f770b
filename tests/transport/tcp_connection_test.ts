import assert from "node:assert/strict";
import { encodeFrame, FrameParser, Opcode } from "../../src/protocol/frames.ts";
import { connect } from "../../src/transport/tcp_client.ts";
import type { WebSocketConnection } from "../../src/transport/tcp_connection.ts";
import { serve, type ServeOptions } from "../../src/transport/tcp_server.ts";
import { Deadline } from "../../src/transport/deadlines.ts";
import { closeOf, fakeServer, readFrames, SANITIZE, until } from "./tcp_helpers.ts";

/** Our server handing each connection to `onConn`; resolves the first connection. */
function server(
  onConn: (ws: WebSocketConnection) => void | Promise<void>,
  options: Partial<ServeOptions> = {},
) {
  let first!: (ws: WebSocketConnection) => void;
  const firstConn = new Promise<WebSocketConnection>((r) => (first = r));
  const s = serve({
    port: 0,
    ...options,
    onConnection: (ws) => {
      first(ws);
      return onConn(ws);
    },
  });
  return { s, url: `ws://127.0.0.1:${s.port}/`, firstConn };
}

async function echo(ws: WebSocketConnection) {
  try {
    for await (const m of ws) await ws.send(m.data);
  } catch { /* closed */ }
}

async function next(ws: WebSocketConnection) {
  for (let i = 0; i < 1000; i++) {
    const m = ws.poll();
    if (m) return m;
    if (ws.isClosed) break;
    await ws.readable();
  }
  throw new Error("no message");
}

Deno.test({
  name: "tcp: echo text and binary, in order, with stats",
  ...SANITIZE,
  async fn() {
    const { s, url } = server(echo, { compression: true });
    const ws = await connect(url);
    assert.match(ws.extensions, /permessage-deflate/);
    for (let i = 0; i < 50; i++) {
      void ws.send(i % 2 ? `text ${i}` : new Uint8Array([i, i, i]));
    }
    for (let i = 0; i < 50; i++) {
      const m = await next(ws);
      if (i % 2) assert.deepEqual(m, { type: "text", data: `text ${i}` });
      else assert.deepEqual(m, { type: "binary", data: new Uint8Array([i, i, i]) });
    }
    assert.equal(ws.stats.messagesIn, 50);
    assert.equal(ws.stats.messagesOut, 50);
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: client-initiated close carries code and reason to the server",
  ...SANITIZE,
  async fn() {
    const { s, url, firstConn } = server(echo);
    const ws = await connect(url);
    const peer = await firstConn;
    const info = await ws.close(4000, "client says bye");
    assert.deepEqual(info, { code: 4000, reason: "", wasClean: true, initiator: "local" });
    const seen = await peer.socketClosed;
    assert.deepEqual(seen, {
      code: 4000,
      reason: "client says bye",
      wasClean: true,
      initiator: "remote",
    });
    await assert.rejects(ws.send("late"), { name: "ConnectionClosedError" });
    await s.close();
  },
});

Deno.test({
  name: "tcp: server-initiated close carries code and reason to the client",
  ...SANITIZE,
  async fn() {
    const { s, url } = server((ws) => void ws.close(4001, "server says bye"));
    const ws = await connect(url);
    const info = await ws.socketClosed;
    assert.deepEqual(info, {
      code: 4001,
      reason: "server says bye",
      wasClean: true,
      initiator: "remote",
    });
    assert.equal(ws.state, "closed");
    await s.close();
  },
});

Deno.test({
  name: "tcp: close is resent after closeRetryMs and the socket dropped after closeGiveUpMs",
  ...SANITIZE,
  async fn() {
    let closeFrames = 0;
    const fake = fakeServer(async (conn) => {
      const parser = new FrameParser({ expectMasked: true });
      // Never answer; count close frames until the client drops us.
      await readFrames(conn, parser, (f) => {
        if (f.opcode === Opcode.Close) {
          closeFrames++;
          assert.equal(closeOf(f).code, 4002);
        }
        return false;
      });
    });
    const ws = await connect(`ws://127.0.0.1:${fake.port}/`, {
      closeRetryMs: 100,
      closeGiveUpMs: 400,
    });
    const t0 = Date.now();
    const info = await ws.close(4002, "are you there");
    assert.ok(Date.now() - t0 < 3000, "give-up fires within its bound");
    assert.deepEqual(info, {
      code: 1006,
      reason: "close handshake timed out",
      wasClean: false,
      initiator: "local",
    });
    await fake.done;
    assert.equal(closeFrames, 2, "the close frame was sent, then resent once");
  },
});

Deno.test({
  name: "tcp: a dropped connection reports 1006",
  ...SANITIZE,
  async fn() {
    const fake = fakeServer(async (conn) => {
      await conn.write(encodeFrame(Opcode.Text, new TextEncoder().encode("last words")));
      conn.close();
    });
    const ws = await connect(`ws://127.0.0.1:${fake.port}/`);
    const info = await ws.socketClosed;
    assert.deepEqual(info, { code: 1006, reason: "", wasClean: false, initiator: "drop" });
    assert.deepEqual(ws.poll(), { type: "text", data: "last words" }, "queued data survives");
    assert.deepEqual(await ws.closed, info);
    await fake.done;
  },
});

Deno.test({
  name: "tcp: keep-alive drops a peer that never answers pings (1006, pong timeout)",
  ...SANITIZE,
  async fn() {
    let pings = 0;
    const fake = fakeServer(async (conn) => {
      const parser = new FrameParser({ expectMasked: true });
      await readFrames(conn, parser, (f) => {
        if (f.opcode === Opcode.Ping) pings++;
        return false;
      });
    });
    const ws = await connect(`ws://127.0.0.1:${fake.port}/`, {
      pingIntervalMs: 50,
      pongTimeoutMs: 150,
    });
    const t0 = Date.now();
    const info = await ws.socketClosed;
    assert.ok(Date.now() - t0 < 3000);
    assert.deepEqual(info, {
      code: 1006,
      reason: "keep-alive pong timeout",
      wasClean: false,
      initiator: "drop",
    });
    await fake.done;
    assert.equal(pings, 1, "one ping, then the deadline");
  },
});

Deno.test({
  name: "tcp: keep-alive keeps a responsive connection open; ping() measures RTT",
  ...SANITIZE,
  async fn() {
    const pongs: number[] = [];
    const { s, url } = server(echo);
    const ws = await connect(url, {
      pingIntervalMs: 30,
      pongTimeoutMs: 500,
      onPong: () => pongs.push(1),
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(ws.state, "open");
    assert.ok(pongs.length >= 3, `pongs: ${pongs.length}`);
    const rtt = await ws.ping(2000);
    assert.ok(rtt >= 0 && rtt < 2000);
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: read back-pressure stops reading; the sender stalls; memory stays bounded",
  ...SANITIZE,
  async fn() {
    const chunk = new Uint8Array(16 * 1024);
    let sent = 0;
    let sending = true;
    const { s, url, firstConn } = server(async (ws) => {
      try {
        while (sending) {
          await ws.send(chunk);
          sent++;
        }
        await ws.send("end");
      } catch { /* closed */ }
    }, { writeHighWaterMark: 256 * 1024, writeLowWaterMark: 64 * 1024 });
    const high = 128 * 1024;
    const ws = await connect(url, { readHighWaterMark: high, readLowWaterMark: 32 * 1024 });
    const peer = await firstConn;
    // Nobody polls: the client stops reading, kernel buffers fill, the server's send() waits.
    assert.ok(await until(() => ws.readPaused), "client paused reading");
    let last = -1;
    assert.ok(
      await until(() => {
        const stalled = sent === last && peer.bufferedAmount > 256 * 1024;
        last = sent;
        return stalled;
      }),
      "server send stalled on a full buffer",
    );
    await new Promise((r) => setTimeout(r, 100));
    const stalledAt = sent;
    assert.ok(ws.queuedBytes <= high + 512 * 1024, `queued ${ws.queuedBytes}`);
    assert.ok(stalledAt * chunk.length < 64 * 1024 * 1024, "bounded by kernel buffers");
    // Drain: everything sent arrives, in order, and the server unblocks.
    sending = false;
    let got = 0;
    while (true) {
      const m = await next(ws);
      if (m.type === "text") break;
      got++;
    }
    assert.equal(got, sent);
    assert.ok(sent > stalledAt, "the sender resumed once the reader drained");
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: write back-pressure: send() awaits, bufferedAmount rises and falls",
  ...SANITIZE,
  async fn() {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let received = 0;
    const { s, url } = server(async (ws) => {
      await gate; // the server does not read until released
      for await (const _ of ws) received++;
    }, { readHighWaterMark: 64 * 1024 });
    const ws = await connect(url, {
      writeHighWaterMark: 256 * 1024,
      writeLowWaterMark: 64 * 1024,
      compression: false,
    });
    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    let pending: Promise<void> | undefined;
    for (let i = 0; i < 2000; i++) {
      const p = ws.send(chunk);
      sent++;
      const r = await Promise.race([
        p.then(() => "done"),
        new Promise((r) => setTimeout(r, 50, "wait")),
      ]);
      if (r === "wait") {
        pending = p;
        break;
      }
    }
    assert.ok(pending, "send() eventually waits");
    assert.ok(ws.bufferedAmount > 256 * 1024, `bufferedAmount ${ws.bufferedAmount}`);
    release();
    await pending;
    assert.ok(ws.bufferedAmount <= 64 * 1024 * 2);
    assert.ok(await until(() => ws.bufferedAmount === 0));
    assert.ok(await until(() => received === sent), `received ${received}/${sent}`);
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: misuse rejects instead of throwing (out-of-order fragments, bad close code)",
  ...SANITIZE,
  async fn() {
    const { s, url } = server(echo);
    const ws = await connect(url);
    await assert.rejects(ws.sendFrame(Opcode.Continuation, new Uint8Array(1), true), TypeError);
    await ws.sendFrame(Opcode.Text, new TextEncoder().encode("a"), false);
    await assert.rejects(ws.send("b"), TypeError, "a fragmented message is still open");
    await ws.sendFrame(Opcode.Continuation, new TextEncoder().encode("b"), true);
    assert.deepEqual(await next(ws), { type: "text", data: "ab" });
    await assert.rejects(ws.close(1006), RangeError);
    assert.equal((await ws.close(1000)).code, 1000);
    await s.close();
  },
});

Deno.test({
  name: "tcp: pooled binary framing survives bursts, batching and recycling (both roles)",
  ...SANITIZE,
  async fn() {
    const { s, url } = server(echo, { compression: false });
    const ws = await connect(url, { compression: false });
    const sizes = Array.from(
      { length: 300 },
      (_, i) => [512, 700, 1024, 4000, 65535, 70000][i % 6],
    );
    const sent = sizes.map((n, i) => new Uint8Array(n).fill(i & 255));
    // No awaits between sends: frames pile up, get coalesced, and their buffers are recycled
    // while later frames are still being encoded.
    const acks = sent.map((b) => ws.send(b));
    await Promise.all(acks);
    for (let i = 0; i < sent.length; i++) {
      const m = await next(ws);
      assert.equal(m.type, "binary");
      const d = m.data as Uint8Array;
      assert.equal(d.length, sizes[i], `message ${i} length`);
      assert.ok(d.every((x) => x === (i & 255)), `message ${i} content`);
    }
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: pooled text framing keeps UTF-8 intact (multi-byte, lone surrogates), both roles",
  ...SANITIZE,
  async fn() {
    const { s, url } = server(echo, { compression: false });
    const ws = await connect(url, { compression: false });
    const texts = [
      "é".repeat(600),
      "a".repeat(512),
      "😀".repeat(5000),
      "x".repeat(70_000) + "ü",
      "bad \ud800 surrogate ".repeat(40),
    ];
    await Promise.all(texts.map((t) => ws.send(t)));
    for (const t of texts) {
      const m = await next(ws);
      assert.equal(m.type, "text");
      assert.equal(m.data, new TextDecoder().decode(new TextEncoder().encode(t)));
    }
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: queued payloads stay intact while later reads arrive (copied or handed over)",
  ...SANITIZE,
  async fn() {
    const sizes = [64, 5000, 9000, 16384, 70_000, 300];
    const N = 240;
    const { s, url } = server(async (ws) => {
      for (let i = 0; i < N; i++) void ws.send(new Uint8Array(sizes[i % sizes.length]).fill(i));
      await ws.closed;
    }, { compression: false });
    const ws = await connect(url, { compression: false, readHighWaterMark: 16 << 20 });
    // Nothing is polled until every message was read: later reads must not overwrite earlier
    // messages, whether they were copied out or queued as views of their read buffer.
    assert.ok(await until(() => ws.stats.messagesIn === N));
    for (let i = 0; i < N; i++) {
      const m = await next(ws);
      assert.equal(m.type, "binary");
      const d = m.data as Uint8Array;
      assert.equal(d.length, sizes[i % sizes.length]);
      assert.ok(d.every((b) => b === (i & 255)), `message ${i} content`);
    }
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "tcp: keep-alive and close timers of many connections share one timer, none left after",
  ...SANITIZE,
  async fn() {
    const N = 20;
    const { s, url } = server(echo, { pingIntervalMs: 60_000 });
    const before = Deadline.pending;
    const clients: WebSocketConnection[] = [];
    for (let i = 0; i < N; i++) clients.push(await connect(url, { pingIntervalMs: 60_000 }));
    assert.ok(await until(() => s.connections.size === N));
    // One deadline per connection (its next ping), on the one shared timer; no timer each.
    assert.equal(Deadline.pending - before, 2 * N);
    const pongs = await Promise.all(clients.map((ws) => ws.ping(5000)));
    assert.ok(pongs.every((rtt) => rtt >= 0));
    await Promise.all(clients.map((ws) => ws.close()));
    await s.close();
    assert.equal(Deadline.pending, before, "every deadline was cancelled");
  },
});
