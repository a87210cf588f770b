/**
 * Chaos / model-based property test: the client engine cannot wedge.
 *
 * fast-check generates sequences of operations (start, stop, server kill / restart / freeze /
 * thaw / closeAll / HTTP 403; restart(), exit(), pause() held or never resumed, throws, slow
 * handlers, stop() / start() a few microtask turns later, armed in a random callback; send,
 * request with short timeouts), some issued without awaiting the previous one, with background
 * traffic, and runs them against the fault-injecting echo server. Observed adapter and
 * dispatcher wrappers and a model check the documented lifecycle (docs/lifecycle.md) as it goes:
 * stop() resolves within its budget and leaves the engine stopped with every connection closed
 * or dropped; start() fails only with EngineStartError, or EngineStateError when not stopped; the
 * state reads "stopping" while a stop runs; no callback starts once the engine stopped; session
 * ids are unique, `restarting` is false only for start()'s open, a refused open gets no other
 * callback, every activated session gets exactly one onClose after its detach, onMessage only
 * runs for messages taken in for its session and never for a consumed response; retry counts go
 * 0, 1, 2… per cycle; the engine stops by itself only for exit(), a give-up or reconnect off.
 * Then the server is healed and the engine must come back (a message is dispatched, a request
 * answered), stop within its budget, and start again.
 *
 * The deterministic regressions below are the engine bugs this test led to.
 *
 * Reproduce a failure: `CHAOS_SEED=<seed> [CHAOS_PATH=<path>] deno test -A tests/engine/chaos_test.ts`
 * (both printed on failure). `CHAOS_RUNS=<n>` changes the number of runs per adapter.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { EngineStartError, EngineStateError } from "../../src/engine/errors.ts";
import { InlineDispatcher } from "../../src/dispatch/inline.ts";
import type { DispatchConnection, Dispatcher, PauseLease } from "../../src/dispatch/types.ts";
import { context } from "../../src/engine/context.ts";
import { type CloseFrame, type EngineClient, withDispatcher } from "../../src/engine/options.ts";
import {
  type AdapterConnection,
  ConnectionClosedError,
  type WebSocketAdapter,
  type WireMessage,
} from "../../src/transport/types.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { TimeoutError } from "../../src/util/async.ts";
import { type EchoServer, startEchoServer, until } from "./kit.ts";

const OPEN_MS = 300;
const STOP_MS = 300;
/** Slack on the stop bound: scheduling on a loaded 2-core machine, not an engine allowance. */
const STOP_SLACK_MS = 500;
/** Watchdog on anything that must settle (a hang is reported, never waited out). */
const HANG_MS = 4000;

// ---- operations ----

type Cb = "onOpen" | "onMessage" | "onClose" | "onReadError" | "onRestartError";
type Action =
  | "restart"
  | "exit"
  | "throw"
  | "slow"
  | "slow-throw"
  | "pause-hold"
  | "pause-detached"
  | "pause-never"
  | "frame"
  // engine.stop() / engine.start() called (not awaited) from the callback, `ms % 8` microtasks
  // later: reaches the windows between the engine's own awaits.
  | "stop"
  | "start";

type Op =
  | { k: "start"; wait: boolean }
  | { k: "stop"; wait: boolean }
  | { k: "kill" }
  | { k: "restart" }
  | { k: "freeze" }
  | { k: "thaw" }
  | { k: "closeAll"; code: number }
  | { k: "reject"; on: boolean }
  | { k: "arm"; cb: Cb; action: Action; ms: number }
  | { k: "send"; n: number; wait: boolean }
  | { k: "request"; ms: number; answered: boolean; wait: boolean }
  | { k: "sleep"; ms: number };

interface Step {
  op: Op;
  /** Pause before the next step: ms when >= 0, else that many microtask turns. */
  gapMs: number;
}

interface Config {
  reconnect: boolean;
  maxRetries: number;
  /** Ping every 50 ms, drop after 100 ms without a pong (a frozen server trips it). */
  heartbeat: boolean;
  /** Actions armed before the first step. */
  script: Op[];
  steps: Step[];
}

const arm = (cb: Cb, actions: Action[]): fc.Arbitrary<Op> =>
  fc.record({
    k: fc.constant("arm" as const),
    cb: fc.constant(cb),
    action: fc.constantFrom(...actions),
    ms: fc.integer({ min: 0, max: 450 }),
  });

