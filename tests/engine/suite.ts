/**
 * The behavioural suite every adapter must pass, written once and parameterised by adapter.
 * Plugging in another adapter is one line in its own test file:
 *
 * ```ts
 * engineSuite({ name: "wse", adapter: () => wseAdapter(), caps: { ping: true, anyCloseCode: true, responseHeaders: true } });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import {
  CloseError,
  EngineOptionError,
  EngineStartError,
  EngineStateError,
  UndeliveredError,
} from "../../src/engine/errors.ts";
import { SendBufferFullError } from "../../src/engine/send_buffer.ts";
import type { StateChange } from "../../src/engine/engine.ts";
import { LeaseResumedError } from "../../src/dispatch/types.ts";
import type { EngineClient, EngineOptions } from "../../src/engine/options.ts";
import type { MessageContext, OpenContext } from "../../src/engine/context.ts";
import {
  type AdapterConnection,
  type CloseInfo,
  ConnectionClosedError,
  DialError,
  NotSupportedError,
  ReadOverflowError,
  type WebSocketAdapter,
  type WireMessage,
} from "../../src/transport/types.ts";
import { TimeoutError, within } from "../../src/util/async.ts";
import { type EchoServer, refusedPort, startEchoServer, until } from "./kit.ts";

/** What an adapter can do, so the suite asserts the right outcome. */
export interface AdapterCaps {
  /** `ping()` works (else it must reject with NotSupportedError). */
  ping: boolean;
  /** Any valid close code reaches the peer (WHATWG sends only 1000 and 3000–4999). */
  anyCloseCode: boolean;
  /** `handshake.headers` is filled in. */
  responseHeaders: boolean;
}

/** One adapter under test. */
export interface SuiteTarget {
  name: string;
  adapter: () => WebSocketAdapter;
  caps: AdapterCaps;
}

const errorText = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const text = (m: WireMessage) => (m.type === "text" ? m.data : new TextDecoder().decode(m.data));

