// The cluster example end to end: two chat nodes on a throwaway redis-server, a line typed on
// node a reaches the tab on node b, and node a reports node b down once it is killed.
import assert from "node:assert/strict";
import { main } from "../../examples/cluster/main.ts";
import { redisServerInstalled } from "../../src/testing/redis_server.ts";

const haveRedis = await redisServerInstalled();
if (!haveRedis) {
  console.warn(
    "\n*** SKIPPED: the cluster example test needs redis-server (Debian package redis-server; " +
      "apt-get install redis-server). It is not on PATH. ***\n",
  );
}

Deno.test({
  name: "example cluster: a line typed on node a reaches node b's tab; node b killed, a says down",
  ignore: !haveRedis,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const lines: string[] = [];
    // Every wait inside main is bounded (15 s a step), and it stops all it started either way.
    await main({ print: (line) => lines.push(line) });
    const story = lines.join("\n");
    const at = (pattern: RegExp) => {
      const i = lines.findIndex((l) => pattern.test(l));
      assert.ok(i >= 0, `the story lacks ${pattern}:\n${story}`);
      return i;
    };
    const typed = at(/ada types "hello from node a" on node a$/);
    const arrived = at(/bob's tab \(node b\) shows "ada: hello from node a"$/);
    const killed = at(/node b killed \(SIGKILL\)/);
    const down = at(/node a: nodeDown b .+ after the kill$/);
    const stopped = at(/stopped: node a, node b, the tabs and redis-server$/);
    at(/\[node a\] nodeUp b$/);
    at(/\[node b\] nodeUp a$/);
    assert.ok(typed < arrived && arrived < killed && killed < down && down < stopped, story);
  },
});
