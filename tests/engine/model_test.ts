/**
 * Model-based property test (fast-check's `fc.commands` / `fc.asyncModelRun`): random sequences
 * of start, stop, restart(), exit(), pause, resume, send while open, send while offline, server
 * kill and server restart, run against a real engine and a real echo server, and checked after
 * every command against a model of the engine's state and of its offline send buffer:
 *
 * - the engine settles in the state the model predicts (stopped, open or reconnecting), and every
 *   transition it reported is an edge of docs/lifecycle.md;
 * - the send buffer holds exactly the model's queue (reject-newest past 4 messages);
 * - the server received exactly the messages the model says were sent, once each, in order
 *   (queued ones right after the reconnect);
 * - `stop()` hands back exactly the model's queue.
 *
 * Reproduce a failure: `MODEL_SEED=<seed> MODEL_PATH=<path> deno test -A tests/engine/model_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type EngineState, WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineStartError } from "../../src/engine/errors.ts";
import { SendBufferFullError } from "../../src/engine/send_buffer.ts";
import type { SessionContext } from "../../src/engine/context.ts";
import type { PauseLease } from "../../src/dispatch/types.ts";
import type { WebSocketAdapter } from "../../src/transport/types.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import { type EchoServer, startEchoServer } from "./kit.ts";

const MAX_QUEUED = 4;
const SETTLE_MS = 5000;

/** Every transition docs/lifecycle.md allows. */
const EDGES = new Set([
  "stopped>starting",
  "starting>open",
  "starting>stopped",
  "starting>stopping",
  "open>closing",
  "open>stopping",
  "closing>reconnecting",
  "closing>stopped",
  "closing>stopping",
  "reconnecting>open",
  "reconnecting>stopped",
  "reconnecting>stopping",
  "stopping>stopped",
]);

interface Model {
  state: "stopped" | "open" | "reconnecting";
  serverUp: boolean;
  /** What the engine's send buffer must hold. */
  queue: string[];
  /** What the server must have received, in order. */
  delivered: string[];
  leaseHeld: boolean;
  next: number;
}

