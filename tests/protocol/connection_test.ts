import assert from "node:assert/strict";
import { ProtocolConnection, type ProtocolOptions } from "../../src/protocol/connection.ts";
import { DEFAULT_DEFLATE_PARAMS } from "../../src/protocol/deflate.ts";
import { InvalidStateError, ProtocolError } from "../../src/protocol/errors.ts";
import { type Frame, FrameParser, Opcode } from "../../src/protocol/frames.ts";
import {
  concat,
  drain,
  enc,
  outgoingFrames,
  rawFrame,
  sentCloseCode,
  summarize,
} from "./helpers.ts";

/** Parses everything a connection queued into frames (with flags), as its peer would. */
function wireFrames(chunks: Uint8Array[]): Frame[] {
  const p = new FrameParser({ allowRsv1: true });
  const out: Frame[] = [];
  for (const c of chunks) {
    p.push(c.slice());
    let f;
    while ((f = p.next()) !== undefined) out.push(f);
  }
  return out;
}

function pair(extra: Partial<ProtocolOptions> = {}) {
  const client = new ProtocolConnection({ role: "client", ...extra });
  const server = new ProtocolConnection({ role: "server", ...extra });
  return { client, server };
}
/** Moves a's outgoing bytes into b. */
function pipe(a: ProtocolConnection, b: ProtocolConnection): Uint8Array[] {
  const out = a.takeOutgoing();
  for (const bytes of out) b.receive(bytes);
  return out;
}

Deno.test("client and server exchange text and binary; client masks, server does not", () => {
  const { client, server } = pair();
  client.sendText("héllo");
  client.sendBinary(new Uint8Array([1, 2, 3]));
  const wire = pipe(client, server);
  assert.ok(wireFrames(wire).every((f) => f.masked));
  assert.deepEqual(drain(server).map(summarize), ["text:héllo", "binary:3"]);
  server.sendText("back");
  const back = pipe(server, client);
  assert.ok(wireFrames(back).every((f) => !f.masked));
  assert.deepEqual(drain(client), [{ type: "text", data: "back" }]);
  assert.equal(client.state, "open");
  assert.deepEqual(client.takeOutgoing(), []);
});

Deno.test("sending does not alter the caller's buffer (masking works on a copy)", () => {
  const { client } = pair();
  const data = new Uint8Array(100).fill(42);
  client.sendBinary(data);
  assert.ok(data.every((b) => b === 42));
});

Deno.test("randomMask option supplies the masking keys", () => {
  let calls = 0;
  const client = new ProtocolConnection({
    role: "client",
    randomMask: () => (calls++, new Uint8Array([0, 0, 0, 0])),
  });
  client.sendText("abc");
  const [frame] = client.takeOutgoing();
  assert.equal(calls, 1);
  assert.deepEqual([...frame.subarray(6)], [...enc.encode("abc")]); // zero key = plain payload
});

Deno.test("ping gets an automatic pong with the same payload; autoPong: false turns it off", () => {
  const { client, server } = pair();
  client.ping(enc.encode("p1"));
  pipe(client, server);
  assert.deepEqual(drain(server).map(summarize), ["ping:2"]);
  const frames = outgoingFrames(server);
  assert.deepEqual(frames.map((f) => [f.opcode, new TextDecoder().decode(f.payload)]), [[
    10,
    "p1",
  ]]);
  const quiet = new ProtocolConnection({ role: "server", autoPong: false });
  quiet.receive(rawFrame(Opcode.Ping, "x"));
  assert.deepEqual(quiet.takeOutgoing(), []);
  assert.throws(() => client.ping(new Uint8Array(126)), RangeError);
});

