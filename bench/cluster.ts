/**
 * `deno task bench cluster [--quick]`: wse's cluster (two nodes on one Redis) against socket.io's
 * (`@socket.io/redis-adapter`), side by side in one run. The full run takes 2-3 minutes with
 * 2 × 5,000 broadcast connections per cluster; `--quick` (about 30 s) 2 × 1,000, and writes
 * `cluster-quick.*` instead of `cluster.*` in `bench/results/`.
 *
 * Prerequisites (each is checked; a missing one stops the run with the command that fixes it):
 * `redis-server` (Debian package redis-server; the benchmark starts its own on a free loopback
 * port and stops it at the end), `node` on PATH, `ulimit -n` of at least 10,500 (the lone node
 * and each load process hold 10,000 connections), and npm packages for Node in the repository's
 * `.tools/`: `npm install --prefix .tools socket.io@4.8.4 @socket.io/redis-adapter@8.3.0
 * redis@6.4.0 socket.io-client@4.8.4 ws@8.23.0`.
 *
 * Processes, all on this machine: one redis-server; wse nodes `a` and `b` (one Deno process each,
 * `createServer({ nodeId, cluster: { broker } })`, `bench/cluster_peers/wse_node.ts`) and a lone
 * node with the cluster on (its own broker prefix); socket.io nodes likewise on Node
 * (`socketio_node.mjs`, adapter keys kept apart); per configuration one load process
 * (`load.mjs`, Node, not our code: npm `ws` clients for wse, npm `socket.io-client` for socket.io,
 * which uses `ws` underneath). All hold their connections for the whole run; every step runs on
 * each configuration in turn, the order rotating per round, after one warm-up round that is not
 * counted; the figures are medians of the rounds. Numbers:
 * - **unicast_msgs_per_s**: the load process asks node a (one WebSocket message) to send N
 *   numbered 64 B messages (1,000 per event-loop turn) to a client connected to node b
 *   (`server.send(id)` / `io.to(socketId).emit`); N ÷ (trigger written → the client has all N).
 *   **unicast_vs_socketio** is wse ÷ socket.io (target ≥ 3).
 * - **p50/p99_ms_at_10k**: 10,000 triggers per second (a 1 ms timer writes the ones due) from
 *   the load process to node a, each a 64 B payload that node a relays to the client on node b;
 *   latency = the load process writing the trigger → the same process receiving the payload on
 *   the other connection (one clock). The first 500 ms are not counted (target p99 ≤ 5 ms).
 * - **broadcast_2nodes_ms**: a client of node a sends a 64 B trigger, node a broadcasts it
 *   (`server.broadcast` / `io.emit`); time until the last of 2 × 5,000 connections (half on each
 *   node) has it. **broadcast_2nodes_vs_1node**: the same ÷ the same broadcast with all 10,000 on
 *   the lone node (target ≤ 1.5).
 * The machine is shared: the load average goes into the results' notes, and every step records
 * the CPU that processes outside the benchmark used meanwhile (`others_cores`, from /proc); rounds
 * where that, hypervisor steal or a stall got in the way are counted as `disturbed_rounds`, and
 * `quiet_p99_ms` is the median p99 of the other rounds. Compare within a run. wse nodes run with
 * the default heartbeat (1 s); a node whose own process stalled judges nobody on that stall.
 *
 * The peer protocol both kinds of node implement (wse: text messages; socket.io: events):
 * `u <id> <payload>` sends the payload to that id; `burst <id> <n>` sends n numbered 64 B messages
 * to it; `broadcast…` broadcasts the trigger text itself; on wse, `who` answers the connection's
 * id (a socket.io client knows its own). Each node prints `PORT <n>` once it listens and sees the
 * cluster (wse: also `UP <node>` per peer).
 */
