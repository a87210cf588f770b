import assert from "node:assert/strict";
import { InlineDispatcher } from "../../src/engine/inline_dispatcher.ts";
import type { DispatchHost } from "../../src/engine/dispatcher.ts";
import { ConnectionClosedError, type WireMessage } from "../../src/transport/types.ts";
import { deferred, TimeoutError } from "../../src/util/async.ts";

const msg = (data: string): WireMessage => ({ type: "text", data });
const host = (errors: unknown[] = [], id = "s1"): DispatchHost => ({
  sessionId: id,
  send: () => Promise.resolve(),
  restart() {},
  exit() {},
  reportError: (e) => void errors.push(e),
});
const tick = () => new Promise((r) => setTimeout(r, 0));
const opts = { sanitizeOps: true, sanitizeResources: true };

Deno.test({
  ...opts,
  name: "serial, in order, async handlers awaited; throws reported, dispatch goes on",
  async fn() {
    const seen: string[] = [];
    const errors: unknown[] = [];
    const d = new InlineDispatcher(async (m, ctx) => {
      assert.equal(ctx.workerId, "main");
      assert.equal(ctx.sessionId, "s1");
      seen.push(`start ${m.data}`);
      await tick();
      seen.push(`end ${m.data}`);
      if (m.data === "b") throw new Error("b failed");
    });
    await d.init();
    d.attach(host(errors));
    for (const x of ["a", "b", "c"]) assert.equal(d.push(msg(x)), true);
    for (let i = 0; i < 50 && seen.length < 6; i++) await tick();
    assert.deepEqual(seen, ["start a", "end a", "start b", "end b", "start c", "end c"]);
    assert.equal((errors[0] as Error).message, "b failed");
    assert.deepEqual(await d.close(100), { abandoned: 0 });
  },
});

Deno.test({
  ...opts,
  name: "bounded queue: push refuses when full, writable() resolves when room",
  async fn() {
    const gate = deferred<void>();
    const d = new InlineDispatcher(() => gate.promise, { maxQueued: 2 });
    await d.init();
    d.attach(host());
    assert.equal(d.push(msg("1")), true);
    await tick(); // "1" is taken and in flight
    assert.equal(d.push(msg("2")), true);
    assert.equal(d.push(msg("3")), true);
    assert.equal(d.push(msg("4")), false);
    let writable = false;
    const w = d.writable().then(() => (writable = true));
    await tick();
    assert.equal(writable, false);
    gate.resolve();
    await w;
    assert.equal(d.push(msg("4")), true);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "pause: the holder reads in order, nothing dispatched; resume continues",
  async fn() {
    const seen: string[] = [];
    const d = new InlineDispatcher((m) => void seen.push(m.data as string));
    await d.init();
    d.attach(host());
    const lease = await d.pause();
    for (const x of ["a", "b", "c", "d"]) d.push(msg(x));
    await tick();
    assert.deepEqual(seen, []);
    assert.equal((await lease.read()).data, "a");
    assert.equal((await lease.read()).data, "b");
    await assert.rejects(
      new InlineDispatcher().pause(),
      ConnectionClosedError,
    );
    lease.resume();
    lease.resume(); // idempotent
    for (let i = 0; i < 20 && seen.length < 2; i++) await tick();
    assert.deepEqual(seen, ["c", "d"]);
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "pause: read waits, times out, aborts, and fails once the session is detached",
  async fn() {
    const d = new InlineDispatcher(() => {});
    await d.init();
    d.attach(host());
    const lease = await d.pause();
    const waiting = lease.read({ timeoutMs: 1000 });
    d.push(msg("late"));
    assert.equal((await waiting).data, "late");
    await assert.rejects(lease.read({ timeoutMs: 10 }), TimeoutError);
    const ac = new AbortController();
    const aborted = lease.read({ signal: ac.signal });
    ac.abort(new Error("no more"));
    await assert.rejects(aborted, /no more/);
    const pending = lease.read({ timeoutMs: 1000 });
    d.detach();
    await assert.rejects(pending, ConnectionClosedError);
    lease.resume();
    await d.close(100);
  },
});

Deno.test({
  ...opts,
  name: "a second pause waits for the first; an aborted wait leaves the lock alone",
  async fn() {
    const d = new InlineDispatcher(() => {});
    await d.init();
    d.attach(host());
    const first = await d.pause();
    const ac = new AbortController();
    const aborted = d.pause(ac.signal);
    ac.abort(new Error("gave up"));
    await assert.rejects(aborted, /gave up/);
    let got = false;
    const second = d.pause().then((l) => {
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
  name: "close: abandons queued messages, waits for the one in flight up to the budget",
  async fn() {
    const d = new InlineDispatcher(() => new Promise(() => {}));
    await d.init();
    d.attach(host());
    d.push(msg("1"));
    await tick();
    d.push(msg("2"));
    d.push(msg("3"));
    const t0 = performance.now();
    assert.deepEqual(await d.close(50), { abandoned: 2 });
    assert.ok(performance.now() - t0 < 1000);
  },
});

Deno.test({
  ...opts,
  name: "a pause still held from an ended session is released when the next one attaches",
  async fn() {
    const seen: string[] = [];
    const d = new InlineDispatcher((m, ctx) => void seen.push(`${ctx.sessionId}:${m.data}`));
    await d.init();
    const first = host([], "s1");
    d.attach(first);
    const stale = await d.pause(); // e.g. taken in onMessage, never resumed
    d.push(msg("old"));
    assert.deepEqual(await stale.read({ timeoutMs: 1000 }), msg("old"), "still readable");
    d.detach();
    d.attach(host([], "s2"));
    assert.equal(stale.held, false);
    d.push(msg("new"));
    for (let i = 0; i < 50 && seen.length < 1; i++) await tick();
    assert.deepEqual(seen, ["s2:new"], "the new session is dispatched");
    await d.close(100);
  },
});
