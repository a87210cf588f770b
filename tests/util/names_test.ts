import assert from "node:assert/strict";
import { closestName } from "../../src/util/names.ts";

const options = ["url", "client", "reconnect", "heartbeat", "sendBuffer", "stopTimeoutMs"];

Deno.test("closestName finds typos, swaps and case slips, and nothing for unrelated names", () => {
  assert.equal(closestName("reconect", options), "reconnect");
  assert.equal(closestName("reocnnect", options), "reconnect");
  assert.equal(closestName("heartBeat", options), "heartbeat");
  assert.equal(closestName("URL", options), "url");
  assert.equal(closestName("sendbufer", options), "sendBuffer");
  assert.equal(closestName("stopTimeout", options), "stopTimeoutMs");
  assert.equal(closestName("color", options), undefined);
  assert.equal(closestName("x", []), undefined);
});
