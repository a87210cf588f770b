import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineOptionError } from "../../src/engine/errors.ts";
import { type EngineOptions, resolveOptions } from "../../src/engine/options.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";

const base: EngineOptions = { url: "ws://127.0.0.1:9/", client: {} };

function rejects(patch: Record<string, unknown>, field: string, rule: RegExp) {
  assert.throws(
    () => new WebSocketEngine({ ...base, logger: false, ...patch } as EngineOptions),
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
  rejects({ client: { onmessage() {} } }, "client.onmessage", /did you mean `client.onMessage`/);
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

Deno.test("unknown keys are refused at every level, naming the closest valid one", () => {
  rejects({ reconect: { maxRetries: 3 } }, "reconect", /did you mean `reconnect`\?/);
  rejects({ URL: "ws://x/" }, "URL", /did you mean `url`/);
  rejects({ colour: 1 }, "colour", /is not an option \(options has: url, client/);
  rejects({ onMessage() {} }, "onMessage", /callbacks go in `client` .*`client.onMessage`/);
  rejects({ client: { onOpne() {} } }, "client.onOpne", /did you mean `client.onOpen`/);
  rejects({ client: { reconnect: false } }, "client.reconnect", /top-level `reconnect`/);
  rejects({ reconnect: { maxRetry: 3 } }, "reconnect.maxRetry", /`reconnect.maxRetries`/);
  rejects({ heartbeat: { interval: 10 } }, "heartbeat.interval", /`heartbeat.intervalMs`/);
  rejects({ workers: { module: "./h.ts", cout: 2 } }, "workers.cout", /`workers.count`/);
  rejects({ sendBuffer: { maxMessage: 2 } }, "sendBuffer.maxMessage", /`sendBuffer.maxMessages`/);
  // A client object may carry its own helpers and fields.
  const client = { onMessage() {}, state: 0, helper() {} };
  new WebSocketEngine({ ...base, client });
});

Deno.test("contradictory options are named errors", () => {
  rejects(
    { reconnect: { enabled: false, maxRetries: 3 } },
    "reconnect.maxRetries",
    /contradicts reconnect.enabled false/,
  );
  rejects({ reconnect: false, sendBuffer: true }, "sendBuffer", /contradicts reconnect: false/);
  rejects(
    { client: { onMessage() {} }, workers: { module: "./h.ts" } },
    "client.onMessage",
    /contradicts `workers`/,
  );
  rejects(
    { workers: { module: "./h.ts" }, dispatchQueueLength: 8 },
    "dispatchQueueLength",
    /contradicts `workers`/,
  );
  rejects(
    { adapter: whatwgAdapter(), heartbeat: { intervalMs: 1000 } },
    "heartbeat",
    /cannot \(use wseAdapter\(\) or wsAdapter\(\)\)/,
  );
});

Deno.test("sendBuffer and logger options", () => {
  const r = resolveOptions({ ...base, sendBuffer: true });
  assert.deepEqual(
    { ...r.sendBuffer },
    { maxMessages: 1024, maxBytes: 1 << 20, overflow: "reject-newest", onDrop: undefined },
  );
  assert.equal(resolveOptions(base).sendBuffer, undefined);
  assert.equal(resolveOptions({ ...base, logger: false }).logger, undefined);
  assert.equal(typeof resolveOptions(base).logger, "function");
  rejects({ sendBuffer: 1 }, "sendBuffer", /boolean or an object/);
  rejects({ sendBuffer: { maxBytes: 0 } }, "sendBuffer.maxBytes", /integer > 0/);
  rejects({ sendBuffer: { overflow: "drop-newest" } }, "sendBuffer.overflow", /reject-newest/);
  rejects({ sendBuffer: { onDrop: "x" } }, "sendBuffer.onDrop", /function/);
  rejects({ logger: console }, "logger", /function .* or false/);
});