const armArb: fc.Arbitrary<Op> = fc.oneof(
  arm("onOpen", ["restart", "exit", "throw", "slow", "pause-hold", "stop"]),
  arm("onMessage", [
    "restart",
    "exit",
    "throw",
    "slow",
    "slow-throw",
    "pause-hold",
    "pause-detached",
    "pause-never",
    "stop",
  ]),
  arm("onClose", ["restart", "exit", "throw", "slow", "frame", "stop", "start"]),
  arm("onReadError", ["restart", "exit", "slow", "stop"]),
  arm("onRestartError", ["exit", "throw", "slow", "stop"]),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant("start" as const), wait: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("stop" as const), wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant<Op>({ k: "kill" }) },
  { weight: 2, arbitrary: fc.constant<Op>({ k: "restart" }) },
  { weight: 2, arbitrary: fc.constant<Op>({ k: "freeze" }) },
  { weight: 2, arbitrary: fc.constant<Op>({ k: "thaw" }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("closeAll" as const),
      code: fc.oneof(fc.constant(1000), fc.integer({ min: 3000, max: 4999 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("reject" as const), on: fc.boolean() }) },
  { weight: 10, arbitrary: armArb },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant("send" as const),
      n: fc.integer({ min: 1, max: 4 }),
      wait: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("request" as const),
      ms: fc.integer({ min: 5, max: 150 }),
      answered: fc.boolean(),
      wait: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("sleep" as const),
      ms: fc.integer({ min: 0, max: 200 }),
    }),
  },
);

const configArb: fc.Arbitrary<Config> = fc.record({
  reconnect: fc.constantFrom(true, true, true, false),
  maxRetries: fc.constantFrom(Infinity, Infinity, 2, 5),
  heartbeat: fc.boolean(),
  script: fc.array(armArb, { maxLength: 5 }),
  steps: fc.array(fc.record({ op: opArb, gapMs: fc.integer({ min: -12, max: 100 }) }), {
    minLength: 6,
    maxLength: 12,
  }),
});