Deno.test("close handshake started by the client", () => {
  const { client, server } = pair();
  client.close(1000, "bye");
  assert.equal(client.state, "closing");
  assert.deepEqual(client.closeSent, { code: 1000, reason: "bye" });
  assert.throws(() => client.sendText("late"), InvalidStateError);
  client.close(1001); // a second close does nothing
  pipe(client, server);
  assert.deepEqual(drain(server), [{ type: "close", code: 1000, reason: "bye" }]);
  assert.equal(server.state, "closed");
  assert.deepEqual(server.closeReceived, { code: 1000, reason: "bye" });
  assert.equal(server.shouldCloseTransport, false); // its echo is not written yet
  pipe(server, client);
  assert.equal(server.shouldCloseTransport, true);
  assert.deepEqual(drain(client), [{ type: "close", code: 1000, reason: "" }]);
  assert.equal(client.state, "closed");
  assert.equal(client.shouldCloseTransport, false); // the client waits for the server's FIN
  assert.deepEqual(client.takeOutgoing(), []); // no echo of an echo
  client.receiveEof();
  assert.equal(client.shouldCloseTransport, true);
});

Deno.test("close without a code sends an empty payload; invalid codes and reasons are refused", () => {
  const { client, server } = pair();
  assert.throws(() => client.close(1006), RangeError);
  assert.throws(() => client.close(1000, "x".repeat(124)), RangeError);
  assert.equal(client.state, "open");
  client.close(1005);
  pipe(client, server);
  assert.deepEqual(drain(server).map(summarize), ["close:1005"]);
  const echo = outgoingFrames(server);
  assert.equal(echo[0].opcode, Opcode.Close);
  assert.equal(echo[0].payload.length, 0);
});

Deno.test("data sent by the peer after our close is still delivered until its close", () => {
  const { client, server } = pair();
  server.close(1001, "going away");
  client.sendText("in flight");
  pipe(client, server);
  assert.deepEqual(drain(server).map(summarize), ["text:in flight"]);
});

Deno.test("fatal error: error event last, close frame queued, then nothing more", () => {
  const server = new ProtocolConnection({ role: "server" });
  server.receive(
    concat(rawFrame(Opcode.Text, "ok"), rawFrame(3, "bad"), rawFrame(Opcode.Text, "x")),
  );
  const events = drain(server);
  assert.deepEqual(events.map(summarize), ["text:ok", "error:1002"]);
  const err = events[1].type === "error" ? events[1].error : undefined;
  assert.ok(err instanceof ProtocolError);
  assert.equal(server.error, err);
  assert.equal(server.state, "closing");
  assert.equal(server.shouldCloseTransport, false);
  const frames = outgoingFrames(server);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].opcode, Opcode.Close);
  assert.equal((frames[0].payload[0] << 8) | frames[0].payload[1], 1002);
  assert.equal(server.state, "closed");
  assert.equal(server.shouldCloseTransport, true);
  server.receive(rawFrame(Opcode.Text, "more"));
  assert.deepEqual(drain(server), []);
  assert.throws(() => server.sendText("x"), InvalidStateError);
});

Deno.test("EOF: closed, no close frame received (the transport reports 1006)", () => {
  const server = new ProtocolConnection({ role: "server" });
  server.receive(rawFrame(Opcode.Text, "part", { fin: false }));
  server.receiveEof();
  assert.equal(server.state, "closed");
  assert.equal(server.closeReceived, undefined);
  assert.equal(server.shouldCloseTransport, true);
  assert.deepEqual(drain(server), []);
  assert.throws(() => server.ping(), InvalidStateError);
});

Deno.test("UTF-8 fails fast: the error comes with the fragment, before the message ends", () => {
  const server = new ProtocolConnection({ role: "server" });
  server.receive(rawFrame(Opcode.Text, new Uint8Array([0x61, 0xf4]), { fin: false }));
  assert.deepEqual(drain(server), []);
  server.receive(rawFrame(Opcode.Continuation, new Uint8Array([0x90]), { fin: false }));
  assert.deepEqual(drain(server).map(summarize), ["error:1007"]);
});