import { startRedisServer } from "../src/testing/redis_server.ts";
import { type LineProcess, runCommand, spawnLines, withChildren } from "./lib/child.ts";
import { interferenceMeter } from "./lib/interference.ts";
import { median, type Row, writeReport } from "./lib/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PEERS = new URL("./cluster_peers/", import.meta.url).pathname;
const TOOLS = `${ROOT}.tools`;
const MODULES = `${TOOLS}/node_modules`;
const PACKAGES = {
  "socket.io": "4.8.4",
  "@socket.io/redis-adapter": "8.3.0",
  "redis": "6.4.0",
  "socket.io-client": "4.8.4",
  "ws": "8.23.0",
};
const NPM_FIX = `npm install --prefix ${TOOLS} ${
  Object.entries(PACKAGES).map(([p, v]) => `${p}@${v}`).join(" ")
}`;

type System = "wse" | "socketio";
const SYSTEMS: System[] = ["wse", "socketio"];
const LABEL: Record<System, string> = {
  wse: "wse (createServer + RedisBroker)",
  socketio: "socket.io + redis-adapter",
};

/** The targets the project set for the cluster, checked (not redefined) here. */
const TARGETS = {
  unicast_vs_socketio: { min: 3 },
  p99_ms_at_10k: { max: 5 },
  broadcast_2nodes_vs_1node: { max: 1.5 },
} as const;

interface Config {
  /** Connections per node in the two-node configuration (twice that on the lone node). */
  perNode: number;
  burst: number;
  pacedRate: number;
  pacedMs: number;
  pacedWarmupMs: number;
  rounds: number;
  pauseMs: number;
}

/** One cluster under test: its nodes, its load process, what failed. */
interface Setup {
  name: string;
  system: System;
  nodes: number;
  servers: LineProcess[];
  load: LineProcess;
}

