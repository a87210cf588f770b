// The pool serving many connections at once: order per connection, sticky and shared assignment,
// connection events in order with messages, a connection's end and a worker's death kept local.
import assert from "node:assert/strict";
import { PoolDispatcher, WorkerDiedError } from "../../src/dispatch/pool.ts";
import type { DispatchConnection } from "../../src/dispatch/types.ts";
import { RecordingHost, SAN, text, waitFor } from "./helpers.ts";

const EVENTS = new URL("./fixtures/events.ts", import.meta.url);

/** Pushes `perConn` sequence-numbered messages to every connection, interleaved across them. */
async function interleave(conns: DispatchConnection[], perConn: number): Promise<void> {
  for (let seq = 0; seq < perConn; seq++) {
    for (const c of conns) {
      for (let i = 0; !c.push(text(`m${seq}`)); i++) {
        if (i > 100_000) throw new Error("push stuck");
        await c.writable();
      }
    }
  }
}

for (const assign of ["sticky", "shared"] as const) {
  Deno.test({
    name: `pool (${assign}): 1,000 connections, interleaved — each message once, in order`,
    ...SAN,
    fn: async () => {
      const pool = new PoolDispatcher({ module: EVENTS, count: 2, assign, ringBytes: 64 << 10 });
      const N = 1000, PER = 12;
      try {
        await pool.init();
        const hosts = Array.from({ length: N }, (_, i) => new RecordingHost(`c${i}`));
        const conns = hosts.map((h, i) => pool.open(h, { n: i }));
        await interleave(conns, PER);
        conns.forEach((c, i) => c.end({ info: { code: 1000 + (i % 3) } }));
        await waitFor(() => hosts.every((h) => h.endedWith !== undefined), "every end", 30_000);
        const workers = pool.workerIds;
        hosts.forEach((h, i) => {
          const t = h.texts();
          assert.equal(t.length, PER + 2, `connection ${i}: ${t.length} answers`);
          const [open, ...rest] = t;
          const close = rest.pop()!;
          assert.match(open, new RegExp(`^open\\|w\\d+\\|\\{"n":${i}\\}$`));
          assert.match(close, new RegExp(`^close\\|w\\d+\\|\\{"code":${1000 + (i % 3)}\\}$`));
          assert.deepEqual(
            rest.map((s) => s.split("|")[0]),
            Array.from({ length: PER }, (_, k) => `m${k}`),
            `connection ${i} in order`,
          );
          assert.deepEqual(h.endedWith, { dropped: 0 });
          if (assign === "sticky") {
            const by = new Set(t.map((s) => s.split("|")[1]));
            assert.equal(by.size, 1, `connection ${i} handled by one worker: ${[...by]}`);
            assert.equal([...by][0], workers[i % 2], "assigned round-robin at open");
          }
        });
        assert.equal(pool.stats.connections, 0, "every slot freed");
        if (assign === "shared") {
          const by = new Set(hosts.flatMap((h) => h.texts().map((s) => s.split("|")[1])));
          assert.equal(by.size, 2, "both workers took messages");
        }
      } finally {
        await pool.close(2000);
      }
    },
  });
}

for (const assign of ["sticky", "shared"] as const) {
  Deno.test({
    name: `pool (${assign}): a connection ended with discard drops only its own pending messages`,
    ...SAN,
    fn: async () => {
      const pool = new PoolDispatcher({ module: EVENTS, count: 1, assign });
      try {
        await pool.init();
        const [blocker, a, b] = ["blocker", "a", "b"].map((id) => new RecordingHost(id));
        const [cBlocker, cA, cB] = [blocker, a, b].map((h) => pool.open(h));
        await waitFor(() => a.sent.length === 1 && b.sent.length === 1, "opens handled");
        // The one worker is busy for 300 ms: everything pushed now is still pending.
        cBlocker.push(text("spin:300"));
        for (let i = 0; i < 10; i++) {
          cA.push(text(`a${i}`));
          cB.push(text(`b${i}`));
        }
        cA.end({ discard: true, info: "gone" });
        await waitFor(() => a.endedWith !== undefined && b.sent.length === 11, "a's end, b's 10");
        assert.deepEqual(a.endedWith, { dropped: 10 });
        assert.deepEqual(a.texts().map((s) => s.split("|")[0]), ["open", "close"]);
        assert.deepEqual(
          b.texts().slice(1).map((s) => s.split("|")[0]),
          Array.from({ length: 10 }, (_, i) => `b${i}`),
        );
        assert.equal(b.endedWith, undefined);
      } finally {
        await pool.close(2000);
      }
    },
  });
}

Deno.test({
  name: "pool (sticky): a worker dying affects only its in-flight message",
  ...SAN,
  fn: async () => {
    const pool = new PoolDispatcher({ module: EVENTS, count: 2, assign: "sticky" });
    try {
      await pool.init();
      const a = new RecordingHost("a"), b = new RecordingHost("b");
      const cA = pool.open(a), cB = pool.open(b); // round-robin: different workers
      await waitFor(() => a.sent.length === 1 && b.sent.length === 1, "opens handled");
      const dying = a.texts()[0].split("|")[1];
      cA.push(text("die"));
      for (let i = 0; i < 50; i++) cB.push(text(`b${i}`));
      cA.push(text("after"));
      await waitFor(() => b.sent.length === 51 && a.sent.length === 2, "b's answers, a's after");
      assert.equal(a.errors.length, 1);
      const err = a.errors[0].error as WorkerDiedError;
      assert.ok(err instanceof WorkerDiedError);
      assert.equal(err.workerId, dying);
      assert.deepEqual(err.inFlight, text("die"));
      assert.equal(b.errors.length, 0, "the other worker's connection heard nothing");
      assert.match(a.texts()[1], /^after\|w\d+$/);
      assert.notEqual(a.texts()[1].split("|")[1], dying, "a replacement took over");
      assert.deepEqual(
        b.texts().slice(1).map((s) => s.split("|")[0]),
        Array.from({ length: 50 }, (_, i) => `b${i}`),
      );
    } finally {
      await pool.close(2000);
    }
  },
});

Deno.test({
  name: "pool (sticky): a pause holds only its worker's connections",
  ...SAN,
  fn: async () => {
    const pool = new PoolDispatcher({ module: EVENTS, count: 2, assign: "sticky" });
    try {
      await pool.init();
      const a = new RecordingHost("a"), b = new RecordingHost("b");
      const cA = pool.open(a), cB = pool.open(b);
      await waitFor(() => a.sent.length === 1 && b.sent.length === 1, "opens handled");
      const lease = await cA.pause();
      cA.push(text("a1"));
      cB.push(text("b1"));
      await waitFor(() => b.sent.length === 2, "b is not held by a's pause");
      assert.deepEqual(await lease.read({ timeoutMs: 5000 }), text("a1"));
      assert.equal(a.sent.length, 1, "a1 went to the lease, not the handler");
      lease.resume();
      cA.push(text("a2"));
      await waitFor(() => a.sent.length === 2, "dispatch resumed");
    } finally {
      await pool.close(2000);
    }
  },
});