Deno.test("sendFrame: manual fragmentation with a ping in between, order enforced", () => {
  const { client, server } = pair();
  assert.throws(() => client.sendFrame(Opcode.Continuation, enc.encode("x"), true), TypeError);
  client.sendFrame(Opcode.Text, enc.encode("frag"), false);
  assert.throws(() => client.sendText("other"), TypeError);
  assert.throws(() => client.sendFrame(Opcode.Binary, enc.encode("x"), true), TypeError);
  assert.throws(() => client.sendFrame(Opcode.Ping, enc.encode("x"), false), TypeError);
  assert.throws(() => client.sendFrame(Opcode.Close, new Uint8Array(0), true), TypeError);
  assert.throws(() => client.sendFrame(5, new Uint8Array(0), true), TypeError);
  client.ping();
  client.sendFrame(Opcode.Continuation, enc.encode("men"), false);
  client.sendFrame(Opcode.Continuation, enc.encode("ted"), true);
  client.sendText("next");
  pipe(client, server);
  assert.deepEqual(drain(server).map(summarize), ["ping:0", "text:fragmented", "text:next"]);
});

Deno.test("maxMessageSize applies to whole, fragmented and inflated messages", () => {
  const server = new ProtocolConnection({ role: "server", maxMessageSize: 10 });
  server.receive(rawFrame(Opcode.Binary, new Uint8Array(10)));
  assert.deepEqual(drain(server).map(summarize), ["binary:10"]);
  server.receive(rawFrame(Opcode.Binary, new Uint8Array(11)));
  assert.deepEqual(drain(server).map(summarize), ["error:1009"]);
});

Deno.test("permessage-deflate end to end: threshold, RSV1, context takeover", () => {
  const { client, server } = pair({
    deflate: DEFAULT_DEFLATE_PARAMS,
    deflateOptions: { threshold: 16 },
  });
  const long = "compress me please, compress me please, compress me please";
  client.sendText("tiny");
  client.sendText(long);
  client.sendText(long);
  const wire = client.takeOutgoing();
  const frames = wireFrames(wire);
  assert.equal(frames[0].rsv1, false); // under the threshold: plain
  assert.equal(frames[1].rsv1, true);
  assert.ok(
    frames[2].payload.length < frames[1].payload.length,
    "context takeover: repeat is smaller",
  );
  for (const b of wire) server.receive(b);
  assert.deepEqual(drain(server).map((e) => e.type === "text" && e.data), ["tiny", long, long]);
  server.sendBinary(new Uint8Array(5000).fill(65));
  pipe(server, client);
  const [ev] = drain(client);
  assert.ok(ev.type === "binary" && ev.data.length === 5000 && ev.data.every((b) => b === 65));
});

Deno.test("permessage-deflate with no context takeover both ways resets per message", () => {
  const params = {
    ...DEFAULT_DEFLATE_PARAMS,
    clientNoContextTakeover: true,
    serverNoContextTakeover: true,
  };
  const { client, server } = pair({ deflate: params, deflateOptions: { threshold: 0 } });
  const msg = "no takeover no takeover no takeover";
  client.sendText(msg);
  client.sendText(msg);
  const wire = client.takeOutgoing();
  const frames = wireFrames(wire);
  assert.equal(frames[0].payload.length, frames[1].payload.length);
  for (const b of wire) server.receive(b);
  assert.deepEqual(drain(server).map(summarize), [`text:${msg}`, `text:${msg}`]);
});

Deno.test("an 8-bit window for our compressor means we send uncompressed", () => {
  const params = { ...DEFAULT_DEFLATE_PARAMS, serverMaxWindowBits: 8 };
  const server = new ProtocolConnection({
    role: "server",
    deflate: params,
    deflateOptions: { threshold: 0 },
  });
  server.sendText("x".repeat(2000));
  const [frame] = server.takeOutgoing();
  assert.equal(frame[0] & 0x40, 0);
});

