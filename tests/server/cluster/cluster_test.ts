// The cluster with real processes and a real Redis: node "a" runs in this process (so the test
// calls its API), nodes "b" and "c" are child processes (so one can be SIGKILLed).
import assert from "node:assert/strict";
import { createServer, type Server } from "../../../src/server/server.ts";
import { RedisBroker } from "../../../src/server/cluster/redis_broker.ts";
import { NodeUnavailableError } from "../../../src/server/errors.ts";
import {
  type RedisServer,
  redisServerInstalled,
  startRedisServer,
} from "../../../src/testing/redis_server.ts";
import { type Client, client, until } from "../helpers.ts";
import { clusterNodeOptions } from "../fixtures/cluster_node_options.ts";

const HB = 200;
const installed = await redisServerInstalled();
if (!installed) {
  console.warn("SKIPPED: the cluster tests need redis-server (apt-get install redis-server)");
}
const SAN = { sanitizeOps: true, sanitizeResources: true, ignore: !installed } as const;

interface NodeProcess {
  id: string;
  port: number;
  url: string;
  events: { event: string; node: string }[];
  kill(signal: Deno.Signal): Promise<void>;
  /** Sends a signal and returns (SIGSTOP, SIGCONT). */
  signal(signal: Deno.Signal): void;
  stop(): Promise<void>;
}

/** Starts a node in its own process and waits until it is ready. */
async function startNode(redisUrl: string, id: string): Promise<NodeProcess> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../fixtures/cluster_node.ts", import.meta.url).pathname,
      redisUrl,
      id,
      String(HB),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const events: { event: string; node: string }[] = [];
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let port = 0;
  const reading = (async () => {
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      buffered += value;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const o = JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        if (o.port) port = o.port;
        else events.push(o);
      }
    }
  })();
  await until(() => port > 0, `node ${id} ready`, 20_000);
  let ended = false;
  const end = async () => {
    if (ended) return;
    ended = true;
    await reading.catch(() => {});
    await proc.status;
  };
  return {
    id,
    port,
    url: `ws://127.0.0.1:${port}/`,
    events,
    async kill(signal) {
      try {
        proc.kill(signal);
      } catch { /* already gone */ }
      await proc.stdin.close().catch(() => {});
      await end();
    },
    signal(signal) {
      proc.kill(signal);
    },
    async stop() {
      await proc.stdin.close().catch(() => {}); // it leaves the cluster cleanly
      await end();
    },
  };
}

/** Node "a", in this process. */
async function startLocal(
  redisUrl: string,
): Promise<{ server: Server; broker: RedisBroker; stop(): Promise<void> }> {
  const broker = await RedisBroker.connect({ url: redisUrl, reconnectMaxDelayMs: 200 });
  const server = createServer(clusterNodeOptions("a", broker, HB));
  await server.listen();
  await server.ready;
  return {
    server,
    broker,
    async stop() {
      await server.stop();
      await broker.close();
    },
  };
}

async function idOf(c: Client): Promise<string> {
  c.ws.send("who");
  return (await c.next()).slice(3);
}