class Real {
  readonly server: EchoServer;
  readonly engine: WebSocketEngine;
  readonly transitions: string[] = [];
  ctx?: SessionContext;
  lease?: PauseLease;
  constructor(server: EchoServer, adapter: WebSocketAdapter) {
    this.server = server;
    this.engine = new WebSocketEngine({
      url: server.url,
      adapter,
      reconnect: { baseDelayMs: 2, maxDelayMs: 10 },
      openTimeoutMs: 2000,
      stopTimeoutMs: 1000,
      sendBuffer: { maxMessages: MAX_QUEUED },
      logger: false,
      client: {
        onOpen: (ctx) => void (this.ctx = ctx),
        onRestartError: () => {},
      },
    });
    this.engine.onStateChange((c) => this.transitions.push(`${c.previous}>${c.state}`));
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;

/** Commands run, by name (printed: a model test that runs nothing proves nothing). */
let ran: Record<string, number> = {};
const counted = (cmd: Cmd): Cmd => ({
  check: (m) => cmd.check(m),
  run: (m, r) => {
    ran[cmd.toString()] = (ran[cmd.toString()] ?? 0) + 1;
    return cmd.run(m, r);
  },
  toString: () => cmd.toString(),
});

async function until(predicate: () => boolean, what: string): Promise<void> {
  const end = performance.now() + SETTLE_MS;
  while (!predicate()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Waits for the state the model predicts, then compares everything. */
async function settle(m: Model, r: Real): Promise<void> {
  await r.engine.waitFor(m.state as EngineState, { timeoutMs: SETTLE_MS });
  if (m.state === "open") await until(() => r.engine.sendBuffer!.length === 0, "the flush");
  await until(
    () => r.server.received.length >= m.delivered.length,
    `${m.delivered.length} messages at the server (has ${r.server.received.length})`,
  );
  await Promise.resolve(); // state listeners run in microtasks
  assert.equal(r.engine.state, m.state);
  assert.deepEqual(r.engine.sendBuffer!.messages(), m.queue, "the send buffer");
  assert.deepEqual(r.server.received, m.delivered, "what the server received");
  for (const t of r.transitions) assert.ok(EDGES.has(t), `transition ${t} is not in the lifecycle`);
}

/** The queue goes out once the session opens: the model moves it to `delivered`. */
function flushed(m: Model): void {
  m.delivered.push(...m.queue);
  m.queue = [];
}

const start: Cmd = {
  check: (m) => m.state === "stopped",
  async run(m, r) {
    const result = await r.engine.start().then(() => "ok", (e) => e);
    if (m.serverUp) {
      assert.equal(result, "ok");
      m.state = "open";
      flushed(m);
    } else {
      assert.ok(result instanceof EngineStartError, String(result));
    }
    await settle(m, r);
  },
  toString: () => "start",
};

const stop: Cmd = {
  check: () => true,
  async run(m, r) {
    assert.deepEqual(await r.engine.stop(), m.queue, "stop() hands back the queue");
    m.queue = [];
    m.state = "stopped";
    m.leaseHeld = false;
    await settle(m, r);
  },
  toString: () => "stop",
};

const restart: Cmd = {
  check: (m) => m.state === "open",
  async run(m, r) {
    const before = r.engine.sessionId;
    r.ctx!.restart();
    await until(() => r.engine.state === "open" && r.engine.sessionId !== before, "a new session");
    m.leaseHeld = false;
    await settle(m, r);
  },
  toString: () => "ctx.restart()",
};

const exit: Cmd = {
  check: (m) => m.state !== "stopped",
  async run(m, r) {
    r.ctx!.exit(); // the last session's context: it ends the retry loop too
    await r.engine.done;
    m.state = "stopped"; // the queue stays: a later start() sends it, stop() hands it back
    m.leaseHeld = false;
    await settle(m, r);
  },
  toString: () => "ctx.exit()",
};

const pause: Cmd = {
  check: (m) => m.state === "open" && !m.leaseHeld,
  async run(m, r) {
    r.lease = await r.engine.pause();
    m.leaseHeld = true;
    await settle(m, r);
  },
  toString: () => "pause",
};

const resume: Cmd = {
  check: (m) => m.leaseHeld,
  async run(m, r) {
    r.lease!.resume();
    m.leaseHeld = false;
    await settle(m, r);
  },
  toString: () => "resume",
};

const sendOnline: Cmd = {
  check: (m) => m.state === "open",
  async run(m, r) {
    const data = `m${m.next++}`;
    assert.equal(await r.engine.send(data), "sent");
    m.delivered.push(data);
    await settle(m, r);
  },
  toString: () => "send (open)",
};

const sendOffline: Cmd = {
  check: (m) => m.state === "reconnecting",
  async run(m, r) {
    const data = `m${m.next++}`;
    const result = await r.engine.send(data).catch((e) => e);
    if (m.queue.length < MAX_QUEUED) {
      assert.equal(result, "buffered");
      m.queue.push(data);
    } else {
      assert.ok(result instanceof SendBufferFullError, String(result));
    }
    await settle(m, r);
  },
  toString: () => "send (offline)",
};

const kill: Cmd = {
  check: (m) => m.serverUp,
  async run(m, r) {
    await r.server.kill();
    m.serverUp = false;
    if (m.state === "open") {
      m.state = "reconnecting";
      m.leaseHeld = false;
    }
    await settle(m, r);
  },
  toString: () => "server kill",
};

const revive: Cmd = {
  check: (m) => !m.serverUp,
  async run(m, r) {
    await r.server.restart();
    m.serverUp = true;
    if (m.state === "reconnecting") {
      m.state = "open";
      flushed(m);
    }
    await settle(m, r);
  },
  toString: () => "server restart",
};

// Weighted towards what leads somewhere (a command whose check fails in the model is skipped).
const commands = fc.commands(
  [
    [start, 4],
    [stop, 1],
    [restart, 2],
    [exit, 1],
    [pause, 2],
    [resume, 2],
    [sendOnline, 3],
    [sendOffline, 6],
    [kill, 3],
    [revive, 3],
  ].map(([c, weight]) => ({ arbitrary: fc.constant(counted(c as Cmd)), weight: weight as number }))
    .map(({ arbitrary, weight }) => Array(weight).fill(arbitrary)).flat(),
  { maxCommands: 40, size: "max" },
);

const RUNS = Number(Deno.env.get("MODEL_RUNS") ?? 100);
const SEED = Deno.env.get("MODEL_SEED");
const PATH = Deno.env.get("MODEL_PATH");

for (
  const [name, adapter] of [
    ["whatwg", whatwgAdapter],
    ["ws", wsAdapter],
    ["wse", wseAdapter],
  ] as const
) {
  Deno.test({
    name: `[${name}] model: the engine's states and its send buffer follow the model`,
    sanitizeOps: true,
    sanitizeResources: true,
    async fn() {
      ran = {};
      await fc.assert(
        fc.asyncProperty(commands, async (cmds) => {
          const server = startEchoServer();
          const real = new Real(server, adapter());
          const model: Model = {
            state: "stopped",
            serverUp: true,
            queue: [],
            delivered: [],
            leaseHeld: false,
            next: 0,
          };
          try {
            await fc.asyncModelRun(() => ({ model, real }), cmds);
          } finally {
            await real.engine.stop();
            await server.close();
          }
        }),
        {
          numRuns: RUNS,
          endOnFailure: true,
          ...(SEED ? { seed: Number(SEED) } : {}),
          ...(PATH ? { path: PATH } : {}),
        },
      );
      console.log(`[${name}] commands run: ${JSON.stringify(ran)}`);
      assert.ok((ran["server restart"] ?? 0) > 0 && (ran["send (offline)"] ?? 0) > 0);
    },
  });
}