Deno.test("large binary message split in 1 KiB reads", () => {
  const { client, server } = pair();
  const data = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
  client.sendBinary(data);
  const [wire] = client.takeOutgoing();
  for (let i = 0; i < wire.length; i += 1024) server.receive(wire.slice(i, i + 1024));
  const [ev] = drain(server);
  assert.ok(ev.type === "binary");
  assert.deepEqual(ev.data, data);
});

Deno.test("small frames are packed into one buffer; handed-out bytes are never rewritten", () => {
  const server = new ProtocolConnection({ role: "server" });
  server.sendText("one");
  server.ping();
  const first = server.takeOutgoing();
  assert.equal(first.length, 1); // two frames, one write
  const snapshot = first[0].slice();
  for (let i = 0; i < 5000; i++) server.sendBinary(new Uint8Array(10).fill(i & 0xff));
  server.sendBinary(new Uint8Array(10000)); // a big frame goes out on its own, in order
  server.sendText("last");
  const rest = server.takeOutgoing();
  assert.deepEqual(first[0], snapshot);
  assert.ok(rest.length < 20);
  const frames = wireFrames(rest);
  assert.equal(frames.length, 5002);
  assert.equal(frames[4999].payload[0], 4999 & 0xff);
  assert.equal(frames[5000].payload.length, 10000);
  assert.equal(new TextDecoder().decode(frames[5001].payload), "last");
});

Deno.test("a frame parser of the peer's role accepts everything we send", () => {
  const client = new ProtocolConnection({ role: "client" });
  client.sendText("a");
  client.ping();
  client.close();
  const p = new FrameParser({ expectMasked: true });
  for (const b of client.takeOutgoing()) p.push(b);
  assert.deepEqual([p.next()?.opcode, p.next()?.opcode, p.next()?.opcode], [1, 9, 8]);
});

Deno.test("fragmented text: every split point of a multi-byte text decodes the same", () => {
  const bytes = enc.encode("aé€😀κόσμε");
  for (let cut = 0; cut <= bytes.length; cut++) {
    const server = new ProtocolConnection({ role: "server" });
    server.receive(concat(
      rawFrame(Opcode.Text, bytes.subarray(0, cut), { fin: false }),
      rawFrame(Opcode.Ping, "p"),
      rawFrame(Opcode.Continuation, bytes.subarray(cut)),
      rawFrame(Opcode.Text, "next"),
    ));
    assert.deepEqual(drain(server).map(summarize), ["ping:1", "text:aé€😀κόσμε", "text:next"]);
  }
});

Deno.test("short and long, ASCII and not: whole text frames decode correctly", () => {
  for (const s of ["", "a", "x".repeat(64), "é".repeat(32), "y".repeat(65), "😀".repeat(1000)]) {
    const server = new ProtocolConnection({ role: "server" });
    server.receive(rawFrame(Opcode.Text, s));
    assert.deepEqual(drain(server), [{ type: "text", data: s }]);
  }
});

Deno.test("receiveRaw: data to the handler as bytes (text validated, not decoded), the rest as events", () => {
  const { client, server } = pair({
    deflate: DEFAULT_DEFLATE_PARAMS,
    deflateOptions: { threshold: 64 },
  });
  const long = "ünïcode ".repeat(40);
  client.sendText("short");
  client.ping(enc.encode("p"));
  client.sendBinary(new Uint8Array(3000).fill(9)); // compressed
  client.sendText(long); // compressed
  client.sendFrame(Opcode.Text, enc.encode("frag"), false);
  client.sendFrame(Opcode.Continuation, enc.encode("mént"), true);
  const wire = concat(...client.takeOutgoing());
  // Seven-byte reads through one buffer that is scribbled over after every call.
  const got: string[] = [];
  const readBuffer = new Uint8Array(7);
  for (let at = 0; at < wire.length; at += 7) {
    const n = Math.min(7, wire.length - at);
    readBuffer.set(wire.subarray(at, at + n));
    server.receiveRaw(readBuffer.subarray(0, n), (text, payload) => {
      got.push(text ? `text:${new TextDecoder().decode(payload)}` : `binary:${payload.length}`);
      assert.ok(text || payload.every((b) => b === 9));
    });
    readBuffer.fill(0xee);
  }
  assert.deepEqual(got, ["text:short", "binary:3000", `text:${long}`, "text:fragmént"]);
  const events = drain(server);
  assert.deepEqual(events.map(summarize), ["ping:1"]);
  assert.deepEqual(events[0], { type: "ping", data: enc.encode("p") }, "copied out of the buffer");
});