// ---- helpers ----

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const text = (m: WireMessage) => (m.type === "text" ? m.data : new TextDecoder().decode(m.data));
/** Resolves after `n` microtask turns (no timer). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}
const errName = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Settles like `p`, or rejects after `ms` (the timer is always cleared). */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`HANG: ${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
}

// ---- the model ----

/** What the runs exercised, printed per adapter (to see that the chaos reaches every state). */
let stats: Record<string, number> = {};
const bump = (key: string, by = 1) => void (stats[key] = (stats[key] ?? 0) + by);

interface SessionRec {
  id: string;
  run: number;
  restarting: boolean;
  /** onOpen refused it on purpose (restart / exit / throw armed). */
  refusedByScript: boolean;
  attached: boolean;
  detached: boolean;
  closes: number;
  pushed: number;
  handled: number;
}

interface RunRec {
  id: number;
  opens: number;
  expectedRetry: number;
  stopCalled: boolean;
  exitCalled: boolean;
  gaveUp: boolean;
  startFailed: boolean;
  attachedAny: boolean;
  dispatcherClosed: boolean;
  attached?: string;
}

class Model {
  readonly t0 = performance.now();
  readonly log: string[] = [];
  readonly violations: string[] = [];
  readonly sessions = new Map<string, SessionRec>();
  readonly runs: RunRec[] = [];
  /** True while the engine is known to be stopped (after stop()/done, until the next start). */
  quiet = true;
  /** Request payloads whose request resolved: their echo was consumed, never dispatched. */
  readonly consumed = new Set<string>();
  /** Sessions whose onClose finished (marked a timer turn later: the engine is past it). */
  readonly closedSessions = new Set<string>();
  readonly finals = new Set<string>();
  readonly inflight = new Set<Promise<unknown>>();
  readonly leases = new Set<PauseLease>();
  readonly timers = new Set<ReturnType<typeof setTimeout>>();
  readonly pending = new Set<Promise<unknown>>();
  arms = new Map<Cb, Op & { k: "arm" }>();
  /** The run whose stop() is in progress (its state must read "stopping" or "stopped"). */
  stopping?: RunRec;
  /** Every connection the adapter handed to the engine. */
  readonly conns: { conn: AdapterConnection; closeSettled: boolean; terminated: boolean }[] = [];

  constructor(readonly cfg: Config) {}

  note(what: string): void {
    const key = /^(on\w+|start\(\) \w+|stop\(\) resolved|request \w+ answered)/.exec(what)?.[1];
    if (key) bump(key.replace(/^request \w+/, "request"));
    this.log.push(`${(performance.now() - this.t0).toFixed(0).padStart(5)} ms  ${what}`);
  }
  fail(what: string): void {
    this.note(`VIOLATION ${what}`);
    this.violations.push(what);
  }
  check(ok: boolean, what: string): void {
    if (!ok) this.fail(what);
  }
  get run(): RunRec | undefined {
    return this.runs.at(-1);
  }
  /** What `engine.stop()` / `engine.start()` are, checked (set by the run). */
  hooks = { stop: () => Promise.resolve(), start: () => Promise.resolve() };
  /** Takes the action armed for `cb`; stop / start are scheduled here (not awaited). */
  take(cb: Cb): (Op & { k: "arm" }) | undefined {
    const a = this.arms.get(cb);
    this.arms.delete(cb);
    if (!a) return undefined;
    this.note(`armed ${cb} ${a.action} ${a.ms}`);
    bump(`armed ${cb} ${a.action}`);
    if (a.action === "stop" || a.action === "start") {
      const call = a.action === "stop" ? this.hooks.stop : this.hooks.start;
      this.detach(turns(a.ms % 8).then(call));
      return undefined;
    }
    return a;
  }
  /** Runs a callback body, tracked so the test can wait for handlers that outlive the engine. */
  track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => void this.inflight.delete(p);
    p.then(done, done);
    return p;
  }
  /** An operation issued without awaiting: must settle within the watchdog, checked when it does. */
  detach(p: Promise<unknown>): void {
    const q = p.catch((e) => this.fail(errName(e)));
    this.pending.add(q);
    void q.finally(() => this.pending.delete(q));
  }
  session(id: string, where: string): SessionRec | undefined {
    const s = this.sessions.get(id);
    if (!s) this.fail(`${where} for unknown session ${id.slice(0, 8)}`);
    return s;
  }
  quietCheck(cb: string): void {
    if (this.quiet) this.fail(`${cb} started while the engine was stopped`);
  }
  /** Called wherever the engine's state is observed (callbacks, traffic, between steps). */
  observe(engine: WebSocketEngine, where: string): void {
    const st = engine.state;
    if (this.stopping && this.stopping === this.run && st !== "stopping" && st !== "stopped") {
      this.fail(`${where}: state ${st} while stop() is in progress`);
    }
  }
  /** When the engine says it stopped, no connection may still be open or closing. */
  connsSettled(where: string): void {
    for (const c of this.conns) {
      if (!c.conn.isClosed && !c.closeSettled && !c.terminated) {
        this.fail(`${where}: a connection is neither closed nor terminated`);
      }
    }
  }
}

/** The InlineDispatcher, observed: attach / push / detach / close are what the engine does. */
function observedDispatcher(model: Model, client: EngineClient): Dispatcher {
  const run: RunRec = {
    id: model.runs.length,
    opens: 0,
    expectedRetry: 0,
    stopCalled: false,
    exitCalled: false,
    gaveUp: false,
    startFailed: false,
    attachedAny: false,
    dispatcherClosed: false,
  };
  model.runs.push(run);
  model.quiet = false;
  model.note(`run ${run.id} begins`);
  const inner = new InlineDispatcher({ onMessage: client.onMessage?.bind(client) }, { context });
  return {
    init: () => inner.init(),
    open(host): DispatchConnection {
      const s = model.session(host.id, "attach");
      model.note(`run ${run.id} attach ${host.id.slice(0, 8)}`);
      model.check(
        model.run === run,
        `attach on run ${run.id} while run ${model.run?.id} is current`,
      );
      model.check(run.attached === undefined, `attach while ${run.attached?.slice(0, 8)} attached`);
      if (s) {
        model.check(s.run === run.id, `session of run ${s.run} attached on run ${run.id}`);
        model.check(!s.attached, `session ${s.id.slice(0, 8)} attached twice`);
        model.check(
          !s.refusedByScript,
          `session ${s.id.slice(0, 8)} refused by onOpen but attached`,
        );
        s.attached = true;
      }
      run.attached = host.id;
      run.attachedAny = true;
      run.expectedRetry = 0; // a new restart cycle begins after every successful open
      const conn = inner.open(host);
      return {
        id: conn.id,
        push(message) {
          if (run.dispatcherClosed) return conn.push(message);
          const id = run.attached;
          model.check(id === host.id, "push while detached");
          const ok = conn.push(message);
          if (ok && id) model.sessions.get(id)!.pushed++;
          return ok;
        },
        writable: () => conn.writable(),
        pause: (signal) => conn.pause(signal),
        end(options) {
          const id = run.attached;
          model.note(`run ${run.id} detach ${id?.slice(0, 8)}`);
          model.check(id === host.id, "detach while detached");
          if (id) model.sessions.get(id)!.detached = true;
          run.attached = undefined;
          conn.end(options);
        },
      };
    },
    close(ms) {
      model.note(`run ${run.id} dispatcher close`);
      run.dispatcherClosed = true;
      return inner.close(ms);
    },
  };
}

/** The adapter, observed: which connections were closed (handshake settled) or terminated. */
function observedAdapter(model: Model, inner: WebSocketAdapter): WebSocketAdapter {
  return {
    name: inner.name,
    async dial(url, options) {
      const conn = await inner.dial(url, options);
      const rec = { conn, closeSettled: false, terminated: false };
      model.conns.push(rec);
      const close = conn.close.bind(conn);
      const terminate = conn.terminate.bind(conn);
      conn.close = (code, reason, timeoutMs) => {
        const p = close(code, reason, timeoutMs);
        const settled = () => void (rec.closeSettled = true);
        p.then(settled, settled);
        return p;
      };
      conn.terminate = () => {
        rec.terminated = true;
        terminate();
      };
      return conn;
    },
  };
}

function chaosClient(model: Model, engine: () => WebSocketEngine): EngineClient {
  const pauseIn = async (
    ctxPause: () => Promise<PauseLease>,
    action: Action,
    ms: number,
  ): Promise<void> => {
    let lease: PauseLease;
    try {
      lease = await bounded(ctxPause(), HANG_MS, "ctx.pause()");
    } catch (e) {
      model.check(e instanceof ConnectionClosedError, `ctx.pause() rejected with ${errName(e)}`);
      return;
    }
    model.note(`paused (${action} ${ms} ms)`);
    if (action === "pause-hold") {
      // Hold the lock inside the handler; read what arrives meanwhile.
      const end = performance.now() + ms;
      while (performance.now() < end) {
        try {
          await lease.read({ timeoutMs: Math.max(1, Math.min(50, end - performance.now())) });
        } catch (e) {
          if (!(e instanceof TimeoutError)) {
            model.check(
              e instanceof ConnectionClosedError || e instanceof EngineStateError,
              `lease.read() rejected with ${errName(e)}`,
            );
            await delay(Math.max(0, end - performance.now()));
            break;
          }
        }
      }
      lease.resume();
    } else if (action === "pause-detached") {
      model.leases.add(lease);
      const timer = setTimeout(() => {
        model.timers.delete(timer);
        model.leases.delete(lease);
        lease.resume();
      }, ms);
      model.timers.add(timer);
    } else {
      model.leases.add(lease); // never resumed (until the run heals)
    }
  };

  return {
    onOpen(ctx) {
      return model.track((async () => {
        model.quietCheck("onOpen");
        model.observe(engine(), "onOpen");
        const run = model.run!;
        model.note(
          `onOpen ${ctx.sessionId.slice(0, 8)} run ${run.id} restarting=${ctx.restarting}`,
        );
        model.check(!model.sessions.has(ctx.sessionId), "a session id was reused");
        model.check(
          ctx.restarting === run.opens > 0,
          `onOpen.restarting=${ctx.restarting} for open #${run.opens} of run ${run.id}`,
        );
        run.opens++;
        const s: SessionRec = {
          id: ctx.sessionId,
          run: run.id,
          restarting: ctx.restarting,
          refusedByScript: false,
          attached: false,
          detached: false,
          closes: 0,
          pushed: 0,
          handled: 0,
        };
        model.sessions.set(s.id, s);
        const a = model.take("onOpen");
        switch (a?.action) {
          case "restart":
            s.refusedByScript = true;
            ctx.restart();
            return;
          case "exit":
            s.refusedByScript = true;
            run.exitCalled = true;
            ctx.exit();
            return;
          case "throw":
            s.refusedByScript = true;
            throw new Error("chaos: onOpen rejects");
          case "slow":
            await delay(a.ms);
            return;
          case "pause-hold": {
            const lease = await ctx.pause();
            await lease.read({ timeoutMs: Math.max(1, Math.min(a.ms, 100)) }).catch(() => {});
            lease.resume();
            return;
          }
        }
      })());
    },

    onMessage(msg, ctx) {
      return model.track((async () => {
        const data = text(msg);
        model.observe(engine(), "onMessage");
        const s = model.session(ctx.sessionId, "onMessage");
        const run = s ? model.runs[s.run] : undefined;
        model.note(`onMessage ${ctx.sessionId.slice(0, 8)} ${data}`);
        model.check(!run?.dispatcherClosed, "onMessage started after its dispatcher closed");
        if (model.finals.has(data)) model.finals.delete(data);
        model.check(!model.consumed.has(data), `a request's response reached onMessage: ${data}`);
        if (s) {
          s.handled++;
          model.check(s.attached, "onMessage for a session never attached");
          model.check(
            s.handled <= s.pushed,
            `onMessage #${s.handled} for a session that took in ${s.pushed} message(s)`,
          );
        }
        if (model.closedSessions.has(ctx.sessionId)) {
          try {
            await bounded(ctx.send("stale"), HANG_MS, "stale ctx.send()");
            model.fail("send() from an ended session's context resolved");
          } catch (e) {
            model.check(e instanceof ConnectionClosedError, `stale send: ${errName(e)}`);
          }
        }
        const a = model.take("onMessage");
        switch (a?.action) {
          case "restart":
            ctx.restart();
            return;
          case "exit":
            if (run) run.exitCalled = true;
            ctx.exit();
            return;
          case "throw":
            throw new Error("chaos: onMessage throws");
          case "slow-throw": // may outlive stop(): its error must not reach a later run
            await delay(a.ms);
            throw new Error("chaos: onMessage throws late");
          case "slow":
            await delay(a.ms);
            return;
          case "pause-hold":
          case "pause-detached":
          case "pause-never":
            await pauseIn(() => ctx.pause(), a.action, a.ms);
            return;
        }
      })());
    },

    onClose(peer, ctx) {
      return model.track((async (): Promise<CloseFrame | void> => {
        model.observe(engine(), "onClose");
        const s = model.session(ctx.sessionId, "onClose");
        model.note(
          `onClose ${
            ctx.sessionId.slice(0, 8)
          } peer=${peer?.code} willReconnect=${ctx.willReconnect}`,
        );
        if (s) {
          s.closes++;
          model.check(s.attached, "onClose for a session never attached (refused or unknown)");
          model.check(s.detached, "onClose before the dispatcher was detached");
          model.check(s.closes === 1, `onClose #${s.closes} for one session`);
          const run = model.runs[s.run];
          model.check(!run.dispatcherClosed, "onClose started after the run ended");
        }
        const later = () => {
          const timer = setTimeout(() => {
            model.timers.delete(timer);
            model.closedSessions.add(ctx.sessionId);
          }, 0);
          model.timers.add(timer);
        };
        const a = model.take("onClose");
        try {
          switch (a?.action) {
            case "restart":
              ctx.restart(); // documented no-op
              return;
            case "exit":
              if (s) model.runs[s.run].exitCalled = true;
              ctx.exit();
              return;
            case "throw":
              throw new Error("chaos: onClose throws");
            case "slow":
              await delay(a.ms);
              return;
            case "frame":
              return a.ms % 2 ? { code: 4000 + a.ms, reason: "chaos" } : { code: 1005 };
          }
        } finally {
          later();
        }
      })());
    },

    onReadError(error, ctx) {
      return model.track((async () => {
        model.observe(engine(), "onReadError");
        const s = model.session(ctx.sessionId, "onReadError");
        if (s) {
          model.check(
            !model.runs[s.run].dispatcherClosed,
            "onReadError started after its run ended",
          );
        }
        model.note(`onReadError ${ctx.sessionId.slice(0, 8)} ${errName(error)}`);
        const a = model.take("onReadError");
        switch (a?.action) {
          case "restart":
            ctx.restart();
            return;
          case "exit":
            if (s) model.runs[s.run].exitCalled = true;
            ctx.exit();
            return;
          case "slow":
            await delay(a.ms);
            return;
        }
      })());
    },

    onRestartError(error, retryCount, ctx) {
      return model.track((async () => {
        model.quietCheck("onRestartError");
        model.observe(engine(), "onRestartError");
        const run = model.run!;
        model.note(
          `onRestartError #${retryCount} willRetry=${ctx.willRetry} run ${run.id}: ${
            errName(error)
          }`,
        );
        model.check(
          retryCount === run.expectedRetry,
          `onRestartError retryCount ${retryCount}, expected ${run.expectedRetry}`,
        );
        run.expectedRetry = retryCount + 1;
        model.check(
          ctx.willRetry === retryCount + 1 < model.cfg.maxRetries,
          `willRetry=${ctx.willRetry} at retry ${retryCount} of ${model.cfg.maxRetries}`,
        );
        if (!ctx.willRetry) run.gaveUp = true;
        const a = model.take("onRestartError");
        switch (a?.action) {
          case "exit":
            run.exitCalled = true;
            ctx.exit();
            return;
          case "throw":
            throw new Error("chaos: onRestartError throws");
          case "slow":
            await delay(a.ms);
            return;
        }
      })());
    },

    onCloseError(error) {
      model.note(`onCloseError ${errName(error)}`);
    },
  };
}

