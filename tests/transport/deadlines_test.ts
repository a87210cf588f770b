import assert from "node:assert/strict";
import { Deadline } from "../../src/transport/deadlines.ts";

const SANITIZE = { sanitizeOps: true, sanitizeResources: true } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "Deadline: fires in due order, once; moved and cancelled ones follow their last setting",
  ...SANITIZE,
  async fn() {
    const fired: string[] = [];
    const make = (name: string) => new Deadline(() => fired.push(name));
    const t = performance.now();
    const a = make("a"), b = make("b"), c = make("c"), d = make("d"), e = make("e");
    a.set(t + 40);
    b.set(t + 10);
    c.set(t + 30);
    d.set(t + 20);
    e.set(t + 5);
    c.set(t + 1); // moved earlier
    d.set(t + 60); // moved later
    e.cancel();
    b.set(Infinity); // cancelled too
    assert.equal(Deadline.pending, 3);
    assert.equal(a.at, t + 40);
    assert.equal(e.at, Infinity);
    for (let i = 0; i < 100 && fired.length < 3; i++) await sleep(10);
    assert.deepEqual(fired, ["c", "a", "d"]);
    assert.equal(Deadline.pending, 0, "nothing left: the shared timer is gone too");
    assert.equal(a.at, Infinity);
  },
});

Deno.test({
  name: "Deadline: a callback may set itself again; a throwing one does not stop the others",
  ...SANITIZE,
  async fn() {
    let ticks = 0;
    const tick: Deadline = new Deadline(() => {
      if (++ticks < 5) tick.set(performance.now() + 2);
    });
    tick.set(performance.now());
    let other = false;
    const thrower = new Deadline(() => {
      throw new Error("boom");
    });
    const after = new Deadline(() => (other = true));
    const t = performance.now() + 3;
    thrower.set(t);
    after.set(t);
    const errors: unknown[] = [];
    const onError = (e: ErrorEvent) => {
      e.preventDefault();
      errors.push(e.error);
    };
    globalThis.addEventListener("error", onError);
    try {
      for (let i = 0; i < 100 && (ticks < 5 || !other); i++) await sleep(5);
    } finally {
      globalThis.removeEventListener("error", onError);
    }
    assert.equal(ticks, 5);
    assert.ok(other, "the deadline due with the throwing one still ran");
    assert.equal((errors[0] as Error)?.message, "boom");
    assert.equal(Deadline.pending, 0);
  },
});

Deno.test({
  name: "Deadline: random sets and cancels on many deadlines match a model",
  ...SANITIZE,
  async fn() {
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const fired: number[] = [];
    const ds = Array.from({ length: 300 }, (_, i) => new Deadline(() => fired.push(i)));
    const want = new Map<number, number>();
    const t0 = performance.now();
    for (let op = 0; op < 2000; op++) {
      const i = rand(ds.length);
      if (rand(4) === 0) {
        ds[i].cancel();
        want.delete(i);
      } else {
        const at = t0 + 5 + rand(40);
        ds[i].set(at);
        want.set(i, at);
      }
    }
    assert.equal(Deadline.pending, want.size);
    for (let i = 0; i < 200 && fired.length < want.size; i++) await sleep(5);
    assert.equal(fired.length, want.size);
    assert.deepEqual(new Set(fired), new Set(want.keys()));
    for (let k = 1; k < fired.length; k++) {
      assert.ok(want.get(fired[k - 1])! <= want.get(fired[k])!, "due order");
    }
  },
});