Deno.test("receiveRaw: invalid UTF-8 fails with 1007 (whole, fragment, inflated); a throwing handler with 1011", () => {
  const bad = new Uint8Array([0x61, 0xc3, 0x28]);
  const whole = new ProtocolConnection({ role: "server" });
  const calls: boolean[] = [];
  whole.receiveRaw(rawFrame(Opcode.Text, bad), (t) => calls.push(t));
  assert.deepEqual(drain(whole).map(summarize), ["error:1007"]);
  const frag = new ProtocolConnection({ role: "server" });
  frag.receiveRaw(rawFrame(Opcode.Text, new Uint8Array([0x61, 0xf4]), { fin: false }), () => {});
  frag.receiveRaw(rawFrame(Opcode.Continuation, new Uint8Array([0x90]), { fin: false }), () => {});
  assert.deepEqual(drain(frag).map(summarize), ["error:1007"]);
  const { client, server } = pair({
    deflate: DEFAULT_DEFLATE_PARAMS,
    deflateOptions: { threshold: 0 },
  });
  client.sendBinary(new Uint8Array(200).fill(0xff)); // compressed, then relabelled as text
  const wire = concat(...client.takeOutgoing());
  wire[0] = (wire[0] & 0xf0) | Opcode.Text;
  server.receiveRaw(wire, (t) => calls.push(t));
  assert.deepEqual(drain(server).map(summarize), ["error:1007"]);
  assert.deepEqual(calls, []);
  const throwing = new ProtocolConnection({ role: "server" });
  throwing.receiveRaw(rawFrame(Opcode.Binary, "x"), () => {
    throw new Error("sink broke");
  });
  assert.deepEqual(drain(throwing).map(summarize), ["error:1011"]);
});

Deno.test("small frames of interleaved connections share batch buffers, runs stay separate", () => {
  const a = new ProtocolConnection({ role: "server" });
  const b = new ProtocolConnection({ role: "client" });
  for (let i = 0; i < 3000; i++) {
    a.sendBinary(new Uint8Array(7).fill(i & 0xff));
    if (i % 3 === 0) b.sendText(`b${i}`);
  }
  const fa = a.takeOutgoing();
  const snapshot = fa.map((x) => x.slice());
  const fb = b.takeOutgoing();
  for (let i = 0; i < 1000; i++) a.sendText("more"); // later frames never rewrite taken ones
  assert.deepEqual(fa, snapshot);
  const framesA = wireFrames(fa);
  assert.equal(framesA.length, 3000);
  assert.ok(framesA.every((f, i) => f.payload.length === 7 && f.payload[0] === (i & 0xff)));
  const framesB = wireFrames(fb);
  assert.equal(framesB.length, 1000);
  assert.ok(framesB.every((f, i) => f.masked && dec(f.payload) === `b${i * 3}`));
  assert.equal(wireFrames(a.takeOutgoing()).length, 1000);
});

