import assert from "node:assert/strict";
import { InlineDispatcher } from "../../src/dispatch/inline.ts";
import {
  type ConnectionHost,
  type HandlerContext,
  LeaseResumedError,
} from "../../src/dispatch/types.ts";
import { ConnectionClosedError, type WireMessage } from "../../src/transport/types.ts";
import { deferred, TimeoutError, within } from "../../src/util/async.ts";

const msg = (data: string): WireMessage => ({ type: "text", data });
const host = (errors: unknown[] = [], id = "s1", ended?: (n: number) => void): ConnectionHost => ({
  id,
  send: () => Promise.resolve(),
  call: (op, args) => `${op}:${args.join(",")}`,
  reportError: (e) => void errors.push(e),
  ended: (info) => ended?.(info.dropped),
});
const tick = () => new Promise((r) => setTimeout(r, 0));
const opts = { sanitizeOps: true, sanitizeResources: true };

Deno.test({
  ...opts,
  name: "inline: serial, in order, async handlers awaited; throws reported, dispatch goes on",
  async fn() {
    const seen: string[] = [];
    const errors: unknown[] = [];
    const d = new InlineDispatcher({
      onMessage: async (m, ctx) => {
        assert.equal(ctx.workerId, "main");
        assert.equal(ctx.connectionId, "s1");
        seen.push(`start ${m.data}`);
        await tick();
        seen.push(`end ${m.data}`);
        if (m.data === "b") throw new Error("b failed");
      },
    });
    await d.init();
    const c = d.open(host(errors));
    for (const x of ["a", "b", "c"]) assert.equal(c.push(msg(x)), true);
    for (let i = 0; i < 50 && seen.length < 6; i++) await tick();
    assert.deepEqual(seen, ["start a", "end a", "start b", "end b", "start c", "end c"]);
    assert.equal((errors[0] as Error).message, "b failed");
    assert.deepEqual(await d.close(100), { abandoned: 0 });
  },
});

