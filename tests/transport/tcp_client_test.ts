import assert from "node:assert/strict";
import { connect } from "../../src/transport/tcp_client.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import { serve } from "../../src/transport/tcp_server.ts";
import { DialError } from "../../src/transport/types.ts";
import { TimeoutError } from "../../src/util/async.ts";
import { fakeServer, SANITIZE, until } from "./tcp_helpers.ts";

Deno.test({
  name: "tcp client: handshake timeout closes the socket and rejects with DialError(TimeoutError)",
  ...SANITIZE,
  async fn() {
    // Accepts TCP, reads the request, never answers.
    const fake = fakeServer(async (conn) => {
      const buf = new Uint8Array(1024);
      while ((await conn.read(buf).catch(() => null)) !== null) { /* wait for the client to go */ }
    }, () => "");
    const t0 = Date.now();
    const err = await connect(`ws://127.0.0.1:${fake.port}/`, { handshakeTimeoutMs: 200 }).then(
      () => assert.fail("should not connect"),
      (e) => e,
    );
    assert.ok(Date.now() - t0 < 3000, "rejects within its budget");
    assert.ok(err instanceof DialError, String(err));
    assert.ok(err.cause instanceof TimeoutError);
    await fake.done; // the fake saw EOF: our socket was closed
  },
});

Deno.test({
  name: "tcp client: redirects are refused with a clear error",
  ...SANITIZE,
  async fn() {
    const fake = fakeServer(
      async () => {},
      () => "HTTP/1.1 301 Moved Permanently\r\nLocation: ws://127.0.0.1:1/elsewhere\r\n\r\n",
    );
    const err = await connect(`ws://127.0.0.1:${fake.port}/`).then(
      () => assert.fail("should not connect"),
      (e) => e,
    );
    assert.ok(err instanceof DialError);
    assert.equal(err.status, 301);
    assert.match(err.message, /redirects are not followed/);
    assert.match(err.message, /elsewhere/);
    await fake.done;
  },
});

Deno.test({
  name: "tcp client: HTTP error answers, bad accept keys and refused ports are DialErrors",
  ...SANITIZE,
  async fn() {
    const f1 = fakeServer(
      async () => {},
      () => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    );
    await assert.rejects(connect(`ws://127.0.0.1:${f1.port}/`), (e: DialError) => e.status === 403);
    await f1.done;
    const f2 = fakeServer(
      async () => {},
      () =>
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
    );
    await assert.rejects(connect(`ws://127.0.0.1:${f2.port}/`), /Sec-WebSocket-Accept/);
    await f2.done;
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    await assert.rejects(connect(`ws://127.0.0.1:${port}/`), DialError);
    await assert.rejects(connect("ftp://127.0.0.1/"), /unsupported URL scheme/);
  },
});

Deno.test({
  name:
    "tcp client: path, query, headers and subprotocols reach the server; handshake info is filled",
  ...SANITIZE,
  async fn() {
    let seen: { url: string; auth: string | null } | undefined;
    const s = serve({
      port: 0,
      protocols: ["chat.v2", "chat.v1"],
      onConnection: (ws, req) => {
        seen = { url: req.url, auth: req.headers.get("authorization") };
        void ws.close();
      },
    });
    const ws = await connect(`ws://127.0.0.1:${s.port}/room/7?x=1&y=2`, {
      protocols: ["chat.v1"],
      headers: { Authorization: "Bearer t0k" },
      compression: false,
    });
    assert.equal(ws.protocol, "chat.v1");
    assert.equal(ws.handshake.status, 101);
    assert.equal(ws.handshake.headers?.get("sec-websocket-protocol"), "chat.v1");
    assert.equal(ws.extensions, "");
    await ws.socketClosed;
    assert.deepEqual(seen, { url: "/room/7?x=1&y=2", auth: "Bearer t0k" });
    await s.close();
  },
});

Deno.test({
  name: "tcp client: maxPayload closes an oversized message with 1009",
  ...SANITIZE,
  async fn() {
    const s = serve({
      port: 0,
      onConnection: async (ws) => {
        await ws.send(new Uint8Array(2000)).catch(() => {});
      },
    });
    const ws = await connect(`ws://127.0.0.1:${s.port}/`, { maxPayload: 1000 });
    const info = await ws.socketClosed;
    assert.equal(info.code, 1009);
    assert.equal(info.initiator, "local");
    await s.close();
  },
});