Deno.test({
  name: "cluster: send, broadcast, publish, count, inspect and close across three nodes",
  ...SAN,
  fn: async () => {
    const redis = await startRedisServer();
    const a = await startLocal(redis.url);
    const b = await startNode(redis.url, "b");
    const c = await startNode(redis.url, "c");
    const clients: Client[] = [];
    try {
      await until(() => a.server.nodes.length === 2, "a sees b and c");
      const { port: aPort } = await a.server.listen(); // a second listener on a: fine
      const ca = await client(`ws://127.0.0.1:${aPort}/`);
      const cb = await client(b.url);
      const cc = await client(c.url);
      clients.push(ca, cb, cc);
      const [ida, idb, idc] = [await idOf(ca), await idOf(cb), await idOf(cc)];
      assert.match(idb, /^b\./);
      // a unicast from a reaches a client held by b
      await a.server.send(idb, "hello b");
      assert.equal(await cb.next(), "hello b");
      // sends made in one turn travel as one broker message: every one arrives, in order, and
      // each resolves; an unknown id among them rejects alone
      const burst = Array.from({ length: 300 }, (_, i) => a.server.send(idb, `m${i}`));
      const stray = a.server.send("b.BBBBBBBBBBBBBBBB", "lost").catch((e) => e);
      await Promise.all(burst);
      assert.equal((await stray).name, "UnknownConnectionError");
      for (let i = 0; i < 300; i++) assert.equal(await cb.next(), `m${i}`);
      // an unknown id on a live node rejects, naming the id
      const err = await a.server.send("b.AAAAAAAAAAAAAAAA", "x").catch((e) => e);
      assert.equal(err.name, "UnknownConnectionError");
      assert.match(err.message, /b\.AAAAAAAAAAAAAAAA/);
      // a broadcast reaches every node's clients
      assert.equal(a.server.broadcast("to all"), 1, "one local client on a");
      assert.equal(await ca.next(), "to all");
      assert.equal(await cb.next(), "to all");
      assert.equal(await cc.next(), "to all");
      // a topic publish reaches the subscribers on every node
      for (const x of [ca, cb, cc]) {
        x.ws.send("sub room");
        assert.equal(await x.next(), "subscribed room");
      }
      a.server.publish("room", "news");
      for (const x of [ca, cb, cc]) assert.equal(await x.next(), "news");
      // count across nodes
      const count = await a.server.countAll();
      assert.equal(count.total, 3);
      assert.deepEqual(count.byNode, { a: 1, b: 1, c: 1 });
      assert.deepEqual(count.missing, []);
      // inspect and close a remote id
      const info = await a.server.inspect(idb);
      assert.equal(info.id, idb);
      assert.deepEqual(info.topics, ["room"]);
      await a.server.close(idc, 4000, "bye from a");
      const closed = await cc.closed;
      assert.equal(closed.code, 4000);
      assert.equal(closed.reason, "bye from a");
      // subscribe a remote id from a, then publish only to it
      await a.server.subscribe(idb, "private");
      assert.equal(a.server.publish("private", "just b"), 0);
      assert.equal(await cb.next(), "just b");
      void ida;
    } finally {
      for (const x of clients) if (x.ws.readyState === WebSocket.OPEN) await x.close();
      await b.stop();
      await c.stop();
      await a.stop();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "cluster: a SIGKILLed node is down within two heartbeats; its ids reject, the rest serves",
  ...SAN,
  fn: async () => {
    const redis = await startRedisServer();
    const a = await startLocal(redis.url);
    const b = await startNode(redis.url, "b");
    const c = await startNode(redis.url, "c");
    const clients: Client[] = [];
    try {
      await until(() => a.server.nodes.length === 2, "a sees b and c");
      const cb = await client(b.url);
      const cc = await client(c.url);
      clients.push(cb, cc);
      const [idb, idc] = [await idOf(cb), await idOf(cc)];
      const downs: { node: string; at: number }[] = [];
      a.server.on("nodeDown", (e) => downs.push({ node: e.node, at: performance.now() }));
      const killedAt = performance.now();
      await c.kill("SIGKILL");
      await until(() => downs.length === 1, "a's nodeDown for c", 10 * HB + 5000);
      assert.equal(downs[0].node, "c");
      console.log(
        `  nodeDown after ${(downs[0].at - killedAt).toFixed(0)} ms (heartbeat ${HB} ms)`,
      );
      await assert.rejects(a.server.send(idc, "x"), NodeUnavailableError);
      await assert.rejects(a.server.inspect(idc), NodeUnavailableError);
      await until(() => b.events.some((e) => e.event === "nodeDown" && e.node === "c"), "b too");
      // the others keep serving, and c's connection left every count
      await a.server.send(idb, "still here");
      assert.equal(await cb.next(), "still here");
      const count = await a.server.countAll();
      assert.deepEqual(count.byNode, { a: 0, b: 1 });
      assert.equal(count.total, 1);
      await cc.closed; // its server is gone
    } finally {
      for (const x of clients) if (x.ws.readyState === WebSocket.OPEN) await x.close();
      await b.stop();
      await a.stop();
      await redis.stop();
    }
  },
});

Deno.test({
  name:
    "cluster: a node that stalls is down for the others, judges nobody on its own stall, rejoins",
  ...SAN,
  fn: async () => {
    const redis = await startRedisServer();
    const a = await startLocal(redis.url);
    const b = await startNode(redis.url, "b");
    try {
      await until(() => a.server.nodes.length === 1, "a sees b");
      const seen: string[] = [];
      a.server.on("nodeDown", (e) => seen.push(`down ${e.node}`));
      a.server.on("nodeUp", (e) => seen.push(`up ${e.node}`));
      b.signal("SIGSTOP");
      await until(() => seen.includes("down b"), "a's nodeDown for the stopped b", 10 * HB + 5000);
      await new Promise((r) => setTimeout(r, 3 * HB)); // well past b's own deadline for a
      b.signal("SIGCONT");
      await until(() => seen.includes("up b"), "b back for a", 10 * HB + 5000);
      // b's timer fired late and a's heartbeats were queued in its socket: b must not call a down
      await new Promise((r) => setTimeout(r, 4 * HB));
      assert.deepEqual(b.events.filter((e) => e.event === "nodeDown"), []);
      assert.deepEqual(seen, ["down b", "up b"]);
    } finally {
      b.signal("SIGCONT");
      await b.stop();
      await a.stop();
      await redis.stop();
    }
  },
});

/** Parses a history event sent to a client. */
function event(text: string): { offset: number; epoch: string; data?: string; recovered?: false } {
  return JSON.parse(text);
}

Deno.test({
  name: "cluster: Redis restarted mid-stream — losses reported, no duplicate, history fills gaps",
  ...SAN,
  fn: async () => {
    const redis: RedisServer = await startRedisServer({ persistence: true });
    const a = await startLocal(redis.url);
    const b = await startNode(redis.url, "b");
    const clients: Client[] = [];
    try {
      await until(() => a.server.nodes.length === 1, "a sees b");
      const onB = await client(b.url);
      const onA = await client(`ws://127.0.0.1:${(await a.server.listen()).port}/`);
      clients.push(onB, onA);
      const idb = await idOf(onB);
      onB.ws.send("sub h:feed"); // a topic with history
      assert.equal(await onB.next(), "subscribed h:feed");
      const failedPublish = new Set<string>();
      a.server.on("error", (e) => {
        if (e.op === "publish h:feed") failedPublish.add(String(e.data));
      });
      // Two streams, sequence-numbered: a unicast to b's client, and a topic with history.
      const N = 300;
      const sendResults: Promise<boolean>[] = [];
      for (let i = 1; i <= N; i++) {
        sendResults.push(a.server.send(idb, `s${i}`).then(() => true, () => false));
        a.server.publish("h:feed", `p${i}`);
        if (i === N / 2) await redis.restart(); // mid-stream
        await new Promise((r) => setTimeout(r, 3));
      }
      const sent = await Promise.all(sendResults);
      // Every confirmed send arrives; a rejected one may have been delivered anyway (its publish
      // or its answer was in flight when Redis went away) but is never a silent gap.
      const confirmed = sent.map((ok, i) => ok ? i + 1 : 0).filter(Boolean);
      const received = () =>
        onB.received.filter((m) => /^s\d+$/.test(m)).map((m) => Number(m.slice(1)));
      await until(
        () => confirmed.every((n) => received().includes(n)),
        "every confirmed send",
        20_000,
      );
      const got0 = received();
      for (let i = 1; i < got0.length; i++) {
        assert.ok(got0[i] > got0[i - 1], `in order, no duplicate: ${got0[i - 1]} then ${got0[i]}`);
      }
      for (let n = 1; n <= N; n++) {
        if (!got0.includes(n)) assert.equal(sent[n - 1], false, `s${n} missing but not reported`);
      }
      const rejectedSends = sent.filter((ok) => !ok).length;
      const feed = () =>
        onB.received.filter((m) => m.startsWith("{")).map(event).filter((e) => e.data);
      const published = Array.from({ length: N }, (_, i) => `p${i + 1}`).filter((p) =>
        !failedPublish.has(p)
      );
      await until(() => feed().length >= published.length, "the topic stream", 20_000);
      const got = feed();
      assert.deepEqual(got.map((e) => e.data), published, "every accepted publish, once, in order");
      const offsets = got.map((e) => e.offset);
      assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y), "offsets increase");
      assert.equal(new Set(got.map((e) => e.epoch)).size, 1, "one epoch: Redis kept its data");
      console.log(
        `  ${rejectedSends} sends and ${failedPublish.size} publishes rejected while Redis was away; ` +
          `${got0.length} sends and ${got.length} publishes delivered, none twice`,
      );
      // A client that went away recovers from another node with its last position.
      const last = got[got.length - 1];
      await onB.close();
      a.server.publish("h:feed", "missed 1");
      a.server.publish("h:feed", "missed 2");
      await new Promise((r) => setTimeout(r, 100));
      onA.ws.send(`subsince h:feed ${last.offset} ${last.epoch}`);
      const recovered = [event(await onA.next()), event(await onA.next())];
      assert.deepEqual(recovered.map((e) => e.data), ["missed 1", "missed 2"]);
      const answer = await onA.next();
      assert.match(answer, /^recovery \{"recovered":true,"missed":2/);
      a.server.publish("h:feed", "live");
      assert.equal(event(await onA.next()).data, "live");
      // An old epoch cannot be recovered, and the client is told.
      onA.ws.send("subsince h:feed 5 not-an-epoch");
      const told = event(await onA.next());
      assert.equal(told.recovered, false);
      assert.match(await onA.next(), /^recovery \{"recovered":false,"reason":"epoch"/);
    } finally {
      for (const x of clients) if (x.ws.readyState === WebSocket.OPEN) await x.close();
      await b.stop();
      await a.stop();
      await redis.stop();
    }
  },
});
