/**
 * Load process of the cluster benchmark (`bench/cluster.ts`), on Node and none of our code:
 * npm `ws` clients for a wse cluster, npm `socket.io-client` (which runs on `ws` in Node) for a
 * socket.io cluster, so both are driven by the same WebSocket client underneath. Every time is
 * taken here, on this process's clock (`performance.now()`): it writes the trigger and it receives.
 *
 * Usage: `node load.mjs <wse|socketio> <node_modules dir>`, then one JSON command per stdin line,
 * each answered by one JSON line: `{"ok":true,...}` or `{"ok":false,"error":"..."}`. Each answer
 * carries `cpu_ms`, the CPU this process used for the command (to tell when it was the limit).
 *
 *   {"cmd":"open","url":U,"n":N}         open N more fan-out connections (100 dials in flight)
 *   {"cmd":"unicast","trigger":U,"target":V}
 *                                         open the trigger connection (to U) and the target (to V)
 *   {"cmd":"burst","n":N}                the trigger asks its node to send N numbered 64 B
 *                                         messages to the target; done when it has all N
 *   {"cmd":"paced","rate":R,"ms":T,"warmup_ms":W}
 *                                         for T ms, R triggers per second, each a 64 B payload the
 *                                         trigger's node relays to the target; latency = write of
 *                                         the trigger → arrival at the target, for those sent after W
 *   {"cmd":"broadcast"}                  the first fan-out connection sends a 64 B trigger; its
 *                                         node broadcasts it; done when every fan-out connection has it
 * Every command may carry "timeout_ms" (default 60000).
 */
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import process from "node:process";

const [kind, modules] = process.argv.slice(2);
const require = createRequire(`${modules}/`);
const WebSocket = kind === "wse" ? require("ws") : undefined;
const sio = kind === "socketio" ? require("socket.io-client") : undefined;

/**
 * A client connection: `send(event, ...args)` (for wse the args joined by spaces after the event
 * name, as one text message) and the handlers the commands set.
 */
function open(url) {
  return new Promise((resolve, reject) => {
    if (WebSocket) {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const c = {
        onBroadcast: undefined,
        onUnicast: undefined,
        send: (text) => ws.send(text),
        close: () => ws.terminate(),
      };
      ws.on("open", () => resolve(c));
      ws.on("error", reject);
      ws.on("message", (data) => {
        // a broadcast begins with "b", a unicast payload with a digit, an answer with a letter
        if (data[0] === 0x62) c.onBroadcast?.(data);
        else if (data[0] <= 0x39) c.onUnicast?.(data.toString("latin1"));
        else c.onAnswer?.(data.toString());
      });
      return;
    }
    const socket = sio.io(url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 30_000,
    });
    const c = {
      onBroadcast: undefined,
      onUnicast: undefined,
      socket,
      close: () => socket.disconnect(),
    };
    socket.on("b", (p) => c.onBroadcast?.(p));
    socket.on("m", (p) => c.onUnicast?.(p));
    socket.once("connect", () => resolve(c));
    socket.once("connect_error", reject);
  });
}

/** Opens with a few retries (a full accept backlog refuses or resets a dial). */
async function dial(url) {
  for (let attempt = 0;; attempt++) {
    try {
      return await open(url);
    } catch (e) {
      if (attempt >= 3) throw e;
      await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    }
  }
}

const fanout = [];
let trigger;
let target;
let targetId;
let round = 0;

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function sorted(values) {
  return Float64Array.from(values).sort();
}

