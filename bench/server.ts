/**
 * `deno task bench server [--quick]`: what N idle WebSocket connections cost a server, and how long
 * a 64 B broadcast or topic publish takes to reach the last of them — wse against `npm:ws` on Node,
 * Bun (`Bun.serve`) and Deno (`Deno.upgradeWebSocket`), side by side in one run. The full run holds
 * 10,000 connections per server (about a minute); `--quick` holds 1,000 (half a minute) and writes
 * `server-quick.*` instead of `server.*` in `bench/results/`.
 *
 * Prerequisites (each is checked; a missing one stops the run with the command that fixes it):
 * `ulimit -n` of at least 20000; Go and gorilla/websocket from Debian
 * (`apt-get install golang-go golang-github-gorilla-websocket-dev`); `node` on PATH; Bun and the
 * `ws` package for Node in the repository's `.tools/`
 * (`npm install --prefix .tools bun@1.4.5 ws@8.23.0`; Bun's binary is inside its npm package).
 *
 * Each server is a small script in `bench/server_peers/`, started as its own process on a free
 * loopback port. The load generator is another process, built on none of our code: a Go program on
 * gorilla/websocket (`bench/loadgen/main.go`, built into a temp dir at start), driven over
 * stdin/stdout JSON lines; each server gets its own (ulimit -n is per process). All four servers
 * run at once: each in turn is warmed up (a few connections, one broadcast, dropped) and gets its N
 * idle connections, which it keeps; then the broadcasts and publishes go round robin, one server
 * after the other, the starting server rotating each round, so a burst of load from elsewhere on
 * this shared machine hits all of them alike. Measured per server:
 * - **idle KiB/conn**: the growth of the server process's VmRSS (`/proc/<pid>/status`, read from
 *   outside, once it has settled) from before the N connections to after they are all open,
 *   divided by N; **after 5 broadcasts**: the same growth measured after five broadcasts.
 * - **open ms**: the time the load generator takes to open all N (100 dials in flight).
 * - **broadcast ms**: from the load generator writing the trigger (a 64 B text message on one
 *   connection) to the LAST connection receiving the server's 64 B binary message; both times on
 *   the load generator's clock. Median of several broadcasts after one warm-up broadcast.
 * - **publish ms**: the same for a publish to a topic every connection joined.
 * The last stdout line holds the ratios wse ÷ other (below 1: wse is lighter or faster). The load
 * average goes into the results' notes: the machine is shared and busy neighbours skew every figure.
 *
 * The peer protocol each script implements: listen on 127.0.0.1, port 0, print `PORT <n>`; on the
 * text "join" add the connection to the topic and answer the text "joined"; on a text starting with
 * "broadcast" encode it once and send those bytes as one binary message to every open connection;
 * on one starting with "publish" the same to every topic member; exit when stdin closes.
 */
import { median, type Row, writeReport } from "./lib/report.ts";
import { type LineProcess, runCommand, spawnLines, withChildren } from "./lib/child.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PEERS = new URL("./server_peers/", import.meta.url).pathname;
const TOOLS = `${ROOT}.tools`;
const GOPATH = "/usr/share/gocode";
const GORILLA = `${GOPATH}/src/github.com/gorilla/websocket`;
const APT_FIX = "sudo apt-get install -y golang-go golang-github-gorilla-websocket-dev";
const NPM_FIX = `npm install --prefix ${TOOLS} bun@1.4.5 ws@8.23.0`;
const WANT_NOFILE = 20_000;

type Peer = "wse" | "ws" | "bun" | "deno";
const PEER_LIST: Peer[] = ["wse", "ws", "bun", "deno"];
const LABEL: Record<Peer, string> = {
  wse: "wse (createServer)",
  ws: "npm:ws on Node",
  bun: "Bun.serve",
  deno: "Deno.upgradeWebSocket",
};
const FANOUT: Record<Peer, string> = {
  wse: "broadcast: loop over server.connections, send(); topic: a Set, loop, send()",
  ws: "broadcast: loop over wss.clients, send(); topic: a Set, loop, send()",
  bun:
    "broadcast: loop over a Set of open sockets, ws.send(); topic: ws.subscribe + server.publish",
  deno: "broadcast: loop over a Set of open sockets, send(); topic: a Set, loop, send()",
};

interface Tools {
  tmp: string;
  loadgen: string;
  node: string;
  bun: string;
  wsDir: string;
  versions: Record<string, string>;
  /** `ulimit -n` (soft), inherited by every child. */
  nofile: number;
}

interface Config {
  n: number;
  warmup: number;
  concurrency: number;
  /** Fan-outs counted per kind (after one warm-up fan-out over all N). */
  fanouts: number;
  pauseMs: number;
}

