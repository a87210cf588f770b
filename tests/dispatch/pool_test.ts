import assert from "node:assert/strict";
import { PoolDispatcher, WorkerDiedError } from "../../src/dispatch/pool.ts";
import { ConnectionClosedError } from "../../src/transport/types.ts";
import { ECHO, pushAll, RecordingHost, SAN, text, waitFor, withPool } from "./helpers.ts";

Deno.test({
  name: "pool: init fails clearly on a missing module or one without onMessage",
  ...SAN,
  fn: async () => {
    const missing = new PoolDispatcher({
      module: new URL("./fixtures/nope.ts", import.meta.url),
      count: 1,
    });
    await assert.rejects(() => missing.init(), /cannot load the worker module .*nope\.ts/);
    await missing.close(100);
    const noHandler = new PoolDispatcher({
      module: new URL("./fixtures/no_handler.ts", import.meta.url),
      count: 2,
    });
    await assert.rejects(() => noHandler.init(), /does not export a function onMessage/);
    await noHandler.close(100);
  },
});

Deno.test({
  name: "pool: messages reach workers; async handlers, connection id and owner calls work",
  ...SAN,
  fn: async () => {
    await withPool({}, async (_pool, host, conn) => {
      await pushAll(conn, [text("timer:20"), text("hello"), text("id"), text("call:restart")]);
      await pushAll(conn, [text("call:fail")]);
      await waitFor(() => host.sent.length === 5, "replies");
      const t = host.texts();
      assert.ok(t.some((s) => /^timer:w\d+$/.test(s)));
      assert.ok(t.some((s) => /^hello\|w\d+$/.test(s)));
      assert.ok(t.includes(`id:${host.id}`));
      assert.ok(t.includes("call:did restart(x)"), t.join(" "));
      assert.ok(t.includes("call:RangeError:failed x"), t.join(" "));
      assert.deepEqual(host.calls.map((c) => c.op), ["restart", "fail"]);
    });
  },
});

Deno.test({
  name: "pool: sends from one worker arrive in the order it made them",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (_pool, host, conn) => {
      const msgs = Array.from({ length: 300 }, (_, i) => text(`n${i}`));
      await pushAll(conn, msgs);
      await waitFor(() => host.sent.length === 300, "300 replies");
      assert.deepEqual(host.texts().map((s) => s.split("|")[0]), msgs.map((m) => m.data));
    });
  },
});

Deno.test({
  name: "pool: a throwing handler is reported with its worker id and the worker goes on",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (pool, host, conn) => {
      await pushAll(conn, [text("throw:a"), text("reject:b"), text("after")]);
      await waitFor(() => host.errors.length === 2 && host.sent.length === 1, "errors + reply");
      assert.match(String(host.errors[0].error), /thrown a/);
      assert.match(String(host.errors[1].error), /rejected b/);
      const id = host.texts()[0].split("|")[1];
      assert.equal(host.errors[0].workerId, id);
      assert.deepEqual(pool.workerIds, [id]);
    });
  },
});

Deno.test({
  name: "pool: a worker that dies is replaced and its in-flight message reported",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (pool, host, conn) => {
      const before = pool.workerIds[0];
      await pushAll(conn, [text("close"), text("one")]);
      await waitFor(() => host.errors.length === 1 && host.sent.length === 1, "death + reply");
      const err = host.errors[0].error;
      assert.ok(err instanceof WorkerDiedError);
      assert.equal(err.workerId, before);
      assert.deepEqual(err.inFlight, text("close"));
      assert.notEqual(pool.workerIds[0], before);
      await pushAll(conn, [text("uncaught"), text("two")]);
      await waitFor(() => host.errors.length === 2 && host.sent.length === 2, "second death");
      assert.ok(host.errors[1].error instanceof WorkerDiedError);
      assert.deepEqual((host.errors[1].error as WorkerDiedError).inFlight, text("uncaught"));
    });
  },
});

Deno.test({
  name: "pool: a worker that dies holding the read lock does not stall the pool",
  ...SAN,
  fn: async () => {
    await withPool({ count: 2 }, async (_pool, host, conn) => {
      await pushAll(conn, [text("pause-die")]);
      await waitFor(() => host.errors.length === 1, "death");
      await pushAll(conn, Array.from({ length: 20 }, (_, i) => text(`x${i}`)));
      await waitFor(() => host.sent.length === 20, "20 replies after recovery");
      const lease = await conn.pause(); // the lock is free again
      lease.resume();
    });
  },
});

Deno.test({
  name: "pool: a handler that never resumes its pause does not stall the pool",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (_pool, host, conn) => {
      await pushAll(conn, [text("pause-forget")]);
      await pushAll(conn, Array.from({ length: 5 }, (_, i) => text(`y${i}`)));
      await waitFor(() => host.sent.length === 5, "5 replies: the lease ended with its handler");
      const lease = await conn.pause(); // the lock is free again
      lease.resume();
    });
  },
});

