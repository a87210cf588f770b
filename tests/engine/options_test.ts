import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineOptionError } from "../../src/engine/errors.ts";
import { type EngineOptions, resolveOptions } from "../../src/engine/options.ts";

const base: EngineOptions = { url: "ws://127.0.0.1:9/", client: {} };

function rejects(patch: Record<string, unknown>, field: string, rule: RegExp) {
  assert.throws(
    () => new WebSocketEngine({ ...base, ...patch } as EngineOptions),
    (e: unknown) => {
      assert.ok(e instanceof EngineOptionError, String(e));
      assert.equal(e.field, field);
      assert.match(e.rule, rule);
      assert.match(e.message, new RegExp(`invalid option ${field.replace(".", "\\.")}`));
      return true;
    },
  );
}

Deno.test("defaults", () => {
  const r = resolveOptions(base);
  assert.equal(r.openTimeoutMs, 10_000);
  assert.equal(r.stopTimeoutMs, 5_000);
  assert.equal(r.reconnect.enabled, true);
  assert.equal(r.reconnect.baseDelayMs, 500);
  assert.equal(r.reconnect.maxDelayMs, 30_000);
  assert.equal(r.reconnect.maxRetries, Infinity);
  assert.equal(r.adapter.name, "wse", "our own client where Deno.connect exists");
  assert.equal(resolveOptions({ ...base, reconnect: false }).reconnect.enabled, false);
});

Deno.test("bad options are rejected with the field and the rule", () => {
  rejects({ url: "not a url" }, "url", /absolute ws: or wss: URL/);
  rejects({ url: "http://127.0.0.1/" }, "url", /ws: or wss: scheme/);
  rejects({ url: "ws://127.0.0.1/#x" }, "url", /fragment/);
  rejects({ client: null }, "client", /object/);
  rejects({ client: { onmessage() {} } }, "client.onmessage", /not a callback/);
  rejects({ client: { onOpen: 1 } }, "client.onOpen", /function/);
  rejects({ adapter: {} }, "adapter", /dial/);
  rejects({ protocols: "chat" }, "protocols", /array/);
  rejects({ protocols: ["a b"] }, "protocols", /token/);
  rejects({ protocols: ["a", "a"] }, "protocols", /repeat/);
  rejects({ headers: { "bad name": "x" } }, "headers.bad name", /header name/);
  rejects({ headers: { x: "a\r\nb" } }, "headers.x", /CR, LF/);
  rejects({ reconnect: 3 }, "reconnect", /boolean or an object/);
  rejects({ reconnect: { enabled: "yes" } }, "reconnect.enabled", /boolean/);
  rejects({ reconnect: { baseDelayMs: 0 } }, "reconnect.baseDelayMs", /> 0/);
  rejects({ reconnect: { baseDelayMs: 1000, maxDelayMs: 10 } }, "reconnect.maxDelayMs", />=/);
  rejects({ reconnect: { maxRetries: -1 } }, "reconnect.maxRetries", /integer >= 0/);
  rejects({ reconnect: { maxRetries: 1.5 } }, "reconnect.maxRetries", /integer >= 0/);
  rejects({ reconnect: { random: 0.5 } }, "reconnect.random", /function/);
  rejects({ openTimeoutMs: -1 }, "openTimeoutMs", /> 0/);
  rejects({ stopTimeoutMs: Infinity }, "stopTimeoutMs", /finite/);
  rejects({ maxPayload: 1.5 }, "maxPayload", /integer/);
  rejects({ readHighWaterMark: 10, readLowWaterMark: 20 }, "readLowWaterMark", /exceed/);
  rejects({ overflow: "ignore" }, "overflow", /drop-oldest/);
  rejects({ dispatchQueueLength: 0 }, "dispatchQueueLength", /integer > 0/);
  rejects({ workers: { module: "./h.ts", assign: "sticky" } }, "workers.assign", /engine option/);
  rejects({ workers: { module: "./h.ts", count: 0 } }, "workers.count", /1\.\.64/);
  rejects({ heartbeat: 5 }, "heartbeat", /object/);
  rejects({ heartbeat: {} }, "heartbeat.intervalMs", /required/);
  rejects({ heartbeat: { intervalMs: 0 } }, "heartbeat.intervalMs", /> 0/);
  rejects({ heartbeat: { intervalMs: 10, timeoutMs: -5 } }, "heartbeat.timeoutMs", /> 0/);
});