// ---- one run ----

async function chaosRun(adapter: () => WebSocketAdapter, cfg: Config): Promise<void> {
  const model = new Model(cfg);
  const server: EchoServer = startEchoServer();
  const base = adapter();
  const engine: WebSocketEngine = new WebSocketEngine(withDispatcher({
    url: server.url,
    adapter: observedAdapter(model, base),
    client: chaosClient(model, () => engine),
    reconnect: cfg.reconnect
      ? { baseDelayMs: 5, maxDelayMs: 30, maxRetries: cfg.maxRetries }
      : false,
    openTimeoutMs: OPEN_MS,
    stopTimeoutMs: STOP_MS,
    // The WHATWG WebSocket cannot ping: the engine refuses a heartbeat with it.
    heartbeat: cfg.heartbeat && base.name !== "whatwg"
      ? { intervalMs: 50, timeoutMs: 100 }
      : undefined,
    logger: (message) => model.note(message),
  }, (client) => observedDispatcher(model, client)));
  let seq = 0;
  model.hooks = { stop: () => stop(), start: () => start() };

  /** start(): EngineStateError exactly when the engine was not stopped; never hangs. */
  const start = (expectOk = false): Promise<void> => {
    const wasStopped = engine.state === "stopped";
    const before = model.runs.length;
    const p = engine.start();
    const accepted = model.runs.length > before;
    model.note(`start() in ${wasStopped ? "stopped" : engine.state}`);
    model.check(accepted === wasStopped, `start() accepted=${accepted} in a non-stopped engine`);
    let run: RunRec | undefined;
    if (accepted) {
      run = model.run!;
      const rid = run.id;
      const r = run;
      void engine.done.then(() => {
        model.note(`run ${rid} done`);
        if (model.run !== r) return; // a new run began meanwhile
        model.check(engine.state === "stopped", `after done: state ${engine.state}`);
        model.check(!engine.isStarted, "after done: isStarted");
        model.connsSettled("after done");
        model.quiet = true;
        if (!r.stopCalled && !r.startFailed && r.attachedAny) {
          model.check(
            r.exitCalled || !cfg.reconnect || r.gaveUp,
            `run ${rid} stopped by itself without exit(), a give-up or reconnect off`,
          );
        }
      });
    }
    return bounded(p, OPEN_MS + 2 * STOP_MS + HANG_MS, "start()").then(
      () => model.note(`start() resolved`),
      (e) => {
        model.note(`start() rejected: ${errName(e)}`);
        if (e instanceof Error && e.message.startsWith("HANG")) return model.fail(e.message);
        if (accepted) {
          run!.startFailed = true;
          model.check(!expectOk, `start() against a healthy server failed: ${errName(e)}`);
          model.check(e instanceof EngineStartError, `start() rejected with ${errName(e)}`);
        } else {
          model.check(e instanceof EngineStateError, `start() rejected with ${errName(e)}`);
        }
      },
    );
  };

  /** stop(): resolves within the budget; afterwards the engine is stopped. */
  let frozen = false;
  const stop = (): Promise<void> => {
    if (frozen && engine.state === "open") bump("stop() open+frozen");
    const run = model.run;
    if (run && engine.state !== "stopped") {
      run.stopCalled = true;
      model.stopping = run;
    }
    const t0 = performance.now();
    model.note(`stop() in ${engine.state}`);
    return bounded(engine.stop(), HANG_MS, "stop()").then(() => {
      if (model.stopping === run) model.stopping = undefined;
      const dt = performance.now() - t0;
      model.note(`stop() resolved after ${dt.toFixed(0)} ms`);
      model.check(dt <= STOP_MS + STOP_SLACK_MS, `stop() took ${dt.toFixed(0)} ms`);
      stats["max stop() ms"] = Math.max(stats["max stop() ms"] ?? 0, Math.round(dt));
      if (model.run === run) {
        model.check(engine.state === "stopped", `after stop(): state ${engine.state}`);
        model.check(!engine.isStarted, "after stop(): isStarted");
        model.connsSettled("after stop()");
        model.quiet = true;
      }
    }, (e) => model.fail(`stop() rejected: ${errName(e)}`));
  };

  const send = (n = 1): Promise<void> => {
    const all: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const data = `m${seq++}`;
      all.push(
        bounded(engine.send(data), HANG_MS, "send()").then(
          () => model.note(`send ${data} ok`),
          (e) => model.check(e instanceof ConnectionClosedError, `send() rejected: ${errName(e)}`),
        ),
      );
    }
    return Promise.all(all).then(() => {});
  };

  const request = (ms: number, answered: boolean): Promise<void> => {
    const data = `r${seq++}`;
    const match = (m: WireMessage) => answered && text(m) === data;
    return bounded(engine.request(data, { match, timeoutMs: ms }), ms + HANG_MS, "request()")
      .then(
        (m) => {
          model.check(answered && text(m) === data, `request resolved with ${text(m)}`);
          model.consumed.add(data);
          model.note(`request ${data} answered`);
        },
        (e) =>
          model.check(
            e instanceof TimeoutError || e instanceof ConnectionClosedError,
            `request() rejected: ${errName(e)}`,
          ),
      );
  };

  const issue = (p: Promise<void>, wait: boolean) => (wait ? p : (model.detach(p), undefined));

  for (const a of cfg.script) if (a.k === "arm") model.arms.set(a.cb, a);
  bump("steps", cfg.steps.length);
  // Background traffic while the operations run, so armed onMessage actions fire.
  let traffic = true;
  const trafficLoop = (async () => {
    while (traffic) {
      model.observe(engine, "traffic");
      if (engine.state === "open") {
        const data = `t${seq++}`;
        await bounded(engine.send(data), HANG_MS, "send()").then(
          () => bump("traffic sent"),
          (e) => model.check(e instanceof ConnectionClosedError, `send() rejected: ${errName(e)}`),
        );
      }
      await delay(8);
    }
  })();
  try {
    for (const { op, gapMs } of cfg.steps) {
      model.note(`op ${JSON.stringify(op)}`);
      switch (op.k) {
        case "start":
          await issue(start(), op.wait);
          break;
        case "stop":
          await issue(stop(), op.wait);
          break;
        case "kill":
          frozen = false;
          await bounded(server.kill(), HANG_MS, "server.kill()");
          break;
        case "restart":
          await bounded(server.restart(), HANG_MS, "server.restart()");
          break;
        case "freeze":
          frozen = true;
          server.freeze();
          break;
        case "thaw":
          frozen = false;
          server.thaw();
          break;
        case "closeAll":
          server.closeAll(op.code, "chaos");
          break;
        case "reject":
          server.rejectStatus = op.on ? 403 : 0;
          break;
        case "arm":
          model.arms.set(op.cb, op);
          break;
        case "send":
          await issue(send(op.n), op.wait);
          break;
        case "request":
          await issue(request(op.ms, op.answered), op.wait);
          break;
        case "sleep":
          await delay(op.ms);
          break;
      }
      model.observe(engine, "step");
      if (gapMs >= 0) await delay(gapMs);
      else await turns(-gapMs);
      model.observe(engine, "step");
    }

    // ---- heal, then liveness: the engine must come back and dispatch ----
    traffic = false;
    await trafficLoop;
    model.note("heal");
    model.arms.clear();
    server.thaw();
    server.rejectStatus = 0;
    await bounded(server.restart(), HANG_MS, "server.restart()");
    for (const t of model.timers) clearTimeout(t);
    model.timers.clear();
    for (const l of model.leases) l.resume();
    model.leases.clear();
    await bounded(Promise.all([...model.pending]), HANG_MS, "pending operations");
    await bounded(Promise.allSettled([...model.inflight]), HANG_MS, "callbacks in flight");

    // Liveness: the engine comes back, a message sent now is dispatched and a request answered.
    // A message sent into a connection the peer is already closing may be lost (at most once),
    // so each try waits a little and the next one goes out on whatever connection is open then.
    const end = performance.now() + HANG_MS;
    let dispatched = false;
    let answered = false;
    while (!(dispatched && answered) && performance.now() < end) {
      if (engine.state === "stopped") await start(true);
      if (engine.state !== "open") {
        await delay(5);
        continue;
      }
      if (!dispatched) {
        const data = `final${seq++}`;
        model.finals.add(data);
        await engine.send(data).catch(() => {});
        const until = Math.min(end, performance.now() + 300);
        while (model.finals.has(data) && performance.now() < until) await delay(5);
        dispatched = !model.finals.has(data);
        model.finals.delete(data);
      } else {
        const r = `fr${seq++}`;
        await engine.request(r, { match: (m) => text(m) === r, timeoutMs: 300 }).then(() => {
          model.consumed.add(r);
          answered = true;
        }, () => {});
      }
    }
    model.check(dispatched, `after healing no message was dispatched (state ${engine.state})`);
    model.check(answered, `after healing no request was answered (state ${engine.state})`);
    await stop();
    // A stopped engine starts again (or fails with EngineStartError), never EngineStateError.
    await start();
    await stop();
    await bounded(Promise.all([...model.pending]), HANG_MS, "pending operations");
    await bounded(Promise.allSettled([...model.inflight]), HANG_MS, "callbacks in flight");
    for (const t of model.timers) clearTimeout(t);
    model.timers.clear();

    // ---- pairing ----
    for (const s of model.sessions.values()) {
      const id = s.id.slice(0, 8);
      if (s.attached) model.check(s.closes === 1, `session ${id}: ${s.closes} onClose`);
      else {
        model.check(s.closes === 0, `refused session ${id} got onClose`);
        model.check(s.handled === 0, `refused session ${id} got onMessage`);
      }
    }
  } catch (e) {
    model.fail(`the run threw: ${errName(e)}`);
  } finally {
    traffic = false;
    await trafficLoop;
    model.quiet = false;
    await engine.stop();
    for (const l of model.leases) l.resume();
    for (const t of model.timers) clearTimeout(t);
    await Promise.allSettled([...model.pending, ...model.inflight]);
    await server.close();
  }
  if (Deno.env.get("CHAOS_LOG")) console.log(model.log.join("\n") + "\n----");
  if (model.violations.length > 0) {
    throw new Error(
      `${model.violations.length} violation(s):\n  ${model.violations.join("\n  ")}\n` +
        `config: ${JSON.stringify({ ...cfg, steps: undefined })}\nlog:\n${
          model.log.slice(-120).join("\n")
        }`,
    );
  }
}