Deno.test({
  name: "pool: a main-thread pause ends with its connection; the others go on",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (pool, host, conn) => {
      const stale = await conn.pause();
      const reading = stale.read({ timeoutMs: 5000 });
      conn.end();
      assert.equal(stale.held, false);
      await assert.rejects(reading, ConnectionClosedError);
      const next = new RecordingHost("c2");
      await pushAll(pool.open(next), [text("z")]);
      await waitFor(() => next.sent.length === 1, "dispatched for the next connection");
      await waitFor(() => host.endedWith !== undefined, "the first one's end");
    });
  },
});

Deno.test({
  name: "pool: pause from the main thread reads in order and holds dispatch until resume",
  ...SAN,
  fn: async () => {
    await withPool({ count: 2 }, async (_pool, host, conn) => {
      const lease = await conn.pause();
      assert.ok(lease.held);
      await pushAll(conn, [text("a"), text("b"), text("c")]);
      assert.deepEqual(await lease.read({ timeoutMs: 5000 }), text("a"));
      assert.deepEqual(await lease.read(), text("b"));
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(host.sent.length, 0, "nothing dispatched while paused");
      assert.deepEqual(await lease.read(), text("c"));
      // an empty ring: the read waits for the next push
      const later = lease.read({ timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 10));
      conn.push(text("d"));
      assert.deepEqual(await later, text("d"));
      await assert.rejects(() => lease.read({ timeoutMs: 5 }), { name: "TimeoutError" });
      lease.resume();
      assert.equal(lease.held, false);
      await lease.send("via lease");
      assert.equal(host.texts()[0], "via lease");
    });
  },
});

Deno.test({
  name: "pool: pause from a worker reads the next messages itself and sends",
  ...SAN,
  fn: async () => {
    await withPool({ count: 2 }, async (_pool, host, conn) => {
      await pushAll(conn, [text("pause:2")]);
      await new Promise((r) => setTimeout(r, 20));
      await pushAll(conn, [text("q1"), text("q2"), text("q3")]);
      await waitFor(() => host.sent.length === 2, "lease reply + q3");
      assert.ok(host.texts().includes("paused:q1,q2"));
      assert.ok(host.texts().some((s) => s.startsWith("q3|")));
    });
  },
});

Deno.test({
  name: "pool: a worker lease on a connection that ends reads what is left, then rejects",
  ...SAN,
  fn: async () => {
    await withPool({ count: 1 }, async (_pool, host, conn) => {
      await pushAll(conn, [text("pause:2"), text("b1")]);
      conn.end();
      await waitFor(() => host.errors.length === 1 && host.endedWith !== undefined, "the end");
      assert.match(String(host.errors[0].error), /ConnectionClosedError|connection ended/);
      assert.deepEqual(host.endedWith, { dropped: 0 });
      assert.equal(host.sent.length, 0, "the handler never got its second message");
    });
  },
});

Deno.test({
  name: "pool: no worker starves",
  ...SAN,
  fn: async () => {
    await withPool({ count: 2 }, async (_pool, host, conn) => {
      await pushAll(conn, Array.from({ length: 40 }, () => text("busy:3")));
      await waitFor(() => host.sent.length === 40, "40 replies");
      const by = new Set(host.texts().map((s) => s.split(":")[1]));
      assert.equal(by.size, 2, `both workers handled messages: ${[...by]}`);
    }, { order: "none" });
  },
});

Deno.test({
  name: "pool: stop() ends busy workers within its budget and counts what was never handled",
  ...SAN,
  fn: async () => {
    const pool = new PoolDispatcher({ module: ECHO, count: 2 }, { order: "none" });
    await pool.init();
    const host = new RecordingHost();
    const conn = pool.open(host);
    await pushAll(conn, [text("spin:60000"), text("spin:60000"), text("a"), text("b"), text("c")]);
    await waitFor(() => pool.usedBytes > 0, "queued");
    await new Promise((r) => setTimeout(r, 50));
    const { abandoned } = await pool.close(200);
    assert.equal(abandoned, 3);
    assert.equal(conn.push(text("late")), true);
    assert.deepEqual(await pool.close(10), { abandoned: 0 });
  },
});

Deno.test({
  name: "pool: a message over maxMessageBytes is reported, not dropped silently",
  ...SAN,
  fn: async () => {
    await withPool(
      { count: 1, ringBytes: 1024, maxMessageBytes: 4096 },
      async (pool, host, conn) => {
        assert.equal(conn.push({ type: "binary", data: new Uint8Array(3000) }), true);
        assert.equal(conn.push({ type: "binary", data: new Uint8Array(5000) }), true);
        await waitFor(() => host.sent.length === 1 && host.errors.length === 1, "reply + report");
        assert.match(String(host.errors[0].error), /exceeds workers\.maxMessageBytes/);
        assert.equal(pool.sideBytes, 3000);
      },
    );
  },
});

Deno.test({
  name: "pool: close() while the main thread holds the pause lease releases it and stops",
  ...SAN,
  fn: async () => {
    const pool = new PoolDispatcher({ module: ECHO, count: 2 });
    await pool.init();
    const conn = pool.open(new RecordingHost());
    const lease = await conn.pause();
    await pushAll(conn, [text("a"), text("b")]);
    assert.deepEqual(await pool.close(2000), { abandoned: 2 });
    assert.equal(lease.held, false);
    await assert.rejects(() => conn.pause(), ConnectionClosedError);
  },
});