interface Measured {
  bursts: Record<string, number>[];
  paced: Record<string, number>[];
  broadcasts: Record<string, number>[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A round was quiet when, during it, processes outside the benchmark used less than a quarter
 * of a core, the hypervisor stole less than a tenth, and this process was never held up more
 * than 100 ms (see `lib/interference.ts`).
 */
function quiet(x: Record<string, number>): boolean {
  return x.others_cores < 0.25 && x.steal_cores < 0.1 && x.stall_ms < 100;
}

function fatal(lines: string[]): never {
  const bar = "!".repeat(78);
  console.error(`\n${bar}\ncluster benchmark cannot run:\n  ${lines.join("\n  ")}\n${bar}\n`);
  Deno.exit(1);
}

function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir && Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return undefined;
}

function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
  return !m || m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/** Checks every prerequisite; stops the run loudly, with the fixing commands, if any is missing. */
async function prepare(cfg: Config): Promise<{ node: string; versions: Record<string, string> }> {
  const problems: string[] = [];
  const nofile = openFileLimit();
  const need = 2 * cfg.perNode + 500;
  if (nofile < need) {
    problems.push(`ulimit -n is ${nofile}, below ${need}: run \`ulimit -n 20000\``);
  }
  const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
    .split(/\s+/).map(Number);
  if (hi - lo + 1 < 2 * cfg.perNode + 1000) {
    problems.push(`only ${hi - lo + 1} ephemeral ports (net.ipv4.ip_local_port_range)`);
  }
  const redis = which("redis-server");
  if (!redis) problems.push("redis-server is not on PATH: apt-get install -y redis-server");
  const node = which("node");
  const nodeVersion = node
    ? (await runCommand(node, ["--version"], { timeoutMs: 15_000 })).stdout.trim()
    : undefined;
  if (!nodeVersion) problems.push("node is not on PATH: apt-get install -y nodejs");
  const versions: Record<string, string> = { deno: Deno.version.deno, node: nodeVersion ?? "" };
  const missing: string[] = [];
  for (const pkg of Object.keys(PACKAGES)) {
    try {
      versions[pkg] = JSON.parse(Deno.readTextFileSync(`${MODULES}/${pkg}/package.json`)).version;
    } catch {
      missing.push(pkg);
    }
  }
  if (missing.length) problems.push(`${missing.join(", ")} missing from ${MODULES}: ${NPM_FIX}`);
  if (redis) {
    const v = await runCommand(redis, ["--version"], { timeoutMs: 15_000 });
    versions["redis-server"] = /v=(\S+)/.exec(v.stdout)?.[1] ?? v.stdout.trim();
  }
  if (problems.length) fatal(problems);
  return { node: node!, versions };
}

/** One command to a load process; its answer, or an error (also when it does not answer). */
async function ask(
  load: LineProcess,
  cmd: string,
  args: Record<string, unknown> = {},
  timeoutMs = 60_000,
): Promise<Record<string, number>> {
  await load.write(JSON.stringify({ cmd, timeout_ms: timeoutMs, ...args }));
  const answer = JSON.parse(await load.line(timeoutMs + 10_000));
  if (!answer.ok) throw new Error(`${cmd}: ${answer.error}`);
  return answer;
}

/** Reads a node's lines until it said `PORT <n>` and `UP <peer>` for every expected peer. */
async function nodeReady(p: LineProcess, label: string, peers: string[]): Promise<number> {
  let port = 0;
  const waiting = new Set(peers);
  while (!port || waiting.size) {
    const line = (await p.line(30_000)).trim();
    const m = /^PORT (\d+)$/.exec(line);
    if (m) port = Number(m[1]);
    else if (line.startsWith("UP ")) waiting.delete(line.slice(3));
    else throw new Error(`${label} said "${line}"`);
  }
  return port;
}

/** Starts the nodes of one cluster (`ids`), resolves with their ports once they see each other. */
async function startNodes(
  system: System,
  ids: string[],
  redisUrl: string,
  node: string,
  namespace: string,
): Promise<{ servers: LineProcess[]; ports: number[] }> {
  const servers = ids.map((id) =>
    system === "wse"
      ? spawnLines(
        Deno.execPath(),
        ["run", "-A", `${PEERS}wse_node.ts`, id, redisUrl, `${namespace}:`],
        { label: `wse node ${id}`, cwd: ROOT },
      )
      : spawnLines(
        node,
        [`${PEERS}socketio_node.mjs`, MODULES, redisUrl, namespace, String(ids.length)],
        { label: `socket.io node ${id}`, cwd: ROOT },
      )
  );
  const ports = await Promise.all(servers.map((s, i) =>
    nodeReady(
      s,
      `${system} node ${ids[i]}`,
      system === "wse" ? ids.filter((x) => x !== ids[i]) : [],
    )
  ));
  return { servers, ports };
}

function urlOf(system: System, port: number): string {
  return system === "wse" ? `ws://127.0.0.1:${port}/` : `http://127.0.0.1:${port}`;
}

/** Starts one configuration: its nodes, its load process, its connections. */
async function openSetup(
  system: System,
  nodes: 1 | 2,
  redisUrl: string,
  node: string,
  cfg: Config,
): Promise<Setup> {
  const name = `${system} ${nodes === 2 ? "2 nodes" : "1 node"}`;
  const ids = nodes === 2 ? ["a", "b"] : ["solo"];
  const { servers, ports } = await startNodes(system, ids, redisUrl, node, `bench${nodes}`);
  const load = spawnLines(node, [`${PEERS}load.mjs`, system, MODULES], { label: `${name} load` });
  const setup: Setup = { name, system, nodes, servers, load };
  try {
    const t0 = performance.now();
    // The first connection (the broadcast's trigger) is on node a.
    for (const port of ports) {
      await ask(load, "open", { url: urlOf(system, port), n: (cfg.perNode * 2) / nodes }, 180_000);
    }
    if (nodes === 2) {
      await ask(load, "unicast", {
        trigger: urlOf(system, ports[0]),
        target: urlOf(system, ports[1]),
      });
    }
    console.error(
      `  ${name}: ${cfg.perNode * 2} connections open in ${Math.round(performance.now() - t0)} ms`,
    );
    return setup;
  } catch (e) {
    await stopSetup(setup);
    throw e;
  }
}

/** Kills the nodes, then stops the load process (no close storm of 10,000 handshakes). */
async function stopSetup(s: Setup): Promise<void> {
  for (const server of s.servers) await server.kill();
  await s.load.stop(5000);
}

/** Runs every configuration, interleaved round by round; fills `failures` for what broke. */
async function measureAll(
  redisUrl: string,
  node: string,
  cfg: Config,
  failures: Record<string, string>,
  loadavg: number[],
): Promise<Map<string, Measured>> {
  const live: Setup[] = [];
  const results = new Map<string, Measured>();
  const meter = interferenceMeter();
  const failed = (name: string, e: unknown) => {
    failures[name] = e instanceof Error ? e.message : String(e);
    console.error(`  ${name}: FAILED: ${failures[name]}`);
  };
  /** Runs `step` on each live setup that `pick` selects, in an order rotated by `rotate`. */
  const each = async (
    pick: (s: Setup) => boolean,
    rotate: number,
    step: (s: Setup, m: Measured) => Promise<void>,
  ) => {
    const chosen = live.filter(pick);
    for (let k = 0; k < chosen.length; k++) {
      const s = chosen[(k + rotate) % chosen.length];
      meter.reset();
      try {
        await step(s, results.get(s.name)!);
      } catch (e) {
        failed(s.name, e);
        live.splice(live.indexOf(s), 1);
        await stopSetup(s);
      }
      await sleep(cfg.pauseMs);
    }
  };
  try {
    for (const system of SYSTEMS) {
      for (const nodes of [2, 1] as const) {
        try {
          const s = await openSetup(system, nodes, redisUrl, node, cfg);
          live.push(s);
          results.set(s.name, { bursts: [], paced: [], broadcasts: [] });
        } catch (e) {
          failed(`${system} ${nodes === 2 ? "2 nodes" : "1 node"}`, e);
        }
      }
    }
    // Round 0 warms every code path up and is not counted.
    for (let round = 0; round <= cfg.rounds; round++) {
      let worstOthers = 0;
      const keep = (list: Record<string, number>[], value: Record<string, number>) => {
        const seen = meter.take();
        worstOthers = Math.max(worstOthers, seen.others_cores);
        if (round > 0) list.push({ ...value, ...seen });
      };
      const t0 = performance.now();
      await each((s) => s.nodes === 2, round, async (s, m) => {
        keep(m.bursts, await ask(s.load, "burst", { n: cfg.burst }, 30_000));
      });
      await each((s) => s.nodes === 2, round, async (s, m) => {
        const r = await ask(s.load, "paced", {
          rate: cfg.pacedRate,
          ms: cfg.pacedMs,
          warmup_ms: cfg.pacedWarmupMs,
        }, cfg.pacedMs + 15_000);
        keep(m.paced, r);
      });
      await each(() => true, round, async (s, m) => {
        keep(m.broadcasts, await ask(s.load, "broadcast", {}, 30_000));
      });
      loadavg.push(Deno.loadavg()[0]);
      console.error(
        `  round ${round}${round ? "" : " (warm-up)"} done in ${
          Math.round(performance.now() - t0)
        } ms; load average ${loadavg[loadavg.length - 1].toFixed(2)}; others used up to ${
          worstOthers.toFixed(2)
        } cores in a step`,
      );
    }
    return results;
  } finally {
    meter.stop();
    for (const s of live) await stopSetup(s);
  }
}

const med = (list: Record<string, number>[] | undefined, key: string) =>
  list?.length ? median(list.map((x) => x[key])) : NaN;

/** The rounds of a step that others on the machine disturbed (see {@linkcode quiet}). */
const disturbed = (list: Record<string, number>[]) => list.filter((x) => !quiet(x)).length;

/** Entry point called by `bench/main.ts`. */
export async function main(flags: string[]): Promise<void> {
  const quick = flags.includes("--quick");
  const cfg: Config = quick
    ? {
      perNode: 1_000,
      burst: 10_000,
      pacedRate: 10_000,
      pacedMs: 1_500,
      pacedWarmupMs: 500,
      rounds: 3,
      pauseMs: 100,
    }
    : {
      perNode: 5_000,
      burst: 50_000,
      pacedRate: 10_000,
      pacedMs: 3_000,
      pacedWarmupMs: 500,
      rounds: 7,
      pauseMs: 200,
    };
  const started = performance.now();
  const loadavgStart = Deno.loadavg();
  const { node, versions } = await prepare(cfg);
  console.error(
    `cluster bench: 2 × ${cfg.perNode} broadcast connections per cluster; load average ${
      loadavgStart.map((x) => x.toFixed(2)).join(" ")
    }`,
  );
  const redis = await startRedisServer();
  const failures: Record<string, string> = {};
  const loadavgRounds: number[] = [];
  let results: Map<string, Measured>;
  try {
    results = await withChildren(() => measureAll(redis.url, node, cfg, failures, loadavgRounds));
  } finally {
    await redis.stop();
  }
  const get = (system: System, nodes: 1 | 2) =>
    results.get(`${system} ${nodes === 2 ? "2 nodes" : "1 node"}`);

  const N = (2 * cfg.perNode).toLocaleString("en-US");
  const rows: Row[] = [];
  for (const system of SYSTEMS) {
    const b = get(system, 2)?.bursts;
    if (!b?.length) continue;
    rows.push({
      group: `cross-node unicast 64 B, node a → a client on node b (msg/s, higher is better)`,
      name: LABEL[system],
      rate: med(b, "rate"),
      extra: {
        messages: cfg.burst,
        ms: med(b, "ms"),
        min_rate: Math.min(...b.map((x) => x.rate)),
        max_rate: Math.max(...b.map((x) => x.rate)),
        out_of_order: Math.max(...b.map((x) => x.disorder)),
        load_cpu_ms: med(b, "cpu_ms"),
        samples: b.length,
        disturbed_rounds: disturbed(b),
        others_cores: med(b, "others_cores"),
      },
    });
  }
  for (const system of SYSTEMS) {
    const p = get(system, 2)?.paced;
    if (!p?.length) continue;
    rows.push({
      group: `cross-node unicast at ${cfg.pacedRate.toLocaleString("en-US")} msg/s: ` +
        `p99 latency, trigger → client (ms, lower is better)`,
      name: LABEL[system],
      rate: med(p, "p99_ms"),
      unit: "ms",
      extra: {
        p50_ms: med(p, "p50_ms"),
        p90_ms: med(p, "p90_ms"),
        p999_ms: med(p, "p999_ms"),
        max_ms: med(p, "max_ms"),
        worst_round_p99_ms: Math.max(...p.map((x) => x.p99_ms)),
        achieved_rate: med(p, "achieved_rate"),
        samples_per_round: med(p, "samples"),
        rounds: p.length,
        disturbed_rounds: disturbed(p),
        others_cores: med(p, "others_cores"),
        quiet_p99_ms: med(p.filter(quiet), "p99_ms"),
        load_cpu_ms: med(p, "cpu_ms"),
      },
    });
  }
  for (const system of SYSTEMS) {
    for (const nodes of [2, 1] as const) {
      const b = get(system, nodes)?.broadcasts;
      if (!b?.length) continue;
      rows.push({
        group: `broadcast 64 B: trigger → last of ${N} received (ms, lower is better)`,
        name: `${LABEL[system]}, ${nodes === 2 ? `2 nodes × ${cfg.perNode}` : `1 node × ${N}`}`,
        rate: med(b, "ms"),
        unit: "ms",
        extra: {
          first_ms: med(b, "first_ms"),
          p50_conn_ms: med(b, "p50_ms"),
          min_ms: Math.min(...b.map((x) => x.ms)),
          max_ms: Math.max(...b.map((x) => x.ms)),
          load_cpu_ms: med(b, "cpu_ms"),
          samples: b.length,
          disturbed_rounds: disturbed(b),
          others_cores: med(b, "others_cores"),
        },
      });
    }
  }

  const unicast = (s: System) => med(get(s, 2)?.bursts, "rate");
  const p99 = (s: System) => med(get(s, 2)?.paced, "p99_ms");
  const p50 = (s: System) => med(get(s, 2)?.paced, "p50_ms");
  const bcast = (s: System, nodes: 1 | 2) => med(get(s, nodes)?.broadcasts, "ms");
  const ratios = {
    unicast_msgs_per_s: unicast("wse"),
    unicast_vs_socketio: unicast("wse") / unicast("socketio"),
    p99_ms_at_10k: p99("wse"),
    broadcast_2nodes_ms: bcast("wse", 2),
    broadcast_2nodes_vs_1node: bcast("wse", 2) / bcast("wse", 1),
    p50_ms_at_10k: p50("wse"),
    p99_ms_at_10k_quiet_rounds: med(get("wse", 2)?.paced.filter(quiet), "p99_ms"),
    broadcast_1node_ms: bcast("wse", 1),
    socketio_unicast_msgs_per_s: unicast("socketio"),
    socketio_p99_ms_at_10k: p99("socketio"),
    socketio_broadcast_2nodes_ms: bcast("socketio", 2),
    socketio_broadcast_2nodes_vs_1node: bcast("socketio", 2) / bcast("socketio", 1),
    broadcast_2nodes_vs_socketio: bcast("wse", 2) / bcast("socketio", 2),
    connections: 2 * cfg.perNode,
    seconds: (performance.now() - started) / 1000,
  };
  const targets = Object.fromEntries(
    Object.entries(TARGETS).map(([key, t]) => {
      const value = ratios[key as keyof typeof ratios];
      const met = "min" in t ? value >= t.min : value <= t.max;
      return [key, { ...t, value, met: Number.isFinite(value) && met }];
    }),
  );
  console.log("\ntargets:");
  for (const [key, t] of Object.entries(targets)) {
    const bound = "min" in t ? `>= ${t.min}` : `<= ${t.max}`;
    console.log(`  ${key} ${bound}: ${+t.value.toFixed(3)} ${t.met ? "met" : "NOT met"}`);
  }
  await writeReport(
    "cluster",
    `Two-node clusters on one Redis: wse vs socket.io (${N} broadcast connections)`,
    rows,
    ratios,
    {
      quick,
      ...cfg,
      targets,
      method:
        "one redis-server, every node and every load process a separate process on this machine, all connected for the whole run; four configurations (wse and socket.io, each as two nodes a+b and as one lone node with the cluster on), each with its own load process (Node: npm ws clients for wse, npm socket.io-client for socket.io); every step runs on each configuration in turn, order rotated per round, one warm-up round not counted; figures are medians of the rounds; unicast throughput = N ÷ (load process writes the burst trigger to node a → the client on node b has all N); latency = load process writes a trigger to node a → receives the relayed 64 B payload on its connection to node b (one clock), paced by a 1 ms timer, first 500 ms not counted; broadcast = trigger written on a connection of node a → last fan-out connection received, on the load process's clock; load_cpu_ms = CPU the load process used for the step",
      sender:
        "wse: server.send(id, text) / server.broadcast(text), fire-and-forget (send's promise is caught); socket.io: io.to(socketId).emit / io.emit; bursts issue 1,000 per event-loop turn on both",
      versions,
      failures,
      loadavg_start: loadavgStart,
      loadavg_rounds: loadavgRounds,
      loadavg_end: Deno.loadavg(),
      interference:
        "per step, from /proc: others_cores = CPU used by processes outside the benchmark's tree (other developers' work on this shared machine), in cores; steal_cores = CPU stolen by the hypervisor; stall_ms = how late a 20 ms timer of the idle benchmark process fired at worst. A round is quiet when others_cores < 0.25, steal_cores < 0.1 and stall_ms < 100; disturbed_rounds counts the others, quiet_p99_ms is the median p99 of the quiet rounds (NaN: none)",
    },
  );
  if (Object.keys(failures).length) {
    console.error(`cluster bench: ${Object.keys(failures).join(", ")} failed (see notes.failures)`);
    Deno.exitCode = 1;
  }
}

if (import.meta.main) await main(Deno.args);