// ---- regressions the chaos found, as deterministic cases ----

Deno.test({
  name: "regression: stop() right after a restart stops the new run, not the previous stop's",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // The first run's dispatcher is still closing (a handler in flight) when its state already
    // reads "stopped"; a start() then succeeds, and the next stop() used to return the first
    // run's pending stop promise: it resolved with the new run still open.
    const server = startEchoServer();
    let release!: () => void;
    const busy = new Promise<void>((r) => (release = r));
    let handling = false;
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: whatwgAdapter(),
      stopTimeoutMs: 300,
      client: {
        onMessage: async () => {
          handling = true;
          await busy;
        },
      },
    });
    try {
      await engine.start();
      await engine.send("x");
      await until(() => handling, "the handler runs");
      const first = engine.stop();
      await until(() => engine.state === "stopped", "the first run stopped");
      await engine.start();
      assert.equal(engine.state, "open");
      const second = engine.stop();
      assert.notEqual(second, first);
      await second;
      assert.equal(engine.state, "stopped");
      assert.equal(engine.isStarted, false);
      release();
      await first;
    } finally {
      release();
      await engine.stop();
      await server.close();
    }
  },
});

Deno.test({
  name:
    "regression: stop() in the turns after onOpen returns waits for the close; state stays stopping",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // stop() called a few microtask turns after onOpen returned, before the session was
    // activated: on start() it awaited a stale task and resolved before the session's close
    // handshake; on a reconnect the activation overwrote "stopping" with "open".
    const server = startEchoServer();
    try {
      for (const path of ["start", "reconnect"] as const) {
        for (let k = 0; k < 8; k++) {
          let opens = 0;
          let stopping: Promise<unknown> | undefined;
          const states: string[] = [];
          const unsettled = new Set<AdapterConnection>();
          const inner = wsAdapter();
          const adapter: WebSocketAdapter = {
            name: "observed",
            async dial(url, options) {
              const conn = await inner.dial(url, options);
              unsettled.add(conn);
              const close = conn.close.bind(conn);
              const terminate = conn.terminate.bind(conn);
              conn.close = (...args) => close(...args).finally(() => unsettled.delete(conn));
              conn.terminate = () => (unsettled.delete(conn), terminate());
              return conn;
            },
          };
          const engine: WebSocketEngine = new WebSocketEngine({
            url: server.url,
            adapter,
            stopTimeoutMs: 300,
            reconnect: { baseDelayMs: 1, maxDelayMs: 2 },
            client: {
              onOpen() {
                if (++opens === (path === "start" ? 1 : 2)) {
                  void turns(k).then(async () => {
                    stopping = engine.stop();
                    for (let i = 0; i < 8; i++, await Promise.resolve()) states.push(engine.state);
                  });
                }
              },
            },
          });
          await engine.start().catch((e) => assert.ok(e instanceof EngineStartError));
          if (path === "reconnect") server.closeAll(1000, "again");
          await until(() => stopping !== undefined, "stop() called");
          await stopping;
          const what = `${path}, stop ${k} turns after onOpen`;
          assert.equal(engine.state, "stopped", what);
          const open = [...unsettled].filter((c) => !c.isClosed).length;
          assert.equal(open, 0, `${what}: stop() resolved before the close`);
          assert.ok(states.every((s) => s === "stopping" || s === "stopped"), `${what}: ${states}`);
        }
      }
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "regression: a handler that outlives stop() and throws does not reach the next run",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    // onReadError used the engine's current run: the late error of a stopped run's handler was
    // reported during the next run, with a context whose exit() stopped that next run.
    const server = startEchoServer();
    const readErrors: string[] = [];
    let handling = false;
    let done!: () => void;
    const thrown = new Promise<void>((r) => (done = r));
    const engine = new WebSocketEngine({
      url: server.url,
      adapter: whatwgAdapter(),
      stopTimeoutMs: 50,
      client: {
        onMessage: async () => {
          handling = true;
          await delay(150);
          done();
          throw new Error("late");
        },
        onReadError: (_e, ctx) => {
          readErrors.push(ctx.sessionId);
          ctx.exit();
        },
      },
    });
    try {
      await engine.start();
      await engine.send("x");
      await until(() => handling, "the handler runs");
      await engine.stop(); // the handler outlives the 50 ms budget
      await engine.start();
      await thrown;
      await delay(20);
      assert.deepEqual(readErrors, []);
      assert.equal(engine.state, "open");
    } finally {
      await engine.stop();
      await server.close();
    }
  },
});