function pct(s, p) {
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const commands = {
  async open({ url, n, concurrency = 100 }) {
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        fanout.push(await dial(url));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
    return { ms: performance.now() - t0, open: fanout.length };
  },

  async unicast({ trigger: triggerUrl, target: targetUrl }) {
    trigger = await dial(triggerUrl);
    target = await dial(targetUrl);
    if (WebSocket) {
      targetId = await new Promise((resolve) => {
        target.onAnswer = (text) => resolve(text.slice(3)); // "id <id>"
        target.send("who");
      });
    } else {
      targetId = target.socket.id;
    }
    return { id: targetId };
  },

  async burst({ n }) {
    let received = 0;
    let disorder = 0;
    let last = -1;
    const done = new Promise((resolve) => {
      target.onUnicast = (text) => {
        const seq = parseInt(text, 10);
        if (seq !== last + 1) disorder++;
        last = seq;
        if (++received === n) resolve();
      };
    });
    const t0 = performance.now();
    if (WebSocket) trigger.send(`burst ${targetId} ${n}`);
    else trigger.socket.emit("burst", targetId, n);
    await done;
    const ms = performance.now() - t0;
    target.onUnicast = undefined;
    return { ms, rate: n / (ms / 1000), received, disorder };
  },

  async paced({ rate, ms, warmup_ms: warmupMs }) {
    const total = Math.round((rate * ms) / 1000);
    const sentAt = new Float64Array(total);
    const latency = new Float64Array(total).fill(NaN);
    let received = 0;
    let allIn;
    const arrived = new Promise((resolve) => (allIn = resolve));
    target.onUnicast = (text) => {
      const now = performance.now();
      const seq = parseInt(text, 10);
      latency[seq] = now - sentAt[seq];
      if (++received === total) allIn();
    };
    const send = WebSocket
      ? (seq) => trigger.send(`u ${targetId} ${String(seq).padEnd(64)}`)
      : (seq) => trigger.socket.emit("u", targetId, String(seq).padEnd(64));
    // A 1 ms timer; each tick writes every trigger due by then (about rate/1000 of them).
    const start = performance.now();
    let sent = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
        while (sent < due) {
          sentAt[sent] = performance.now();
          send(sent++);
        }
        if (sent < total) setTimeout(tick, 1);
        else resolve();
      };
      tick();
    });
    const sendMs = performance.now() - start;
    try {
      await within(arrived, 10_000, `paced: ${received} of ${total} arrived`);
    } finally {
      target.onUnicast = undefined;
    }
    const counted = [];
    for (let i = 0; i < total; i++) if (sentAt[i] - start >= warmupMs) counted.push(latency[i]);
    const s = sorted(counted);
    return {
      sent: total,
      received,
      achieved_rate: total / (sendMs / 1000),
      samples: s.length,
      p50_ms: pct(s, 50),
      p90_ms: pct(s, 90),
      p99_ms: pct(s, 99),
      p999_ms: pct(s, 99.9),
      max_ms: s[s.length - 1],
    };
  },

  async broadcast() {
    const id = ++round;
    const text = `broadcast ${id}`.padEnd(64);
    const want = WebSocket ? Buffer.from(text) : text;
    const at = new Float64Array(fanout.length);
    let left = fanout.length;
    let allIn;
    const done = new Promise((resolve) => (allIn = resolve));
    fanout.forEach((c, i) => {
      let seen = false;
      c.onBroadcast = WebSocket
        ? (data) => {
          if (seen || !want.equals(data)) return;
          seen = true;
          at[i] = performance.now();
          if (--left === 0) allIn();
        }
        : (payload) => {
          if (seen || payload !== want) return;
          seen = true;
          at[i] = performance.now();
          if (--left === 0) allIn();
        };
    });
    const t0 = performance.now();
    if (WebSocket) fanout[0].send(text);
    else fanout[0].socket.emit("broadcast", text);
    try {
      await within(done, 30_000, `broadcast: ${fanout.length - left} of ${fanout.length} got it`);
    } finally {
      for (const c of fanout) c.onBroadcast = undefined;
    }
    const s = sorted(Array.from(at, (t) => t - t0));
    return { ms: s[s.length - 1], first_ms: s[0], p50_ms: pct(s, 50), received: s.length };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  const cpu0 = process.cpuUsage();
  try {
    const cmd = JSON.parse(line);
    const run = commands[cmd.cmd];
    if (!run) throw new Error(`unknown command ${cmd.cmd}`);
    answer = { ok: true, ...(await within(run(cmd), cmd.timeout_ms ?? 60_000, cmd.cmd)) };
  } catch (e) {
    answer = { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  const cpu = process.cpuUsage(cpu0);
  answer.cpu_ms = (cpu.user + cpu.system) / 1000;
  process.stdout.write(JSON.stringify(answer) + "\n");
}
// stdin closed: the benchmark is done (its servers are gone or going; no close handshakes).
process.exit(0);
