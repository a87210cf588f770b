/** The MessageSink fast path of WebSocketConnection (setSink), against real sockets. */
import assert from "node:assert/strict";
import { DEFAULT_DEFLATE_PARAMS, PerMessageDeflate } from "../../src/protocol/deflate.ts";
import { encodeFrame, Opcode } from "../../src/protocol/frames.ts";
import { acceptKey } from "../../src/protocol/handshake.ts";
import { connect } from "../../src/transport/tcp_client.ts";
import type { WebSocketConnection } from "../../src/transport/tcp_connection.ts";
import { serve, type ServeOptions } from "../../src/transport/tcp_server.ts";
import type { MessageSink, WireMessage } from "../../src/transport/types.ts";
import { dec, enc, fakeServer, SANITIZE, until } from "./tcp_helpers.ts";

/** Our server; `onConn` gets each connection. */
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

/** Message i of a test stream: text for odd i, binary for even i. */
function message(i: number): string | Uint8Array {
  return i % 2 ? `text ${i} é` : new Uint8Array(1 + (i % 300)).fill(i & 255);
}

function same(got: { text: boolean; data: Uint8Array }, i: number): void {
  const want = message(i);
  if (typeof want === "string") {
    assert.ok(got.text, `message ${i} is text`);
    assert.equal(dec.decode(got.data), want);
  } else {
    assert.ok(!got.text, `message ${i} is binary`);
    assert.deepEqual(got.data, want);
  }
}

/**
 * A sink that records copies and refuses when `refuse(count)` says so; `writable()` resolves when
 * `open()` is called (or at once when `autoOpen`).
 */
function recordingSink(refuse: (n: number) => boolean, autoOpen = true) {
  const got: { text: boolean; data: Uint8Array }[] = [];
  let offers = 0;
  let release: (() => void) | undefined;
  const sink: MessageSink = {
    deliver(text, payload) {
      if (refuse(offers++)) return false;
      got.push({ text, data: payload.slice() });
      return true;
    },
    writable() {
      if (autoOpen) return new Promise((r) => setTimeout(r, 1));
      return new Promise<void>((r) => (release = r));
    },
  };
  return {
    sink,
    got,
    offers: () => offers,
    open() {
      const r = release;
      release = undefined;
      r?.();
    },
  };
}

