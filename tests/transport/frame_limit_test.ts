/**
 * A frame whose header declares more than the limit is answered with close 1009 as soon as the
 * header is read, by the adapters that can: `npm:ws` (configured by the adapter, with or without
 * an explicit `maxPayload`) and our own client. The server here sends the header and ten bytes,
 * never the payload: a client that waited for it would never answer at all.
 *
 * The WHATWG `WebSocket` gives only whole messages to JavaScript, so the adapter cannot check a
 * header (docs/reliability.md says what Deno's runtime does on its own).
 */

import assert from "node:assert/strict";
import {
  acceptUpgrade,
  ClientFrameReader,
  closeCodeOf,
  frame,
  frameHeader,
  OP,
  writeAll,
} from "../chaos/raw_ws.ts";
import type { WebSocketAdapter } from "../../src/transport/types.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import { WebSocketEngine } from "../../src/engine/engine.ts";

/** Serves one connection: the upgrade, then a header declaring `declared` bytes. */
function hostileServer(declared: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answer = (async () => {
    const conn = await listener.accept();
    try {
      if (!(await acceptUpgrade(conn))) return undefined;
      await writeAll(conn, frameHeader(OP.binary, declared));
      await writeAll(conn, new Uint8Array(10));
      const reader = new ClientFrameReader();
      const buf = new Uint8Array(4096);
      // Bounded by the client: it answers or closes; the test's own timeout is the backstop.
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return undefined;
        reader.push(buf.slice(0, n));
        const f = reader.next();
        if (f?.opcode === OP.close) {
          await writeAll(conn, new Uint8Array([0x88, 2, f.payload[0], f.payload[1]]));
          return closeCodeOf(f.payload);
        }
      }
    } finally {
      conn.close();
      listener.close();
    }
  })();
  return { url: new URL(`ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`), answer };
}

const cases: [string, () => WebSocketAdapter, number | undefined, number][] = [
  ["ws, maxPayload 1 MiB", () => wsAdapter(), 1 << 20, 2 ** 21],
  ["ws, default limit (ws alone would wait forever)", () => wsAdapter(), undefined, 2 ** 40],
  ["wse, maxPayload 1 MiB", () => wseAdapter(), 1 << 20, 2 ** 21],
  ["wse, default limit", () => wseAdapter(), undefined, 2 ** 40],
];

for (const [name, adapter, maxPayload, declared] of cases) {
  Deno.test(`[${name}] a header declaring ${declared} bytes is answered with 1009`, async () => {
    const server = hostileServer(declared);
    const errors: unknown[] = [];
    const conn = await adapter().dial(server.url, {
      handshakeTimeoutMs: 2000,
      maxPayload,
      onError: (e) => errors.push(e),
    });
    assert.equal(await server.answer, 1009);
    const info = await conn.closed;
    assert.equal(info.code, 1009);
    assert.equal(info.initiator, "local");
    assert.equal(conn.poll(), undefined, "nothing of the frame was delivered");
    await conn.close();
    if (adapter().name === "ws") assert.ok(errors.length >= 1, "the adapter reported the error");
  });
}

Deno.test("[whatwg] a whole message over maxPayload is reported and the connection closed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await acceptUpgrade(conn);
      await writeAll(conn, frame(OP.binary, new Uint8Array(200)));
      const reader = new ClientFrameReader();
      const buf = new Uint8Array(4096);
      for (;;) { // bounded by the client, which closes
        const n = await conn.read(buf);
        if (n === null) return;
        reader.push(buf.slice(0, n));
        if (reader.next()?.opcode === OP.close) {
          await writeAll(conn, new Uint8Array([0x88, 0]));
          return;
        }
      }
    } finally {
      conn.close();
      listener.close();
    }
  })();
  const errors: unknown[] = [];
  const conn = await whatwgAdapter().dial(
    new URL(`ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`),
    { handshakeTimeoutMs: 2000, maxPayload: 100, onError: (e) => errors.push(e) },
  );
  const info = await conn.closed;
  await served;
  assert.equal(info.initiator, "local");
  assert.equal(conn.poll(), undefined, "the message was not delivered");
  assert.equal(errors.length, 1);
  assert.match((errors[0] as Error).message, /200 bytes exceeds maxPayload \(100\)/);
});

Deno.test("[engine, ws] the 1009 reaches onReadError and onClose; the engine goes on", async () => {
  const server = hostileServer(2 ** 40);
  const events: string[] = [];
  const engine = new WebSocketEngine({
    url: server.url,
    adapter: wsAdapter(),
    reconnect: { baseDelayMs: 60_000, maxDelayMs: 60_000 }, // stays in the retry sleep
    client: {
      onReadError: (e) => void events.push(`readError:${(e as Error).message}`),
      onClose: (peer) => void events.push(`close:${peer?.code}`),
    },
  });
  await engine.start();
  assert.equal(await server.answer, 1009);
  await engine.waitFor("reconnecting", { timeoutMs: 5000 });
  assert.deepEqual(events, ["readError:Max payload size exceeded", "close:1009"]);
  await engine.stop();
});