/** A server that accepts TCP and never answers the handshake. */
function silentServer(): { url: string; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const loop = (async () => {
    for (;;) {
      try {
        conns.push(await listener.accept());
      } catch {
        return;
      }
    }
  })();
  return {
    url: `ws://127.0.0.1:${listener.addr.port}/`,
    async close() {
      listener.close();
      await loop;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Registers the suite for `target`. */
export function engineSuite(target: SuiteTarget): void {
  const { name, caps } = target;
  // What the engines of the running test logged (their `logger`), instead of stderr.
  let logged: string[] = [];
  const test = (title: string, fn: (server: EchoServer) => Promise<void>) =>
    Deno.test({
      name: `[${name}] ${title}`,
      sanitizeOps: true,
      sanitizeResources: true,
      async fn() {
        logged = [];
        const server = startEchoServer();
        try {
          await fn(server);
        } finally {
          await server.close();
        }
      },
    });
  const engineFor = (
    server: EchoServer,
    client: EngineClient,
    extra: Partial<EngineOptions> = {},
  ) =>
    new WebSocketEngine({
      url: server.url,
      adapter: target.adapter(),
      client,
      reconnect: { baseDelayMs: 5, maxDelayMs: 20 },
      openTimeoutMs: 2000,
      stopTimeoutMs: 2000,
      logger: (message: string, error?: unknown) =>
        void logged.push(error === undefined ? message : `${message} ${errorText(error)}`),
      ...extra,
    });

  // ---- adapter contract ----

  test("adapter: dial, echo text and binary, close with code and reason", async (server) => {
    server.acceptProtocols = ["b.v1"];
    const conn = await target.adapter().dial(new URL(server.url), {
      handshakeTimeoutMs: 2000,
      // One protocol: Deno.upgradeWebSocket splits the offer on ", " only, and npm:ws joins
      // with "," (no space), so Deno refuses a multi-protocol offer from ws.
      protocols: ["b.v1"],
      headers: { "x-test": "yes" },
    });
    assert.equal(conn.handshake.protocol, "b.v1");
    assert.equal(server.upgrades.at(-1)?.get("x-test"), "yes");
    if (caps.responseHeaders) assert.ok(conn.handshake.headers instanceof Headers);
    await conn.send("hello");
    await conn.send(new Uint8Array([1, 2, 3]));
    const got: WireMessage[] = [];
    for (let i = 0; i < 10 && got.length < 2; i++) {
      const m = conn.poll();
      if (m) got.push(m);
      else await conn.readable();
    }
    assert.deepEqual(got[0], { type: "text", data: "hello" });
    assert.equal(got[1].type, "binary");
    assert.deepEqual([...(got[1].data as Uint8Array)], [1, 2, 3]);
    const info = await conn.close(4001, "bye", 2000);
    assert.equal(info.code, 4001);
    assert.equal(info.initiator, "local");
    await until(() => server.closes.length === 1, "server close");
    assert.deepEqual(server.closes[0], { code: 4001, reason: "bye" });
    await assert.rejects(conn.send("late"), ConnectionClosedError);
    assert.equal(conn.isClosed, true);
  });

  test("adapter: ping awaits the pong, or NotSupportedError", async (server) => {
    const conn = await target.adapter().dial(new URL(server.url), { handshakeTimeoutMs: 2000 });
    if (caps.ping) {
      const rtt = await conn.ping(2000);
      assert.ok(rtt >= 0 && rtt < 2000);
    } else {
      await assert.rejects(conn.ping(1000), NotSupportedError);
    }
    await conn.close(1000, "", 2000);
  });

  test("adapter: peer close and drop give code, reason, initiator", async (server) => {
    const a = await target.adapter().dial(new URL(server.url), { handshakeTimeoutMs: 2000 });
    await until(() => server.sockets.size === 1, "server socket");
    server.closeAll(4002, "server bye");
    const ia = await a.closed;
    assert.deepEqual([ia.code, ia.reason, ia.initiator], [4002, "server bye", "remote"]);
    const b = await target.adapter().dial(new URL(server.url), { handshakeTimeoutMs: 2000 });
    await server.kill();
    const ib: CloseInfo = await b.closed;
    assert.deepEqual([ib.code, ib.wasClean, ib.initiator], [1006, false, "drop"]);
  });

  test("adapter: refused, 403 and aborted dials reject with DialError / the reason", async (server) => {
    const adapter = target.adapter();
    const refused = new URL(`ws://127.0.0.1:${refusedPort()}/`);
    await assert.rejects(adapter.dial(refused, { handshakeTimeoutMs: 2000 }), DialError);
    server.rejectStatus = 403;
    await assert.rejects(
      adapter.dial(new URL(server.url), { handshakeTimeoutMs: 2000 }),
      (e: unknown) => e instanceof DialError && e.status === 403,
    );
    const silent = silentServer();
    const ac = new AbortController();
    const dialing = adapter.dial(new URL(silent.url), {
      handshakeTimeoutMs: 5000,
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(new Error("give up")), 20);
    await assert.rejects(dialing); // with the signal's reason or a DialError
    await assert.rejects(
      adapter.dial(new URL(silent.url), { handshakeTimeoutMs: 50 }),
      DialError,
    );
    await silent.close();
  });

  test("adapter: unread messages are bounded (pause or overflow policy)", async (server) => {
    const errors: unknown[] = [];
    const conn: AdapterConnection = await target.adapter().dial(
      new URL(server.url),
      {
        handshakeTimeoutMs: 2000,
        readHighWaterMark: 1000,
        readLowWaterMark: 100,
        maxQueuedBytes: 4000,
        overflow: "drop-newest",
        onError: (e: unknown) => errors.push(e),
      } as Parameters<WebSocketAdapter["dial"]>[1],
    );
    await until(() => server.sockets.size === 1, "server socket");
    for (let i = 0; i < 50; i++) server.broadcast(new Uint8Array(200));
    // Either the socket stopped reading (ws: pause at the high-water mark, so the queue stays
    // near it) or the overflow policy dropped (and reported) what did not fit.
    await new Promise((r) => setTimeout(r, 100));
    let polled = 0;
    while (conn.poll()) polled++;
    assert.ok(polled * 200 <= 4000 + 200, `queued ${polled * 200} bytes past the bound`);
    if (polled < 50 && errors.length > 0) {
      assert.ok(errors.every((e) => e instanceof ReadOverflowError));
    }
    // Whatever was held back by a pause arrives now that the queue drained.
    for (let i = 0; i < 200 && polled + errors.length < 50; i++) {
      if (conn.poll()) polled++;
      else await within(conn.readable(), { timeoutMs: 10 }).catch(() => {});
    }
    assert.equal(polled + errors.length, 50, `polled ${polled}, dropped ${errors.length}`);
    await conn.close(1000, "", 2000);
  });

  // ---- engine: callbacks ----

  test("every callback fires with its documented arguments", async (server) => {
    server.acceptProtocols = ["chat"];
    const events: string[] = [];
    let open!: OpenContext;
    let msgCtx!: MessageContext;
    let firstPeer: CloseInfo | undefined | null = null;
    const engine = engineFor(server, {
      async onOpen(ctx) {
        open = ctx;
        events.push(`open:${ctx.restarting}`);
        await ctx.send("one");
      },
      onMessage(msg, ctx) {
        msgCtx = ctx;
        events.push(`msg:${text(msg)}`);
        if (text(msg) === "boom") throw new Error("handler failed");
      },
      onReadError(error, ctx) {
        events.push(`readError:${(error as Error).message}:${ctx.sessionId === open.sessionId}`);
      },
      onClose(peer) {
        firstPeer = peer;
        events.push(`close:${peer?.code}`);
        return { code: 4100, reason: "client bye" };
      },
    }, { protocols: ["chat"] });
    await engine.start();
    assert.equal(engine.isStarted, true);
    assert.equal(engine.state, "open");
    assert.equal(open.restarting, false);
    assert.match(open.sessionId, UUID);
    assert.equal(open.workerId, "main");
    assert.equal(open.handshake.protocol, "chat");
    if (caps.responseHeaders) assert.ok(open.handshake.headers?.get("upgrade"));
    await until(() => events.includes("msg:one"), "first echo");
    assert.equal(msgCtx.sessionId, open.sessionId);
    assert.equal(msgCtx.workerId, "main");
    await engine.send("boom");
    await until(() => events.some((e) => e.startsWith("readError")), "onReadError");
    await engine.send("after");
    await until(() => events.includes("msg:after"), "dispatch goes on after a throw");
    await engine.stop();
    assert.equal(firstPeer, undefined);
    assert.equal(engine.isStarted, false);
    assert.equal(engine.state, "stopped");
    await until(() => server.closes.length === 1, "server saw the close");
    assert.deepEqual(server.closes[0], { code: 4100, reason: "client bye" });
    assert.deepEqual(events, [
      "open:false",
      "msg:one",
      "msg:boom",
      "readError:handler failed:true",
      "msg:after",
      "close:undefined",
    ]);
  });

  test("stop() sends 1001 going away by default", async (server) => {
    const engine = engineFor(server, {});
    await engine.start();
    await engine.stop();
    await until(() => server.closes.length === 1, "server saw the close");
    // WHATWG close() cannot send 1001: it sends 1000 with the same reason.
    assert.deepEqual(server.closes[0], {
      code: caps.anyCloseCode ? 1001 : 1000,
      reason: "going away",
    });
  });

  test("peer close: onClose gets the code and reason, then a new session", async (server) => {
    const opens: OpenContext[] = [];
    const closes: (CloseInfo | undefined)[] = [];
    const engine = engineFor(server, {
      onOpen: (ctx) => void opens.push(ctx),
      onClose: (peer) => void closes.push(peer),
    });
    await engine.start();
    await until(() => server.sockets.size === 1, "server socket");
    server.closeAll(4000, "maintenance");
    await until(() => opens.length === 2, "reconnect");
    assert.equal(closes[0]?.code, 4000);
    assert.equal(closes[0]?.reason, "maintenance");
    assert.equal(opens[1].restarting, true);
    assert.notEqual(opens[1].sessionId, opens[0].sessionId);
    await engine.stop();
  });

  test("a server killed and restarted: onClose 1006, then onOpen(restarting) with a new session id", async (server) => {
    const opens: OpenContext[] = [];
    const closes: (CloseInfo | undefined)[] = [];
    const restartErrors: number[] = [];
    const engine = engineFor(server, {
      onOpen: (ctx) => void opens.push(ctx),
      onClose: (peer) => void closes.push(peer),
      onRestartError: (_e, n) => void restartErrors.push(n),
    });
    await engine.start();
    await server.kill();
    await until(() => closes.length === 1, "onClose");
    assert.equal(closes[0]?.code, 1006);
    await until(() => restartErrors.length >= 2, "failed attempts while down");
    assert.deepEqual(restartErrors.slice(0, 2), [0, 1]);
    assert.equal(engine.isStarted, true);
    assert.equal(engine.state, "reconnecting");
    await server.restart();
    await until(() => opens.length === 2, "reconnect");
    assert.equal(opens[1].restarting, true);
    assert.notEqual(opens[1].sessionId, opens[0].sessionId);
    // A second drop starts a new restart cycle: the retry count starts at 0 again.
    const before = restartErrors.length;
    await server.kill();
    await until(() => restartErrors.length > before, "new cycle");
    assert.equal(restartErrors[before], 0);
    await engine.stop();
  });

  // ---- engine: start failures ----

  test("start() rejects with EngineStartError on refused, 403, 404, rejecting onOpen; nothing leaks", async (server) => {
    const calls: string[] = [];
    const client: EngineClient = {
      onClose: () => void calls.push("close"),
      onMessage: () => void calls.push("msg"),
    };
    const refused = new WebSocketEngine({
      url: `ws://127.0.0.1:${refusedPort()}/`,
      adapter: target.adapter(),
      client,
    });
    const e1 = await refused.start().catch((e) => e);
    assert.ok(e1 instanceof EngineStartError);
    assert.ok(e1.cause instanceof DialError);
    assert.equal(refused.isStarted, false);
    for (const status of [403, 404]) {
      server.rejectStatus = status;
      const e = await engineFor(server, client).start().catch((e) => e);
      assert.ok(e instanceof EngineStartError);
      assert.ok(e.cause instanceof DialError);
      assert.equal((e.cause as DialError).status, status);
    }
    server.rejectStatus = 0;
    const denied = new Error("not today");
    const engine = engineFor(server, { ...client, onOpen: () => Promise.reject(denied) });
    const e4 = await engine.start().catch((e) => e);
    assert.ok(e4 instanceof EngineStartError);
    assert.equal(e4.cause, denied);
    assert.equal(engine.state, "stopped");
    await until(() => server.closes.length === 1, "the refused connection is closed");
    assert.equal(server.closes[0].reason, "websocket client failed to start");
    assert.deepEqual(calls, []);
  });

  test("a start that times out (hung handshake or hung onOpen) leaves nothing running", async (server) => {
    const silent = silentServer();
    const hung = new WebSocketEngine({
      url: silent.url,
      adapter: target.adapter(),
      client: {},
      openTimeoutMs: 100,
    });
    const e1 = await hung.start().catch((e) => e);
    assert.ok(e1 instanceof EngineStartError);
    assert.equal(hung.state, "stopped");
    await silent.close();
    let release!: () => void;
    const slow = engineFor(server, {
      onOpen: () => new Promise<void>((r) => (release = r)),
    }, { openTimeoutMs: 100 });
    const e2 = await slow.start().catch((e) => e);
    assert.ok(e2 instanceof EngineStartError);
    assert.ok(e2.cause instanceof TimeoutError);
    assert.equal(slow.isStarted, false);
    await until(() => server.sockets.size === 0, "the socket was closed");
    release(); // a late onOpen changes nothing
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(slow.state, "stopped");
  });

  test("start() while started is refused; start() after the engine stopped by itself works", async (server) => {
    const opens: boolean[] = [];
    const engine = engineFor(server, { onOpen: (ctx) => void opens.push(ctx.restarting) }, {
      reconnect: false,
    });
    await engine.start();
    await assert.rejects(engine.start(), EngineStateError);
    server.closeAll(1000, "done");
    await engine.done;
    assert.equal(engine.isStarted, false);
    await engine.start();
    assert.deepEqual(opens, [false, false]);
    await engine.stop();
    await engine.stop(); // idempotent
  });

  // ---- engine: stop from every state ----

  test("stop() resolves within stopTimeoutMs: connecting, open, paused, retry loop, busy handler", async (server) => {
    const budget = 300;
    const within = async (engine: WebSocketEngine, what: string) => {
      const t0 = performance.now();
      await engine.stop();
      const dt = performance.now() - t0;
      assert.ok(dt < budget + 250, `${what}: stop took ${dt.toFixed(0)} ms`);
      assert.equal(engine.state, "stopped");
    };
    // connecting: the handshake never completes
    const silent = silentServer();
    const connecting = new WebSocketEngine({
      url: silent.url,
      adapter: target.adapter(),
      client: {},
      stopTimeoutMs: budget,
    });
    const starting = connecting.start().catch((e) => e);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(connecting.state, "starting");
    await within(connecting, "connecting");
    assert.ok((await starting) instanceof EngineStartError);
    await silent.close();
    // open
    const open = engineFor(server, {}, { stopTimeoutMs: budget });
    await open.start();
    await within(open, "open");
    // paused (the lease is never resumed)
    const paused = engineFor(server, {}, { stopTimeoutMs: budget });
    await paused.start();
    const lease = await paused.pause();
    assert.equal(lease.held, true);
    await within(paused, "paused");
    await assert.rejects(lease.read({ timeoutMs: 100 }), ConnectionClosedError);
    // busy: a handler that never finishes
    const busy = engineFor(server, { onMessage: () => new Promise(() => {}) }, {
      stopTimeoutMs: budget,
    });
    await busy.start();
    await busy.send("x");
    await new Promise((r) => setTimeout(r, 30));
    await within(busy, "busy handler");
    // retry loop, sleeping a long delay
    const retrying = engineFor(server, {}, {
      stopTimeoutMs: budget,
      reconnect: { baseDelayMs: 60_000, maxDelayMs: 60_000, random: () => 0.99 },
    });
    await retrying.start();
    await server.kill();
    await until(() => retrying.state === "reconnecting", "retry loop");
    await within(retrying, "retry loop");
  });

  test("stop() during onClose that hangs still resolves within the budget", async (server) => {
    const engine = engineFor(server, { onClose: () => new Promise(() => {}) }, {
      stopTimeoutMs: 200,
    });
    await engine.start();
    const t0 = performance.now();
    await engine.stop();
    assert.ok(performance.now() - t0 < 600);
    await until(() => server.sockets.size === 0, "socket dropped");
  });

  // ---- engine: restart() and exit() from every callback ----

  test("restart() and exit() from onMessage", async (server) => {
    const opens: string[] = [];
    const closes: (number | undefined)[] = [];
    const engine = engineFor(server, {
      onOpen: (ctx) => void opens.push(ctx.sessionId),
      onMessage: (msg, ctx) => {
        if (text(msg) === "restart") ctx.restart();
        if (text(msg) === "exit") ctx.exit();
      },
      onClose: (peer) => void closes.push(peer?.code),
    });
    await engine.start();
    await engine.send("restart");
    await until(() => opens.length === 2, "restarted");
    assert.deepEqual(closes, [undefined]);
    await until(() => server.closes.length === 1, "old socket closed by the client");
    await engine.send("exit");
    await engine.done;
    assert.equal(engine.state, "stopped");
    assert.deepEqual(closes, [undefined, undefined]);
    await until(() => server.closes.length === 2, "socket closed on exit");
  });

  test("restart() and exit() from onReadError", async (server) => {
    let opens = 0;
    const engine = engineFor(server, {
      onOpen: () => void opens++,
      onMessage: (msg) => {
        throw new Error(text(msg));
      },
      onReadError: (error, ctx) => {
        if ((error as Error).message === "restart") ctx.restart();
        else ctx.exit();
      },
    });
    await engine.start();
    await engine.send("restart");
    await until(() => opens === 2, "restarted");
    await engine.send("exit");
    await engine.done;
    assert.equal(engine.state, "stopped");
    await until(() => server.sockets.size === 0, "closed");
  });

  test("restart() and exit() from onOpen refuse the connection", async (server) => {
    const r = engineFor(server, { onOpen: (ctx) => ctx.restart() });
    const e1 = await r.start().catch((e) => e);
    assert.ok(e1 instanceof EngineStartError && /restart/.test(e1.message));
    const x = engineFor(server, { onOpen: (ctx) => ctx.exit() });
    const e2 = await x.start().catch((e) => e);
    assert.ok(e2 instanceof EngineStartError && /exit/.test(e2.message));
    await until(() => server.sockets.size === 0, "both sockets closed");
    // During reconnects: restart() fails the attempt, exit() stops the engine.
    let n = 0;
    const errors: number[] = [];
    const engine = engineFor(server, {
      onOpen: (ctx) => {
        n++;
        if (n === 2) ctx.restart();
        if (n === 3) ctx.exit();
      },
      onRestartError: (_e, count) => void errors.push(count),
    });
    await engine.start();
    server.closeAll(1012, "restart");
    await engine.done;
    assert.equal(n, 3);
    assert.deepEqual(errors, [0]);
    assert.equal(engine.state, "stopped");
  });

  test("exit() from onClose and from onRestartError", async (server) => {
    const a = engineFor(server, { onClose: (_p, ctx) => ctx.exit() });
    await a.start();
    server.closeAll(4000, "bye");
    await a.done;
    assert.equal(a.state, "stopped");
    const b = engineFor(server, { onRestartError: (_e, _n, ctx) => ctx.exit() });
    await b.start();
    await server.kill();
    await b.done;
    assert.equal(b.state, "stopped");
  });

  test("restart() from onClose is a no-op; the retry limit ends the loop", async (server) => {
    const counts: [number, boolean][] = [];
    const engine = engineFor(server, {
      onClose: (_p, ctx) => ctx.restart(),
      onRestartError: (_e, n, ctx) => void counts.push([n, ctx.willRetry]),
    }, { reconnect: { baseDelayMs: 1, maxDelayMs: 2, maxRetries: 3 } });
    await engine.start();
    await server.kill();
    await engine.done;
    assert.deepEqual(counts, [[0, true], [1, true], [2, false]]);
    assert.equal(engine.isStarted, false);
  });

  // ---- engine: sessions, pause, request ----

  test("a context whose session ended cannot send on the next connection", async (server) => {
    let first!: MessageContext;
    let opens = 0;
    const engine = engineFor(server, {
      onOpen: () => void opens++,
      onMessage: (_m, ctx) => void (first ??= ctx),
    });
    await engine.start();
    await engine.send("x");
    await until(() => first !== undefined, "message");
    server.closeAll(4000, "");
    await until(() => opens === 2, "reconnected");
    await assert.rejects(first.send("stale"), ConnectionClosedError);
    await engine.stop();
  });

  test("messages that arrive during a pause are delivered after resume, in order, none lost", async (server) => {
    const seen: string[] = [];
    const engine = engineFor(server, { onMessage: (m) => void seen.push(text(m)) });
    await engine.start();
    const lease = await engine.pause();
    for (let i = 0; i < 60; i++) await engine.send(`m${i}`);
    // The holder reads the first ones itself (request/response without ids).
    const own = [await lease.read({ timeoutMs: 2000 }), await lease.read({ timeoutMs: 2000 })];
    assert.deepEqual(own.map(text), ["m0", "m1"]);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, []); // nothing dispatched while paused
    lease.resume();
    await until(() => seen.length === 58, "the rest dispatched");
    assert.deepEqual(seen, Array.from({ length: 58 }, (_, i) => `m${i + 2}`));
    await assert.rejects(lease.read({ timeoutMs: 10 }), LeaseResumedError);
    await engine.stop();
  });

  test("pause from inside onMessage: request/response without ids; read times out", async (server) => {
    const results: string[] = [];
    const engine = engineFor(server, {
      async onMessage(msg, ctx) {
        if (text(msg) !== "go") return void results.push(`dispatched:${text(msg)}`);
        const lease = await ctx.pause();
        await lease.send("question");
        results.push(`answer:${text(await lease.read({ timeoutMs: 2000 }))}`);
        server.echo = false;
        await assert.rejects(lease.read({ timeoutMs: 30 }), TimeoutError);
        server.echo = true;
        lease.resume();
        results.push("resumed");
      },
    });
    await engine.start();
    await engine.send("go");
    await until(() => results.length === 2, "answer");
    await engine.send("after");
    await until(() => results.length === 3, "dispatch resumed");
    assert.deepEqual(results, ["answer:question", "resumed", "dispatched:after"]);
    await engine.stop();
  });

  test("pause in onOpen reads the connection directly", async (server) => {
    const engine = engineFor(server, {
      async onOpen(ctx) {
        const lease = await ctx.pause();
        await lease.send("auth");
        assert.equal(text(await lease.read({ timeoutMs: 2000 })), "auth");
        lease.resume();
      },
    });
    await engine.start();
    await engine.stop();
  });

  test("request(): matched by id, consumed; TimeoutError; ConnectionClosedError on drop", async (server) => {
    const seen: string[] = [];
    const engine = engineFor(server, { onMessage: (m) => void seen.push(text(m)) });
    await engine.start();
    const idOf = (m: WireMessage) => m.type === "text" ? JSON.parse(m.data).id : undefined;
    const [r1, r2] = await Promise.all([
      engine.request(JSON.stringify({ id: 1 }), { match: { id: 1, idOf }, timeoutMs: 2000 }),
      engine.request(JSON.stringify({ id: 2 }), { match: { id: 2, idOf }, timeoutMs: 2000 }),
    ]);
    assert.equal(JSON.parse(text(r1)).id, 1);
    assert.equal(JSON.parse(text(r2)).id, 2);
    const r3 = await engine.request("ping?", {
      match: (m) => text(m) === "ping?",
      timeoutMs: 2000,
    });
    assert.equal(text(r3), "ping?");
    await engine.send(JSON.stringify({ id: 99 }));
    await until(() => seen.length === 1, "unmatched message dispatched");
    assert.deepEqual(seen, ['{"id":99}']); // responses were consumed
    server.echo = false;
    await assert.rejects(
      engine.request("x", { match: () => true, timeoutMs: 30 }),
      TimeoutError,
    );
    const pending = engine.request("y", { match: () => true, timeoutMs: 5000 });
    await server.kill();
    await assert.rejects(pending, ConnectionClosedError);
    await engine.stop();
  });

  test("heartbeat: a hung peer is dropped (1006) and the engine reconnects", async (server) => {
    const errors: unknown[] = [];
    const closes: (number | undefined)[] = [];
    let opens = 0;
    const client: EngineClient = {
      onOpen: () => void opens++,
      onReadError: (e) => void errors.push(e),
      onClose: (peer) => void closes.push(peer?.code),
    };
    if (!caps.ping) {
      // An adapter that cannot ping cannot have a heartbeat: refused when the engine is built.
      assert.throws(
        () => engineFor(server, client, { heartbeat: { intervalMs: 20, timeoutMs: 50 } }),
        (e: unknown) => e instanceof EngineOptionError && e.field === "heartbeat",
      );
      const engine = engineFor(server, client);
      await engine.start();
      await assert.rejects(engine.ping(), NotSupportedError);
      await engine.stop();
      return;
    }
    const engine = engineFor(server, client, { heartbeat: { intervalMs: 20, timeoutMs: 50 } });
    await engine.start();
    const rtt = await engine.ping(1000);
    assert.ok(rtt >= 0);
    await new Promise((r) => setTimeout(r, 80)); // a few heartbeats pass
    assert.deepEqual(errors, []);
    server.freeze();
    await until(() => closes.length === 1, "dropped");
    assert.ok((errors as unknown[])[0] instanceof TimeoutError);
    assert.equal(closes[0], 1006);
    server.thaw();
    await until(() => opens === 2, "reconnected");
    await engine.stop();
  });

  test("onCloseError: the close could not complete", async (server) => {
    const errors: CloseError[] = [];
    const engine = engineFor(server, {
      onClose: () => ({ code: 1005, reason: "" }), // 1005 must never be sent
      onCloseError: (e) => void errors.push(e),
    });
    await engine.start();
    await engine.stop();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof CloseError);
    assert.equal(errors[0].code, 1005);
  });

  // ---- reliability: offline buffer, state changes, no silent failure ----

  test("offline buffer: sends while reconnecting go out once, in order, after onOpen, before newer sends", async (server) => {
    const engine = engineFor(server, {
      onOpen: (ctx) => ctx.send(`hello:${ctx.restarting}`),
    }, { sendBuffer: true });
    await engine.start();
    assert.equal(await engine.send("a"), "sent");
    await until(() => server.received.length === 2, "a");
    await server.kill();
    await engine.waitFor("reconnecting", { timeoutMs: 5000 });
    for (let i = 1; i <= 5; i++) assert.equal(await engine.send(`b${i}`), "buffered");
    assert.equal(engine.sendBuffer?.length, 5);
    assert.equal(engine.sendBuffer?.bytes, 10);
    assert.deepEqual(engine.sendBuffer?.messages(), ["b1", "b2", "b3", "b4", "b5"]);
    await server.restart();
    await engine.waitFor("open", { timeoutMs: 5000 });
    const c = await engine.send("c"); // queued behind the flush, or sent once it is done
    assert.ok(c === "sent" || c === "buffered");
    await until(() => server.received.includes("c"), "c");
    assert.deepEqual(server.received, [
      "hello:false",
      "a",
      "hello:true",
      "b1",
      "b2",
      "b3",
      "b4",
      "b5",
      "c",
    ]);
    assert.equal(engine.sendBuffer?.length, 0);
    assert.deepEqual(await engine.stop(), []);
  });

  test("offline buffer: overflow rejects the newest, or drops (and reports) the oldest", async (server) => {
    const dropped: string[] = [];
    const rejecting = engineFor(server, {}, { sendBuffer: { maxMessages: 2 } });
    const dropping = engineFor(server, {}, {
      sendBuffer: {
        maxMessages: 100,
        maxBytes: 4,
        overflow: "drop-oldest",
        onDrop: (m, e) => void dropped.push(`${m}:${e.name}`),
      },
    });
    await rejecting.start();
    await dropping.start();
    await server.kill();
    await rejecting.waitFor("reconnecting", { timeoutMs: 5000 });
    await dropping.waitFor("reconnecting", { timeoutMs: 5000 });
    assert.equal(await rejecting.send("1"), "buffered");
    assert.equal(await rejecting.send("2"), "buffered");
    await assert.rejects(
      rejecting.send("3"),
      (e: unknown) =>
        e instanceof SendBufferFullError && e.limit === "maxMessages" && e.queuedMessages === 2,
    );
    for (const m of ["aa", "bb", "cc"]) assert.equal(await dropping.send(m), "buffered");
    assert.deepEqual(dropped, ["aa:SendBufferFullError"]);
    // One message larger than the whole buffer is refused whatever the policy.
    await assert.rejects(dropping.send("12345"), SendBufferFullError);
    assert.deepEqual(dropping.sendBuffer?.messages(), ["bb", "cc"]);
    // What is still queued at stop() is handed back, in order; the buffer is then empty.
    assert.deepEqual(await rejecting.stop(), ["1", "2"]);
    assert.deepEqual(await dropping.stop(), ["bb", "cc"]);
    assert.equal(dropping.sendBuffer?.length, 0);
    await assert.rejects(dropping.send("late"), ConnectionClosedError);
  });

  test("without the buffer, send() while reconnecting rejects and says how to queue", async (server) => {
    const engine = engineFor(server, {});
    await assert.rejects(engine.send("x"), /not started/);
    await engine.start();
    await server.kill();
    await engine.waitFor("reconnecting", { timeoutMs: 5000 });
    await assert.rejects(engine.send("x"), (e: unknown) => {
      assert.ok(e instanceof ConnectionClosedError);
      assert.match(e.message, /reconnecting.*sendBuffer/);
      return true;
    });
    await assert.rejects(engine.request("x", { match: () => true }), ConnectionClosedError);
    await engine.stop();
  });

  test("offline buffer: a request made while reconnecting is sent after the reconnect and answered", async (server) => {
    const engine = engineFor(server, {}, { sendBuffer: true });
    await engine.start();
    await server.kill();
    await engine.waitFor("reconnecting", { timeoutMs: 5000 });
    const answered = engine.request("q1", { match: (m) => text(m) === "q1", timeoutMs: 5000 });
    // A request that times out while queued withdraws its message: it is never sent later.
    await assert.rejects(
      engine.request("q2", { match: (m) => text(m) === "q2", timeoutMs: 10 }),
      TimeoutError,
    );
    assert.deepEqual(engine.sendBuffer?.messages(), ["q1"]);
    await server.restart();
    assert.equal(text(await answered), "q1");
    await engine.send("after");
    await until(() => server.received.includes("after"), "after");
    assert.deepEqual(server.received, ["q1", "after"]);
    await engine.stop();
  });

  test("state changes are reported in order; waitFor replaces polling", async (server) => {
    const engine = engineFor(server, {});
    const seen: string[] = [];
    const off = engine.onStateChange((c: StateChange) =>
      void seen.push(`${c.previous}>${c.state}`)
    );
    await engine.start();
    await server.kill();
    assert.equal(await engine.waitFor("reconnecting", { timeoutMs: 5000 }), "reconnecting");
    await server.restart();
    await engine.waitFor("open", { timeoutMs: 5000 });
    await assert.rejects(engine.waitFor("stopped", { timeoutMs: 10 }), TimeoutError);
    await engine.stop();
    await Promise.resolve(); // listeners run in their own microtasks
    off();
    assert.deepEqual(seen, [
      "stopped>starting",
      "starting>open",
      "open>closing",
      "closing>reconnecting",
      "reconnecting>open",
      "open>stopping",
      "stopping>stopped",
    ]);
  });

  test("no silent failure: a throwing onMessage and a dead server reach the logger, rate-limited", async (server) => {
    const engine = engineFor(server, {
      onMessage: () => {
        throw new Error("handler bug");
      },
    }, { reconnect: { baseDelayMs: 1, maxDelayMs: 2, maxRetries: 40 } });
    await engine.start();
    for (let i = 0; i < 30; i++) await engine.send("boom");
    await until(() => logged.some((l) => l.includes("handler bug")), "the handler's error logged");
    await server.kill();
    await engine.done; // gives up after 40 refused attempts
    assert.ok(logged.some((l) => /reconnect attempt failed .*Error/.test(l)), logged.join("\n"));
    assert.ok(logged.some((l) => /gave up reconnecting after 40/.test(l)), logged.join("\n"));
    // 30 identical handler errors and 40 identical refusals print a few lines, with counts.
    assert.ok(logged.length < 10, `a flood of ${logged.length} lines`);
    assert.ok(logged.some((l) => /\(\d+ more in the last \d+ s\)/.test(l)), logged.join("\n"));
  });

  test("a read lock held while the connection drops cannot wedge the session", async (server) => {
    const errors: unknown[] = [];
    let opens = 0;
    const engine = engineFor(server, {
      onOpen: () => void opens++,
      onReadError: (e) => void errors.push(e),
    }, { dispatchQueueLength: 2, stopTimeoutMs: 200 });
    await engine.start();
    const lease = await engine.pause(); // never resumed, never read
    for (let i = 0; i < 10; i++) server.broadcast(`m${i}`);
    await new Promise((r) => setTimeout(r, 50)); // they arrive: 2 in the dispatcher, the rest held
    await server.kill();
    await engine.waitFor("reconnecting", { timeoutMs: 5000 });
    const undelivered = errors.find((e) => e instanceof UndeliveredError) as UndeliveredError;
    assert.ok(undelivered, "the messages left behind are reported");
    assert.equal(undelivered.count, 8);
    assert.equal(lease.held, false, "the lease ended with its session");
    await server.restart();
    await until(() => opens === 2, "reconnected");
    await engine.stop();
  });
}