interface Fanout {
  ms: number;
  first_ms: number;
  p50_ms: number;
}

interface PeerResult {
  rssBeforeKiB: number;
  rssOpenKiB: number;
  rssAfter5KiB: number;
  openMs: number;
  retries: number;
  joinMs: number;
  broadcasts: Fanout[];
  publishes: Fanout[];
  lost: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fatal(lines: string[]): never {
  const bar = "!".repeat(78);
  console.error(`\n${bar}\nserver benchmark cannot run:\n  ${lines.join("\n  ")}\n${bar}\n`);
  Deno.exit(1);
}

function isExecutable(path: string): boolean {
  try {
    const s = Deno.statSync(path);
    return s.isFile && ((s.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && isExecutable(`${dir}/${cmd}`)) return `${dir}/${cmd}`;
  }
  return undefined;
}

/** Runs `cmd --version`-style probes: the first line of stdout, or undefined when it fails. */
async function probe(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const r = await runCommand(cmd, args, { timeoutMs: 15_000 });
    return r.code === 0 ? r.stdout.trim().split("\n")[0] : undefined;
  } catch {
    return undefined;
  }
}

/** The soft limit on open files, from /proc/self/limits (children inherit it). */
function openFileLimit(): number {
  const limits = Deno.readTextFileSync("/proc/self/limits");
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return !m || m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/**
 * Finds every tool and builds the load generator into a new temp dir (`tools.tmp`, the caller
 * removes it); stops the run loudly if anything is missing.
 */
async function prepare(n: number): Promise<Tools> {
  const problems: string[] = [];
  const nofile = openFileLimit();
  if (nofile < n + 500) {
    problems.push(`ulimit -n is ${nofile}, too low for ${n} connections: run \`ulimit -n 20000\``);
  } else if (nofile < WANT_NOFILE) {
    console.error(`WARNING: ulimit -n is ${nofile} (below ${WANT_NOFILE}); enough for this run`);
  }
  // Every load generator dials from 127.0.0.1; one server port needs N distinct source ports.
  const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
    .split(/\s+/).map(Number);
  if (hi - lo + 1 < n + 1000) {
    problems.push(`only ${hi - lo + 1} ephemeral ports (net.ipv4.ip_local_port_range) for ${n}`);
  }
  const go = which("go");
  const goVersion = go ? await probe(go, ["version"]) : undefined;
  if (!goVersion) problems.push(`Go is missing: ${APT_FIX}`);
  let gorillaOk = false;
  try {
    gorillaOk = Deno.statSync(`${GORILLA}/conn.go`).isFile;
  } catch { /* missing */ }
  if (!gorillaOk) problems.push(`gorilla/websocket is missing from ${GORILLA}: ${APT_FIX}`);
  const node = which("node");
  const nodeVersion = node ? await probe(node, ["--version"]) : undefined;
  if (!nodeVersion) problems.push("node is not on PATH: apt-get install -y nodejs");
  const bun = [`${TOOLS}/node_modules/.bin/bun`, which("bun")].find((p) => p && isExecutable(p));
  const bunVersion = bun ? await probe(bun, ["--version"]) : undefined;
  if (!bunVersion) problems.push(`Bun is missing (looked in ${TOOLS} and PATH): ${NPM_FIX}`);
  const wsDir = [`${TOOLS}/node_modules/ws`, `${ROOT}node_modules/ws`].find((d) => {
    try {
      return Deno.statSync(`${d}/package.json`).isFile;
    } catch {
      return false;
    }
  });
  if (!wsDir) problems.push(`the ws package for Node is missing from ${TOOLS}: ${NPM_FIX}`);
  if (problems.length) fatal(problems);

  const tmp = await Deno.makeTempDir({ prefix: "wse-server-bench-" });
  const loadgen = `${tmp}/loadgen`;
  const build = await runCommand(
    go!,
    ["build", "-o", loadgen, `${ROOT}bench/loadgen/main.go`],
    { timeoutMs: 180_000, env: { GO111MODULE: "off", GOPATH }, cwd: ROOT },
  );
  if (build.code !== 0) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    fatal([
      `building the load generator failed${build.timedOut ? " (timed out)" : ""}:`,
      ...build.stderr.trim().split("\n"),
      `is gorilla/websocket installed? ${APT_FIX}`,
    ]);
  }
  const wsVersion = JSON.parse(Deno.readTextFileSync(`${wsDir}/package.json`)).version;
  return {
    tmp,
    loadgen,
    node: node!,
    bun: bun!,
    wsDir: wsDir!,
    versions: {
      deno: Deno.version.deno,
      node: nodeVersion!,
      bun: bunVersion!,
      ws: wsVersion,
      go: goVersion!,
    },
    nofile,
  };
}

function peerCommand(peer: Peer, tools: Tools): [string, string[]] {
  switch (peer) {
    case "wse":
      return [Deno.execPath(), ["run", "-A", `${PEERS}wse.ts`]];
    case "deno":
      return [Deno.execPath(), ["run", "-A", `${PEERS}deno.ts`]];
    case "ws":
      return [tools.node, [`${PEERS}ws_node.mjs`, tools.wsDir]];
    case "bun":
      return [tools.bun, [`${PEERS}bun.ts`]];
  }
}

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** VmRSS once it stopped moving: five readings 200 ms apart within 1 % (at most `maxMs`). */
async function settledRss(pid: number, maxMs = 8000): Promise<number> {
  const readings: number[] = [];
  const end = performance.now() + maxMs;
  while (true) {
    readings.push(rssKiB(pid));
    const last = readings.slice(-5);
    const hi = Math.max(...last);
    if (last.length === 5 && hi - Math.min(...last) <= Math.max(256, hi / 100)) break;
    if (performance.now() > end) break;
    await sleep(200);
  }
  return readings[readings.length - 1];
}

/** One command to the load generator; its answer, or an error (also when it does not answer). */
async function ask(
  gen: LineProcess,
  cmd: string,
  timeoutMs: number,
  extra: Record<string, number> = {},
): Promise<Record<string, number>> {
  await gen.write(JSON.stringify({ cmd, timeout_ms: timeoutMs, ...extra }));
  const answer = JSON.parse(await gen.line(timeoutMs + 10_000));
  if (!answer.ok) throw new Error(`loadgen ${cmd}: ${answer.error}`);
  return answer;
}

/** One server under test with its own load generator, and what has been measured on it. */
interface Live {
  peer: Peer;
  server: LineProcess;
  gen: LineProcess;
  result: PeerResult;
}

/** Kills the server, then stops its load generator (no 10,000-socket close storm on the server). */
async function stop(live: { server: LineProcess; gen?: LineProcess }): Promise<void> {
  await live.server.kill();
  await live.gen?.stop(5000);
}

/**
 * Starts one server and its load generator, warms the server up, then opens the N idle
 * connections: RSS before and after, and the time to open them. On failure stops both and throws.
 */
async function openServer(peer: Peer, tools: Tools, cfg: Config): Promise<Live> {
  const [cmd, args] = peerCommand(peer, tools);
  const server = spawnLines(cmd, args, { label: `${peer} server`, cwd: ROOT });
  let gen: LineProcess | undefined;
  try {
    const first = await server.line(30_000);
    const port = Number(/^PORT (\d+)$/.exec(first.trim())?.[1]);
    if (!port) throw new Error(`${peer} server said "${first}" instead of PORT <n>`);
    gen = spawnLines(
      tools.loadgen,
      ["-url", `ws://127.0.0.1:${port}/`, "-concurrency", String(cfg.concurrency)],
      { label: `${peer} loadgen` },
    );
    // Warm-up: the first handshakes and the first fan-out compile their code paths; not counted.
    await ask(gen, "open", 30_000, { n: cfg.warmup });
    await ask(gen, "broadcast", 10_000);
    await ask(gen, "close", 10_000);
    await sleep(300);
    const rssBeforeKiB = await settledRss(server.pid);
    const open = await ask(gen, "open", 180_000, { n: cfg.n });
    const rssOpenKiB = await settledRss(server.pid);
    console.error(
      `  ${peer}: ${cfg.n} open in ${Math.round(open.ms)} ms, ` +
        `+${((rssOpenKiB - rssBeforeKiB) / cfg.n).toFixed(1)} KiB/conn`,
    );
    const result: PeerResult = {
      rssBeforeKiB,
      rssOpenKiB,
      rssAfter5KiB: NaN,
      openMs: open.ms,
      retries: open.retries,
      joinMs: NaN,
      broadcasts: [],
      publishes: [],
      lost: 0,
    };
    return { peer, server, gen, result };
  } catch (e) {
    await stop({ server, gen });
    throw e;
  }
}

/**
 * Opens N connections to every server (one after the other, each then stays open and idle), then
 * runs the broadcasts and publishes interleaved: round r asks each server in turn, starting with a
 * different one each round, so a burst of load from elsewhere on the machine hits them all alike.
 * A server that fails is recorded in `failures`, stopped and left out of the rest.
 */
async function measureAll(
  tools: Tools,
  cfg: Config,
  failures: Record<string, string>,
): Promise<Map<Peer, PeerResult>> {
  const live: Live[] = [];
  const failed = (peer: Peer, e: unknown) => {
    failures[peer] = e instanceof Error ? e.message : String(e);
    console.error(`  ${peer}: FAILED: ${failures[peer]}`);
  };
  /** Runs `step` on every live server in turn, the order rotated by `rotate`. */
  const each = async (step: (l: Live) => Promise<void>, rotate = 0) => {
    const order = live.map((_, i) => live[(i + rotate) % live.length]);
    for (const l of order) {
      try {
        await step(l);
      } catch (e) {
        failed(l.peer, e);
        live.splice(live.indexOf(l), 1);
        await stop(l);
      }
    }
  };
  const fan = (kind: "broadcast" | "publish", round: number) =>
    each(async (l) => {
      const r = await ask(l.gen, kind, 60_000);
      l.result.lost = Math.max(l.result.lost, r.lost);
      // Round 0 is a warm-up over all N connections.
      if (round > 0) {
        l.result[kind === "broadcast" ? "broadcasts" : "publishes"].push({
          ms: r.ms,
          first_ms: r.first_ms,
          p50_ms: r.p50_ms,
        });
      }
      await sleep(cfg.pauseMs);
    }, round);
  try {
    for (const peer of PEER_LIST) {
      try {
        live.push(await openServer(peer, tools, cfg));
      } catch (e) {
        failed(peer, e);
      }
    }
    for (let round = 0; round <= cfg.fanouts; round++) {
      await fan("broadcast", round);
      if (round === 4) {
        await each(async (l) => {
          l.result.rssAfter5KiB = await settledRss(l.server.pid);
        });
      }
    }
    await each(async (l) => {
      l.result.joinMs = (await ask(l.gen, "join", 60_000)).ms;
    });
    for (let round = 0; round <= cfg.fanouts; round++) await fan("publish", round);
    for (const l of live) {
      console.error(
        `  ${l.peer}: broadcast ${median(l.result.broadcasts.map((b) => b.ms)).toFixed(1)} ms, ` +
          `publish ${median(l.result.publishes.map((b) => b.ms)).toFixed(1)} ms`,
      );
    }
    return new Map(live.map((l) => [l.peer, l.result]));
  } finally {
    for (const l of live) await l.server.kill();
    for (const l of live) await l.gen.stop(5000);
  }
}

function fanoutRow(group: string, peer: Peer, list: Fanout[], extra: Record<string, number> = {}) {
  const ms = list.map((f) => f.ms);
  return {
    group,
    name: LABEL[peer],
    rate: median(ms),
    unit: "ms",
    extra: {
      first_ms: median(list.map((f) => f.first_ms)),
      p50_conn_ms: median(list.map((f) => f.p50_ms)),
      min_ms: Math.min(...ms),
      max_ms: Math.max(...ms),
      samples: ms.length,
      ...extra,
    },
  } satisfies Row;
}

/** Entry point called by `bench/main.ts`. */
export async function main(flags: string[]): Promise<void> {
  const quick = flags.includes("--quick");
  const cfg: Config = quick
    ? { n: 1_000, warmup: 20, concurrency: 100, fanouts: 5, pauseMs: 100 }
    : { n: 10_000, warmup: 100, concurrency: 100, fanouts: 9, pauseMs: 200 };
  const loadavgStart = Deno.loadavg();
  const tools = await prepare(cfg.n);
  const failures: Record<string, string> = {};
  const removeTmp = () => {
    try {
      Deno.removeSync(tools.tmp, { recursive: true });
    } catch { /* already gone */ }
  };
  console.error(
    `server bench: ${cfg.n} connections per server; load average ${
      loadavgStart.map((x) => x.toFixed(2)).join(" ")
    }`,
  );
  const results = await withChildren(() => measureAll(tools, cfg, failures), removeTmp);

  const perConn = (r: PeerResult, kib: number) => (kib - r.rssBeforeKiB) / cfg.n;
  const N = cfg.n.toLocaleString("en-US");
  const rows: Row[] = [];
  for (const [peer, r] of results) {
    rows.push({
      group: `idle: server RSS growth per connection, ${N} connections (lower is better)`,
      name: LABEL[peer],
      rate: perConn(r, r.rssOpenKiB),
      unit: "KiB/conn",
      extra: { rss_before_mib: r.rssBeforeKiB / 1024, rss_open_mib: r.rssOpenKiB / 1024 },
    });
  }
  for (const [peer, r] of results) {
    rows.push({
      group: `after 5 broadcasts: server RSS growth per connection (lower is better)`,
      name: LABEL[peer],
      rate: perConn(r, r.rssAfter5KiB),
      unit: "KiB/conn",
      extra: { rss_mib: r.rssAfter5KiB / 1024 },
    });
  }
  for (const [peer, r] of results) {
    rows.push({
      group: `open ${N} connections, 100 dials in flight (ms, lower is better)`,
      name: LABEL[peer],
      rate: r.openMs,
      unit: "ms",
      extra: { retries: r.retries, conns_per_s: cfg.n / (r.openMs / 1000) },
    });
  }
  for (const [peer, r] of results) {
    rows.push(
      fanoutRow(`broadcast 64 B: trigger → last of ${N} received (ms, median)`, peer, r.broadcasts),
    );
  }
  for (const [peer, r] of results) {
    rows.push(fanoutRow(
      `publish 64 B to a topic all ${N} joined: trigger → last received (ms, median)`,
      peer,
      r.publishes,
      { join_ms: r.joinMs, lost: r.lost },
    ));
  }

  const value = (peer: Peer, pick: (r: PeerResult) => number) => {
    const r = results.get(peer);
    return r ? pick(r) : NaN;
  };
  const idle = (p: Peer) => value(p, (r) => perConn(r, r.rssOpenKiB));
  const bcast = (p: Peer) => value(p, (r) => median(r.broadcasts.map((f) => f.ms)));
  const pub = (p: Peer) => value(p, (r) => median(r.publishes.map((f) => f.ms)));

  // The side-by-side table; writeReport below then lists every row with its extras.
  const cell = (x: number, w: number) => (Number.isFinite(x) ? x.toFixed(1) : "failed").padStart(w);
  console.log(
    `\n${"server".padEnd(26)}${"idle KiB/conn".padStart(14)}${"after 5 bc".padStart(12)}` +
      `${"open ms".padStart(10)}${"broadcast ms".padStart(14)}${"publish ms".padStart(12)}` +
      `   (${N} connections, 64 B; lower is better)`,
  );
  for (const peer of PEER_LIST) {
    console.log(
      LABEL[peer].padEnd(26) + cell(idle(peer), 14) +
        cell(value(peer, (r) => perConn(r, r.rssAfter5KiB)), 12) +
        cell(value(peer, (r) => r.openMs), 10) + cell(bcast(peer), 14) + cell(pub(peer), 12),
    );
  }
  console.log(
    "ratios (last line) = wse ÷ other: below 1 means wse uses less memory / delivers sooner",
  );

  const ratios = {
    connections: cfg.n,
    idle_kib_per_conn: idle("wse"),
    broadcast_ms: bcast("wse"),
    broadcast_vs_ws: bcast("wse") / bcast("ws"),
    broadcast_vs_bun: bcast("wse") / bcast("bun"),
    idle_vs_ws: idle("wse") / idle("ws"),
    publish_ms: pub("wse"),
    publish_vs_ws: pub("wse") / pub("ws"),
    publish_vs_bun: pub("wse") / pub("bun"),
    broadcast_vs_deno: bcast("wse") / bcast("deno"),
    idle_vs_bun: idle("wse") / idle("bun"),
    idle_vs_deno: idle("wse") / idle("deno"),
  };
  await writeReport(
    "server",
    `WebSocket servers: ${N} idle connections, 64 B broadcast and publish (lower is better)`,
    rows,
    ratios,
    {
      quick,
      connections: cfg.n,
      warmup_connections: cfg.warmup,
      dials_in_flight: cfg.concurrency,
      fanouts_counted: cfg.fanouts,
      pause_between_fanouts_ms: cfg.pauseMs,
      method:
        "each server a separate process on a free loopback port, all four running at once, each with its own load generator process (Go + gorilla/websocket, bench/loadgen); fan-outs interleaved round robin across the servers, the first server rotating each round; idle = (VmRSS settled after N open − VmRSS settled before) ÷ N, read from /proc/<pid>/status; broadcast/publish = load generator's clock from writing a 64 B text trigger on one connection to the last connection receiving the 64 B binary message; median of the counted fan-outs after one warm-up; ratios = wse ÷ other",
      fanout: Object.fromEntries(PEER_LIST.map((p) => [LABEL[p], FANOUT[p]])),
      versions: tools.versions,
      ulimit_n: tools.nofile,
      failures,
      loadavg_start: loadavgStart,
      loadavg_end: Deno.loadavg(),
    },
  );
  if (Object.keys(failures).length) {
    console.error(`server bench: ${Object.keys(failures).join(", ")} failed (see notes.failures)`);
    Deno.exitCode = 1;
  }
}

if (import.meta.main) await main(Deno.args);