Deno.test({
  name: "wseAdapter: dial, handshake info, ping RTT, read back-pressure pauses the socket",
  ...SANITIZE,
  async fn() {
    let stop = false;
    const s = serve({
      port: 0,
      onConnection: async (ws) => {
        try {
          while (!stop) await ws.send(new Uint8Array(8192));
        } catch { /* closed */ }
      },
    });
    const adapter = wseAdapter({ compression: false });
    assert.equal(adapter.name, "wse");
    const conn = await adapter.dial(new URL(`ws://127.0.0.1:${s.port}/`), {
      handshakeTimeoutMs: 2000,
      readHighWaterMark: 64 * 1024,
      readLowWaterMark: 16 * 1024,
    });
    assert.equal(conn.handshake.status, 101);
    assert.ok(conn.handshake.headers instanceof Headers);
    const ws = conn
      .underlying as import("../../src/transport/tcp_connection.ts").WebSocketConnection;
    assert.ok(await until(() => ws.readPaused), "queue over the high watermark pauses reading");
    const queued = ws.queuedBytes;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(ws.queuedBytes, queued, "nothing more is read while paused");
    // Drain below the low watermark: reading resumes.
    while (ws.queuedBytes > 16 * 1024) conn.poll();
    assert.ok(await until(() => !ws.readPaused || ws.queuedBytes > 16 * 1024));
    stop = true;
    while (conn.poll()) { /* drain so the pong can be read */ }
    const info = conn.close(1000, "done", 2000);
    for (let i = 0; i < 10_000 && !conn.isClosed; i++) {
      while (conn.poll()) { /* drain */ }
      await Promise.race([conn.readable(), info]);
    }
    assert.equal((await info).code, 1000);
    await s.close();
  },
});

Deno.test({
  name: "wseAdapter: ping resolves with the round-trip time",
  ...SANITIZE,
  async fn() {
    const s = serve({ port: 0, onConnection: async (ws) => void (await ws.closed) });
    const conn = await wseAdapter().dial(new URL(`ws://127.0.0.1:${s.port}/`), {
      handshakeTimeoutMs: 2000,
    });
    const rtt = await conn.ping(2000);
    assert.ok(rtt >= 0 && rtt < 2000);
    await conn.close();
    await s.close();
  },
});

/** A throwaway CA and a leaf certificate for localhost/127.0.0.1 it signed (rustls wants both). */
async function testCertificates(): Promise<{ ca: string; cert: string; key: string } | string> {
  const dir = await Deno.makeTempDir({ prefix: "wse-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const steps = [
    [
      "req",
      "-x509",
      ...ec,
      "-days",
      "1",
      "-subj",
      "/CN=wse test CA",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
    ],
    ["req", ...ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"],
    [
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      "cert.pem",
      "-extfile",
      "ext.cnf",
    ],
  ];
  try {
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    for (const args of steps) {
      const out = await new Deno.Command("openssl", {
        args,
        cwd: dir,
        stdout: "null",
        stderr: "piped",
      })
        .output();
      if (!out.success) return new TextDecoder().decode(out.stderr);
    }
    return {
      ca: await Deno.readTextFile(`${dir}/ca.pem`),
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
  } catch (e) {
    return String(e);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const tls = await testCertificates();
if (typeof tls === "string") console.log(`SKIPPED: openssl not installed (${tls})`);

Deno.test({
  name: "tcp: wss:// — our client and our TLS server, and our client against Deno.serve over TLS",
  ignore: typeof tls === "string",
  ...SANITIZE,
  async fn() {
    const { ca, cert, key } = tls as { ca: string; cert: string; key: string };
    const s = serve({
      port: 0,
      tls: { cert, key },
      onConnection: async (ws) => {
        for await (const m of ws) await ws.send(m.data);
      },
    });
    const ws = await connect(`wss://localhost:${s.port}/`, { caCerts: [ca] });
    await ws.send("over tls");
    for await (const m of ws) {
      assert.deepEqual(m, { type: "text", data: "over tls" });
      break;
    }
    assert.equal((await ws.close()).code, 1000);
    await s.close();
    const d = Deno.serve({ hostname: "127.0.0.1", port: 0, cert, key, onListen() {} }, (req) => {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => socket.send(e.data);
      return response;
    });
    const ws2 = await connect(`wss://127.0.0.1:${d.addr.port}/`, { caCerts: [ca] });
    await ws2.send(new Uint8Array(100_000).fill(3));
    for await (const m of ws2) {
      assert.equal((m.data as Uint8Array).length, 100_000);
      break;
    }
    await ws2.close();
    await assert.rejects(connect(`wss://127.0.0.1:${d.addr.port}/`), DialError, "untrusted cert");
    await d.shutdown();
  },
});