const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("close state: initiator and outcome for a clean close, either side first", () => {
  const { client, server } = pair();
  assert.equal(client.closeOutcome, undefined, "no outcome before TCP closed");
  client.close(4000, "bye");
  assert.equal(client.closeInitiator, "local");
  pipe(client, server);
  assert.equal(server.closeInitiator, "remote");
  pipe(server, client);
  server.receiveEof();
  client.receiveEof();
  assert.deepEqual(client.closeOutcome, {
    code: 4000,
    reason: "",
    wasClean: true,
    initiator: "local",
  });
  assert.deepEqual(server.closeOutcome, {
    code: 4000,
    reason: "bye",
    wasClean: true,
    initiator: "remote",
  });
});

Deno.test("close state: drops, aborts, failures and resent close frames", () => {
  const dropped = new ProtocolConnection({ role: "client" });
  dropped.receiveEof();
  assert.deepEqual(dropped.closeOutcome, {
    code: 1006,
    reason: "",
    wasClean: false,
    initiator: "drop",
  });
  // We closed, the peer never answered: our close frame goes out again, then we give up.
  const waiting = new ProtocolConnection({ role: "server" });
  waiting.close(4001, "hello?");
  waiting.takeOutgoing();
  waiting.resendClose();
  const again = outgoingFrames(waiting);
  assert.equal(again.length, 1);
  assert.equal(sentCloseCode(again), 4001);
  waiting.abort("close handshake timed out");
  assert.deepEqual(waiting.closeOutcome, {
    code: 1006,
    reason: "close handshake timed out",
    wasClean: false,
    initiator: "local",
  });
  waiting.abort("twice"); // ended: nothing changes
  assert.equal(waiting.closeOutcome?.reason, "close handshake timed out");
  // A failure of our own: close frame queued, error event, outcome with its code.
  const failing = new ProtocolConnection({ role: "server" });
  failing.fail(1008, "unread messages exceeded maxQueuedBytes");
  assert.deepEqual(drain(failing).map(summarize), ["error:1008"]);
  assert.equal(sentCloseCode(outgoingFrames(failing)), 1008);
  failing.resendClose();
  failing.receiveEof();
  assert.deepEqual(failing.closeOutcome, {
    code: 1008,
    reason: "unread messages exceeded maxQueuedBytes",
    wasClean: false,
    initiator: "local",
  });
  // A dead peer: dropped by us, blamed on the drop.
  const dead = new ProtocolConnection({ role: "client" });
  dead.abort("keep-alive pong timeout", "drop");
  assert.equal(dead.closeOutcome?.initiator, "drop");
  assert.equal(dead.state, "closed");
});

Deno.test("sendMessageInto: frames into the caller's buffers, in order with queued frames", () => {
  for (const deflate of [undefined, DEFAULT_DEFLATE_PARAMS]) {
    const { client, server } = pair({ deflate, deflateOptions: { threshold: 100 } });
    const sizes: number[] = [];
    const take = (size: number) => {
      sizes.push(size);
      return new Uint8Array(size + 16).fill(0xee); // bigger than asked, dirty
    };
    const texts = ["", "short", "é€😀 ".repeat(40), "x".repeat(70_000)];
    const frames: Uint8Array[] = [];
    for (const t of texts) {
      client.ping(enc.encode("p"));
      frames.push(...client.takeOutgoing(), client.sendMessageInto(t, take));
    }
    frames.push(client.sendMessageInto(new Uint8Array(3000).fill(7), take));
    for (const f of frames) server.receive(f.slice());
    const got = drain(server).filter((e) => e.type !== "ping");
    assert.deepEqual(got, [
      ...texts.map((data) => ({ type: "text", data })),
      { type: "binary", data: new Uint8Array(3000).fill(7) },
    ]);
    assert.equal(sizes.length, 5);
    client.sendFrame(Opcode.Binary, enc.encode("a"), false);
    assert.throws(() => client.sendMessageInto("b", take), TypeError);
    client.sendFrame(Opcode.Continuation, enc.encode("c"), true);
    client.close();
    assert.throws(() => client.sendMessageInto("late", take), InvalidStateError);
  }
});
