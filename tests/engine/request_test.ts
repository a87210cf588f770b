import assert from "node:assert/strict";
import { RequestTracker } from "../../src/engine/request.ts";
import { ConnectionClosedError, type WireMessage } from "../../src/transport/types.ts";
import { TimeoutError } from "../../src/util/async.ts";

const t = (data: string): WireMessage => ({ type: "text", data });
const idOf = (m: WireMessage) => (m.type === "text" ? JSON.parse(m.data).id : undefined);
const opts = { sanitizeOps: true, sanitizeResources: true };

Deno.test({
  ...opts,
  name: "id matching: one lookup per message, oldest request with that id first",
  async fn() {
    const r = new RequestTracker();
    const a = r.wait({ match: { id: 1, idOf } });
    const b = r.wait({ match: { id: 2, idOf } });
    assert.equal(r.size, 2);
    assert.equal(r.offer(t('{"id":3}')), false);
    assert.equal(r.offer(t('{"id":2,"v":"b"}')), true);
    assert.equal(r.offer(t('{"id":1,"v":"a"}')), true);
    assert.equal((await a).data, '{"id":1,"v":"a"}');
    assert.equal((await b).data, '{"id":2,"v":"b"}');
    assert.equal(r.size, 0);
    assert.equal(r.offer(t("not json")), false); // nothing pending: not even parsed
  },
});

Deno.test({
  ...opts,
  name:
    "predicates; an extractor that throws does not match; a predicate that throws fails its request",
  async fn() {
    const r = new RequestTracker();
    const bad = r.wait({
      match: () => {
        throw new Error("bad predicate");
      },
    });
    const badFailed = assert.rejects(bad, /bad predicate/);
    const good = r.wait({ match: (m) => m.data === "pong" });
    const byId = r.wait({ match: { id: 5, idOf }, timeoutMs: 20 });
    assert.equal(r.offer(t("pong")), true); // idOf throws on "pong": skipped
    await badFailed;
    assert.equal((await good).data, "pong");
    await assert.rejects(byId, TimeoutError);
  },
});

Deno.test({
  ...opts,
  name: "failAll, abort, timeout: every pending request settles and its timer is cleared",
  async fn() {
    const r = new RequestTracker();
    const ac = new AbortController();
    const aborted = r.wait({ match: () => false, signal: ac.signal, timeoutMs: 5000 });
    const p1 = r.wait({ match: () => false, timeoutMs: 5000 });
    const p2 = r.wait({ match: { id: 1, idOf }, timeoutMs: 5000 });
    ac.abort(new Error("cancelled"));
    await assert.rejects(aborted, /cancelled/);
    r.failAll();
    await assert.rejects(p1, ConnectionClosedError);
    await assert.rejects(p2, ConnectionClosedError);
    assert.equal(r.size, 0);
  },
});