Deno.test({
  ...opts,
  name: "inline: many connections — events in order with messages, owner calls, context shape",
  async fn() {
    const log: string[] = [];
    const ended: string[] = [];
    const d = new InlineDispatcher<HandlerContext & { tag: string }>({
      onConnect: (ctx, info) => void log.push(`${ctx.connectionId} open ${info}`),
      onMessage: async (m, ctx) => {
        log.push(`${ctx.connectionId} ${m.data} ${ctx.tag}`);
        if (m.data === "call") log.push(String(await ctx.call("op", 1, 2)));
      },
      onDisconnect: (info, ctx) => void log.push(`${ctx.connectionId} close ${info}`),
    }, { context: (base) => Object.assign(base, { tag: `#${base.connectionId}` }) });
    await d.init();
    const a = d.open(host([], "a", (n) => ended.push(`a:${n}`)), "A");
    const b = d.open(host([], "b", (n) => ended.push(`b:${n}`)), "B");
    a.push(msg("1"));
    b.push(msg("1"));
    a.push(msg("call"));
    a.end({ info: 1000 });
    b.push(msg("2"));
    b.end({ info: 1001 });
    for (let i = 0; i < 50 && ended.length < 2; i++) await tick();
    assert.deepEqual(log, [
      "a open A",
      "b open B",
      "a 1 #a",
      "b 1 #b",
      "a call #a",
      "op:1,2",
      "a close 1000",
      "b 2 #b",
      "b close 1001",
    ]);
    assert.deepEqual(ended, ["a:0", "b:0"]);
    assert.equal(a.push(msg("late")), true, "a push after the end is taken and ignored");
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: end with discard drops that connection's queued messages, counted",
  async fn() {
    const seen: string[] = [];
    const dropped: number[] = [];
    const gate = deferred<void>();
    const d = new InlineDispatcher({
      onMessage: async (m, ctx) => {
        if (m.data === "gate") await gate.promise;
        seen.push(`${ctx.connectionId}:${m.data}`);
      },
    });
    await d.init();
    const a = d.open(host([], "a", (n) => dropped.push(n)));
    const b = d.open(host([], "b"));
    a.push(msg("gate"));
    await tick();
    for (const x of ["1", "2", "3"]) {
      a.push(msg(x));
      b.push(msg(x));
    }
    a.end({ discard: true });
    gate.resolve();
    for (let i = 0; i < 50 && seen.length < 4; i++) await tick();
    assert.deepEqual(seen, ["a:gate", "b:1", "b:2", "b:3"]);
    assert.deepEqual(dropped, [3]);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: bounded queue — push refuses when full, writable() resolves when room",
  async fn() {
    const gate = deferred<void>();
    const d = new InlineDispatcher({ onMessage: () => gate.promise }, { maxQueued: 2 });
    await d.init();
    const c = d.open(host());
    assert.equal(c.push(msg("1")), true);
    await tick(); // "1" is taken and in flight
    assert.equal(c.push(msg("2")), true);
    assert.equal(c.push(msg("3")), true);
    assert.equal(c.push(msg("4")), false);
    let writable = false;
    const w = c.writable().then(() => (writable = true));
    await tick();
    assert.equal(writable, false);
    gate.resolve();
    await w;
    assert.equal(c.push(msg("4")), true);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: 200 connections blocked on a full queue and on their own share all get through",
  async fn() {
    const seen = new Map<string, number[]>();
    let gate = deferred<void>();
    const d = new InlineDispatcher({
      onMessage: async (m, ctx) => {
        if (m.data === "0") await gate.promise; // the first message of each holds the queue up
        const list = seen.get(ctx.connectionId) ?? [];
        list.push(Number(m.data));
        seen.set(ctx.connectionId, list);
      },
    }, { maxQueued: 64, maxQueuedPerConnection: 8 });
    await d.init();
    const PER = 20;
    const conns = Array.from({ length: 200 }, (_, i) => d.open(host([], `c${i}`)));
    // Each connection pushes its 20 messages, waiting for writable() whenever it is refused.
    let waits = 0;
    const feeding = conns.map(async (c) => {
      for (let i = 0; i < PER; i++) {
        // Bounded: every refusal waits for room, and the handlers drain the queue.
        while (!c.push(msg(String(i)))) {
          waits++;
          await c.writable();
        }
      }
    });
    for (let i = 0; i < 5; i++) await tick();
    assert.ok(waits > 0, "the queue filled and pushes were refused");
    gate.resolve();
    gate = deferred<void>();
    gate.resolve();
    await within(Promise.all(feeding), { timeoutMs: 10_000, what: "every connection's pushes" });
    for (let i = 0; i < 200 && [...seen.values()].flat().length < 200 * PER; i++) await tick();
    assert.equal(seen.size, 200);
    for (const [id, list] of seen) {
      assert.deepEqual(list, Array.from({ length: PER }, (_, i) => i), `${id} in order, once each`);
    }
    assert.deepEqual(await d.close(100), { abandoned: 0 });
  },
});

Deno.test({
  ...opts,
  name: "inline: pause — the holder reads its connection in order, the others wait; resume",
  async fn() {
    const seen: string[] = [];
    const d = new InlineDispatcher({
      onMessage: (m, ctx) => void seen.push(`${ctx.connectionId}:${m.data}`),
    });
    await d.init();
    const a = d.open(host([], "a"));
    const b = d.open(host([], "b"));
    const lease = await a.pause();
    for (const x of ["1", "2", "3"]) {
      a.push(msg(x));
      b.push(msg(x));
    }
    await tick();
    assert.deepEqual(seen, [], "nothing dispatched while the lock is held");
    assert.equal((await lease.read()).data, "1");
    assert.equal((await lease.read()).data, "2");
    lease.resume();
    lease.resume(); // idempotent
    await assert.rejects(lease.read(), LeaseResumedError);
    for (let i = 0; i < 20 && seen.length < 4; i++) await tick();
    assert.deepEqual(seen, ["b:1", "b:2", "a:3", "b:3"]);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: lease read waits, times out, aborts, and fails once the connection ended",
  async fn() {
    const d = new InlineDispatcher({ onMessage: () => {} });
    await d.init();
    const c = d.open(host());
    const lease = await c.pause();
    const waiting = lease.read({ timeoutMs: 1000 });
    c.push(msg("late"));
    assert.equal((await waiting).data, "late");
    await assert.rejects(lease.read({ timeoutMs: 10 }), TimeoutError);
    const ac = new AbortController();
    const aborted = lease.read({ signal: ac.signal });
    ac.abort(new Error("no more"));
    await assert.rejects(aborted, /no more/);
    const pending = lease.read({ timeoutMs: 1000 });
    c.end();
    await assert.rejects(pending, ConnectionClosedError);
    assert.equal(lease.held, false, "a lease taken outside a handler ends with its connection");
    await assert.rejects(c.pause(), ConnectionClosedError);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: a second pause waits for the first; an aborted wait leaves the lock alone",
  async fn() {
    const d = new InlineDispatcher({ onMessage: () => {} });
    await d.init();
    const c = d.open(host());
    const first = await c.pause();
    const ac = new AbortController();
    const aborted = c.pause(ac.signal);
    ac.abort(new Error("gave up"));
    await assert.rejects(aborted, /gave up/);
    let got = false;
    const second = c.pause().then((l) => {
      got = true;
      return l;
    });
    await tick();
    assert.equal(got, false);
    first.resume();
    (await second).resume();
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: a lease taken in a handler and never resumed ends with the handler",
  async fn() {
    const seen: string[] = [];
    let kept: { held: boolean } | undefined;
    const d = new InlineDispatcher({
      onMessage: async (m, ctx) => {
        seen.push(m.data as string);
        if (m.data === "forget") kept = await ctx.pause();
      },
    });
    await d.init();
    const c = d.open(host());
    c.push(msg("forget"));
    c.push(msg("next"));
    for (let i = 0; i < 50 && seen.length < 2; i++) await tick();
    assert.deepEqual(seen, ["forget", "next"]);
    assert.equal(kept?.held, false);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "inline: close abandons queued messages, waits for the one in flight up to the budget",
  async fn() {
    const d = new InlineDispatcher({ onMessage: () => new Promise(() => {}) });
    await d.init();
    const c = d.open(host());
    c.push(msg("1"));
    await tick();
    c.push(msg("2"));
    c.push(msg("3"));
    const t0 = performance.now();
    assert.deepEqual(await d.close(50), { abandoned: 2 });
    assert.ok(performance.now() - t0 < 1000);
  },
});