Deno.test({
  name: "sink: every message in order across refusals and writable()",
  ...SANITIZE,
  async fn() {
    const N = 400;
    const { s, url } = server(async (ws) => {
      for (let i = 0; i < N; i++) void ws.send(message(i));
      await ws.closed;
    });
    const ws = await connect(url, { compression: false });
    // Every 7th offer is refused once: the message and what follows it wait, then come in order.
    const r = recordingSink((n) => n % 7 === 3);
    ws.setSink(r.sink);
    assert.ok(await until(() => r.got.length === N), `got ${r.got.length}/${N}`);
    r.got.forEach(same);
    assert.equal(ws.poll(), undefined, "nothing goes to the queue while a sink is set");
    assert.equal(ws.stats.messagesIn, N);
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "sink: messages queued before setSink are delivered first",
  ...SANITIZE,
  async fn() {
    const N = 60;
    let go!: () => void;
    const second = new Promise<void>((r) => (go = r));
    const { s, url } = server(async (ws) => {
      for (let i = 0; i < N / 2; i++) await ws.send(message(i));
      await second;
      for (let i = N / 2; i < N; i++) await ws.send(message(i));
      await ws.closed;
    });
    const ws = await connect(url, { compression: false });
    assert.ok(await until(() => ws.stats.messagesIn === N / 2));
    const first = ws.poll()!; // one taken by poll, the rest stay queued
    assert.deepEqual(first, { type: "binary", data: message(0) });
    const r = recordingSink(() => false);
    ws.setSink(r.sink);
    go();
    assert.ok(await until(() => r.got.length === N - 1), `got ${r.got.length}`);
    r.got.forEach((g, i) => same(g, i + 1));
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "sink: a refusal stops socket reads (the sender stalls) until writable() resolves",
  ...SANITIZE,
  async fn() {
    const chunk = new Uint8Array(16 * 1024).fill(7);
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
    const ws = await connect(url, { compression: false });
    const peer = await firstConn;
    let refusing = true;
    const r = recordingSink(() => refusing, false);
    ws.setSink(r.sink);
    assert.ok(await until(() => ws.readPaused), "reading paused on the refusal");
    let last = -1;
    assert.ok(
      await until(() => {
        const stalled = sent === last && peer.bufferedAmount > 256 * 1024;
        last = sent;
        return stalled;
      }),
      "server send stalled on a full buffer",
    );
    const bytesIn = ws.stats.bytesIn;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(ws.stats.bytesIn, bytesIn, "no socket read while the sink refuses");
    assert.equal(r.got.length, 0);
    const stalledAt = sent;
    // Writable: the kept messages go first, then reading resumes and the sender unblocks.
    sending = false;
    refusing = false;
    r.open();
    assert.ok(await until(() => r.got.at(-1)?.text === true), "the end marker arrived");
    assert.equal(r.got.length, sent + 1);
    assert.ok(r.got.slice(0, -1).every((g) => !g.text && g.data.length === chunk.length));
    assert.ok(sent > stalledAt, "the sender resumed once the sink took messages again");
    assert.ok(!ws.readPaused);
    await ws.close();
    await s.close();
  },
});

Deno.test({
  name: "sink: fragmented and compressed messages arrive whole, text as UTF-8 bytes",
  ...SANITIZE,
  async fn() {
    const long = "compressible ünïcode text ".repeat(400);
    const blob = new Uint8Array(50_000).map((_, i) => i % 7);
    const { s, url } = server(async (ws) => {
      await ws.sendFrame(Opcode.Text, enc.encode("frag"), false);
      await ws.sendFrame(Opcode.Continuation, enc.encode("mé"), false);
      await ws.sendFrame(Opcode.Continuation, enc.encode("nted"), true);
      await ws.sendFrame(Opcode.Binary, blob.subarray(0, 20_000), false);
      await ws.sendFrame(Opcode.Continuation, blob.subarray(20_000), true);
      await ws.send(long); // compressed
      await ws.send(blob); // compressed
      await ws.closed;
    }, { compression: true });
    const ws = await connect(url);
    assert.match(ws.extensions, /permessage-deflate/);
    const r = recordingSink(() => false);
    ws.setSink(r.sink);
    assert.ok(await until(() => r.got.length === 4));
    assert.deepEqual(r.got.map((g) => g.text), [true, false, true, false]);
    assert.equal(dec.decode(r.got[0].data), "fragménted");
    assert.deepEqual(r.got[1].data, blob);
    assert.equal(dec.decode(r.got[2].data), long);
    assert.deepEqual(r.got[3].data, blob);
    await ws.close();
    await s.close();
  },
});

/** A raw server that negotiates permessage-deflate, then writes `frames` and waits. */
function badTextServer(frames: Uint8Array[]) {
  return fakeServer(
    async (conn) => {
      for (const f of frames) await conn.write(f);
      const buf = new Uint8Array(1024);
      while ((await conn.read(buf).catch(() => null)) !== null) { /* until the client closes */ }
    },
    (key) =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
      "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
  );
}

Deno.test({
  name: "sink: invalid UTF-8 closes with 1007 (whole frame, fragment, after inflate)",
  ...SANITIZE,
  async fn() {
    const ok = encodeFrame(Opcode.Text, enc.encode("fine"));
    const deflater = new PerMessageDeflate(DEFAULT_DEFLATE_PARAMS, "server", { threshold: 0 });
    const inflatedBad = encodeFrame(
      Opcode.Text,
      deflater.compress(new Uint8Array(300).fill(0xc3)),
      { rsv1: true },
    );
    deflater.dispose();
    const cases = [
      [ok, encodeFrame(Opcode.Text, new Uint8Array([0x61, 0xed, 0xa0, 0x80]))],
      [
        ok,
        encodeFrame(Opcode.Text, new Uint8Array([0x61, 0xf4]), { fin: false }),
        encodeFrame(Opcode.Continuation, new Uint8Array([0x90]), { fin: false }), // never ends
      ],
      [ok, inflatedBad],
    ];
    for (const frames of cases) {
      const fake = badTextServer(frames);
      const ws = await connect(`ws://127.0.0.1:${fake.port}/`);
      const r = recordingSink(() => false);
      ws.setSink(r.sink);
      const info = await ws.closed;
      assert.equal(info.code, 1007, info.reason);
      assert.equal(r.got.length, 1, "only the valid message was delivered");
      assert.equal(dec.decode(r.got[0].data), "fine");
      await fake.done;
    }
  },
});

Deno.test({
  name: "sink: a close while messages are kept: `closed` waits until they were delivered",
  ...SANITIZE,
  async fn() {
    const N = 20;
    const { s, url } = server(async (ws) => {
      for (let i = 0; i < N; i++) await ws.send(message(i));
      await ws.closed;
    });
    const ws = await connect(url, { compression: false });
    let refusing = true;
    const r = recordingSink(() => refusing, false);
    ws.setSink(r.sink);
    assert.ok(await until(() => ws.readPaused && ws.stats.messagesIn === N));
    // Our close is sent and the peer's answer read although messages wait for the sink.
    const info = await ws.close(4000, "bye");
    assert.deepEqual(info, { code: 4000, reason: "", wasClean: true, initiator: "local" });
    let settled = false;
    void ws.closed.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(!settled, "closed waits for the kept messages");
    assert.equal(r.got.length, 0);
    refusing = false;
    r.open();
    assert.deepEqual(await ws.closed, info);
    assert.equal(r.got.length, N);
    r.got.forEach(same);
    await s.close();
  },
});

Deno.test({
  name: "sink: setSink(undefined) mid-stream returns the rest to poll(), in order",
  ...SANITIZE,
  async fn() {
    const N = 300;
    let go!: () => void;
    const more = new Promise<void>((r) => (go = r));
    const { s, url } = server(async (ws) => {
      for (let i = 0; i < N / 2; i++) void ws.send(message(i));
      await more;
      for (let i = N / 2; i < N; i++) void ws.send(message(i));
      await ws.closed;
    });
    const ws = await connect(url, { compression: false });
    // The sink refuses the 100th offer and is then removed: that message and everything after it
    // come out of poll().
    const r = recordingSink((n) => n >= 100, false);
    ws.setSink(r.sink);
    assert.ok(await until(() => r.offers() > 100 || ws.stats.messagesIn === N / 2));
    ws.setSink(undefined);
    go();
    const rest: WireMessage[] = [];
    for (let i = 0; i < 2000 && r.got.length + rest.length < N; i++) {
      const m = ws.poll();
      if (m) rest.push(m);
      else await ws.readable();
    }
    assert.equal(r.got.length, 100);
    r.got.forEach(same);
    assert.equal(rest.length, N - 100);
    rest.forEach((m, k) => {
      const want = message(100 + k);
      assert.deepEqual(
        m,
        typeof want === "string" ? { type: "text", data: want } : { type: "binary", data: want },
      );
    });
    await ws.close();
    await s.close();
  },
});