// ---- the property, per adapter ----

const RUNS = Number(Deno.env.get("CHAOS_RUNS") ?? 30);
const SEED = Deno.env.get("CHAOS_SEED");
const PATH = Deno.env.get("CHAOS_PATH");

function chaos(name: string, adapter: () => WebSocketAdapter): void {
  Deno.test({
    name: `[${name}] chaos: the engine cannot wedge (random ops against a faulty server)`,
    sanitizeOps: true,
    sanitizeResources: true,
    async fn() {
      const t0 = performance.now();
      let runs = 0;
      stats = {};
      try {
        await fc.assert(
          fc.asyncProperty(configArb, async (cfg) => {
            runs++;
            await chaosRun(adapter, cfg);
          }),
          {
            numRuns: RUNS,
            endOnFailure: true,
            ...(SEED ? { seed: Number(SEED) } : {}),
            ...(PATH ? { path: PATH } : {}),
          },
        );
      } catch (e) {
        console.error(`[${name}] chaos failed (reproduce with CHAOS_SEED / CHAOS_PATH):`);
        console.error(errName(e));
        throw e;
      }
      console.log(`[${name}] ${runs} runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      console.log(`[${name}] ${JSON.stringify(stats)}`);
    },
  });
}

chaos("whatwg", () => whatwgAdapter());
chaos("ws", () => wsAdapter());
chaos("wse", () => wseAdapter());
