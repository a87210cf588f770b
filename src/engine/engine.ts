/**
 * The client engine: a lifecycle state machine around one socket at a time.
 *
 * ```
 * stopped ─start()→ starting ─ok→ open ─drop / restart()→ closing ─→ reconnecting ─ok→ open
 *                        └─fail→ stopped          └─stop() / exit()→ closing ─→ stopped
 * ```
 *
 * The engine owns the socket and pumps messages from the adapter into a {@linkcode Dispatcher}
 * (`InlineDispatcher` by default). See `docs/lifecycle.md` for every transition and
 * `docs/reliability.md` for what is guaranteed about messages.
 *
 * @module
 */

import {
  type AdapterConnection,
  type CloseInfo,
  ConnectionClosedError,
  type DialOptions,
  type HandshakeInfo,
  NotSupportedError,
  type OutgoingData,
  ReadOverflowError,
  type WireMessage,
} from "../transport/types.ts";
import { AbortError, deferred, sleep, TimeoutError, within } from "../util/async.ts";
import { RateLimitedLog } from "../util/rate_limited_log.ts";
import { Lease } from "../dispatch/lease.ts";
import { pump } from "../dispatch/pump.ts";
import { context as otelContext, type Span, trace as otelTrace } from "@opentelemetry/api";
import { ATTR, fail as failSpan, SpanKind, Telemetry } from "../telemetry/telemetry.ts";
import type {
  ConnectionHost,
  DispatchConnection,
  Dispatcher,
  PauseLease,
} from "../dispatch/types.ts";
import { fullJitterDelay } from "./backoff.ts";
import type { CloseContext, OpenContext, SessionContext } from "./context.ts";
import { CloseError, EngineStartError, EngineStateError, UndeliveredError } from "./errors.ts";
import {
  type CloseFrame,
  type EngineClient,
  type EngineOptions,
  type ResolvedOptions,
  resolveOptions,
} from "./options.ts";
import { type RequestOptions, type RequestRecord, RequestTracker } from "./request.ts";
import { type BufferedMessage, SendBuffer, SendBufferFullError } from "./send_buffer.ts";

/**
 * Where the engine is in its lifecycle.
 * - `stopped`: nothing runs (initially, after `stop()`, `exit()`, a give-up, or a drop without
 *   auto-reconnect).
 * - `starting`: `start()` is dialing / running `onOpen`.
 * - `open`: a session is open and messages are dispatched (a pause is a sub-state of open).
 * - `closing`: the session is ending (`onClose`, close handshake).
 * - `reconnecting`: the retry loop (sleeping or attempting).
 * - `stopping`: `stop()` is tearing everything down.
 *
 * @example
 * ```ts
 * import type { EngineState } from "./engine.ts";
 * const busy = (s: EngineState) => s === "starting" || s === "reconnecting";
 * console.log(busy("open")); // false
 * ```
 */
export type EngineState = "stopped" | "starting" | "open" | "closing" | "reconnecting" | "stopping";

/** One transition, as `onStateChange` listeners get it: the state entered and the one left. */
export type StateChange = { readonly state: EngineState; readonly previous: EngineState };

type CloseRequest = "restart" | "exit" | "stop";
type SessionState = "opening" | "open" | "closing" | "ended";

class Session {
  readonly id: string = crypto.randomUUID();
  state: SessionState = "opening";
  conn?: AdapterConnection;
  /** This session in the run's dispatcher, once dispatch started. */
  dispatch?: DispatchConnection;
  handshake: HandshakeInfo = { protocol: "", extensions: "" };
  closeRequest?: CloseRequest;
  sendsClosed = false;
  /** True while the offline buffer is being sent on this session. */
  flushing = false;
  /** Aborted when the session starts closing (ends the heartbeat). */
  readonly life = new AbortController();
  /** Set by the pump while it runs: a close request must wake it. */
  onInterrupt?: () => void;
  /** The session's span, from activation to the end of its close. */
  span?: Span;

  requestClose(why: CloseRequest): void {
    if (this.closeRequest || this.state === "closing" || this.state === "ended") return;
    this.closeRequest = why;
    this.onInterrupt?.();
  }
}

class Run {
  readonly abort = new AbortController();
  readonly done = deferred<void>();
  readonly dispatcher: Dispatcher;
  session?: Session;
  task: Promise<unknown> = Promise.resolve();
  deadline?: number;
  exited = false;
  finished = false;
  /** This run's `stop()`, once called (a later run gets its own). */
  stopping?: Promise<OutgoingData[]>;
  constructor(dispatcher: Dispatcher) {
    this.dispatcher = dispatcher;
  }
}

const noop = () => {};

/** Close codes an endpoint may send (RFC 6455 §7.4, IANA registry). */
function validCloseCode(code: unknown): code is number {
  return typeof code === "number" && Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
      (code >= 3000 && code <= 4999));
}

/** What `send()`/`request()` do with a message now. */
type Route =
  | { readonly kind: "direct"; readonly session: Session }
  | { readonly kind: "buffer"; readonly buffer: SendBuffer }
  | { readonly kind: "refuse"; readonly error: Error };

/**
 * A reconnecting WebSocket client with six callbacks.
 *
 * @example
 * ```ts ignore
 * import { WebSocketEngine } from "./engine.ts";
 * const engine = new WebSocketEngine({
 *   url: "ws://127.0.0.1:8080/",
 *   client: {
 *     onOpen: (ctx) => ctx.send("hello"),
 *     onMessage: (msg, ctx) => console.log(ctx.sessionId, msg.data),
 *   },
 *   sendBuffer: true, // send() queues while reconnecting
 * });
 * await engine.start();
 * console.log(await engine.send("hi")); // "sent", or "buffered" while reconnecting
 * const unsent = await engine.stop(); // what was still queued, in order
 * ```
 */
export class WebSocketEngine {
  readonly #opts: ResolvedOptions;
  readonly #client: EngineClient;
  readonly #requests = new RequestTracker();
  readonly #buffer?: SendBuffer;
  readonly #log?: RateLimitedLog;
  readonly #tel: Telemetry;
  /** Where this engine connects, as span names say it (`host/path`). */
  readonly #dest: string;
  readonly #listeners = new Set<(change: StateChange) => void>();
  #state: EngineState = "stopped";
  #run?: Run;
  /** The last run's `done`: a run may still be closing its dispatcher after `#run` is cleared. */
  #lastDone: Promise<void> = Promise.resolve();

  /**
   * Validates `options`: throws `EngineOptionError` naming the field and the rule (an unknown
   * key names the closest valid one; contradictory options name each other).
   */
  constructor(options: EngineOptions) {
    this.#opts = resolveOptions(options);
    this.#client = this.#opts.client;
    if (this.#opts.sendBuffer) this.#buffer = new SendBuffer(this.#opts.sendBuffer);
    if (this.#opts.logger) this.#log = new RateLimitedLog(this.#opts.logger);
    this.#tel = new Telemetry("wse.engine", this.#opts.telemetry);
    this.#dest = this.#opts.url.host + this.#opts.url.pathname;
  }

  /** Where the engine is in its lifecycle (see {@linkcode WebSocketEngine.onStateChange}). */
  get state(): EngineState {
    return this.#state;
  }

  /**
   * True from a successful `start()` until the engine stops (by `stop()`, `exit()`, giving up
   * reconnecting, or a drop with auto-reconnect off). Also true while reconnecting.
   */
  get isStarted(): boolean {
    return this.#state === "open" || this.#state === "closing" || this.#state === "reconnecting";
  }

  /** The id of the open session, if one is open. */
  get sessionId(): string | undefined {
    const s = this.#run?.session;
    return s?.state === "open" ? s.id : undefined;
  }

  /** Resolves once the engine is stopped (immediately when it is). */
  get done(): Promise<void> {
    return this.#run?.done.promise ?? this.#lastDone;
  }

  /**
   * The offline send buffer (length, bytes, a copy of its messages), or undefined when the
   * `sendBuffer` option is off.
   */
  get sendBuffer():
    | {
      /** Messages queued. */
      readonly length: number;
      /** Bytes queued (strings counted as UTF-8). */
      readonly bytes: number;
      /** The queued messages, oldest first (a new array; the messages are not copied). */
      messages(): OutgoingData[];
    }
    | undefined {
    return this.#buffer;
  }

  /**
   * Calls `listener` after every state change, in order, each in its own microtask (a listener
   * may call any method). Returns the function that unsubscribes it. A listener that throws is
   * reported to the `logger`.
   *
   * @example
   * ```ts ignore
   * const off = engine.onStateChange(({ previous, state }) => console.log(previous, "->", state));
   * off();
   * ```
   */
  onStateChange(
    listener: (change: { readonly state: EngineState; readonly previous: EngineState }) => void,
  ): () => void {
    if (typeof listener !== "function") {
      throw new TypeError("onStateChange(listener): listener must be a function");
    }
    const own = (change: StateChange) => listener(change); // the same function may subscribe twice
    this.#listeners.add(own);
    return () => void this.#listeners.delete(own);
  }

  /**
   * Resolves with the state once the engine is in one of `states` (at once when it already is).
   * Rejects with `TimeoutError` after `timeoutMs`, with the signal's reason on abort.
   *
   * @example
   * ```ts ignore
   * await engine.waitFor("open", { timeoutMs: 10_000 }); // instead of polling engine.state
   * ```
   */
  waitFor(
    states: EngineState | readonly EngineState[],
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<EngineState> {
    const wanted = new Set<EngineState>(typeof states === "string" ? [states] : states);
    if (wanted.has(this.#state)) return Promise.resolve(this.#state);
    let off = noop;
    const reached = new Promise<EngineState>((resolve) => {
      off = this.onStateChange((c) => {
        if (wanted.has(c.state)) resolve(c.state);
      });
    });
    return within(reached, {
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      what: `waiting for the engine to be ${[...wanted].join(" or ")}`,
    }).finally(() => off());
  }

  /**
   * Connects, runs `onOpen`, starts dispatch. Rejects with {@linkcode EngineStartError} (the
   * cause inside) and never retries; a failed start leaves nothing running. Rejects with
   * `EngineStateError` when already started. Messages left in the offline buffer by an engine
   * that stopped by itself are sent once `onOpen` resolved.
   */
  async start(): Promise<void> {
    if (this.#run) throw new EngineStateError("start", this.#state);
    const run = new Run(this.#opts.dispatcher(this.#client, this.#tel));
    const span = this.#tel.start(`start ${this.#dest}`, SpanKind.INTERNAL, this.#serverAttrs());
    this.#run = run;
    this.#lastDone = run.done.promise;
    this.#setState(run, "starting");
    try {
      const init = within(run.dispatcher.init(), {
        timeoutMs: this.#opts.openTimeoutMs,
        what: "dispatcher init",
      });
      run.task = init.catch(noop);
      await init;
      if (run.abort.signal.aborted) throw run.abort.signal.reason;
      const opening = this.#open(run, false); // activates the session before it resolves
      // One task from the dial to the end of the lifecycle: stop() never awaits a stale one.
      run.task = opening.then((session) => this.#lifecycle(run, session), noop);
      await opening;
      span?.end();
    } catch (error) {
      if (span) {
        failSpan(span, error);
        span.end();
      }
      await this.#finish(run);
      throw error instanceof EngineStartError ? error : new EngineStartError(error);
    }
  }

  /**
   * Stops gracefully: interrupts a dial or a retry sleep, runs `onClose(undefined)`, sends its
   * close frame (default 1001 "going away") and waits for the handshake. Resolves within
   * `stopTimeoutMs` in every state; past the budget the socket is dropped and everything torn
   * down anyway. Resolves with the messages still in the offline send buffer, oldest first (they
   * were not sent and never will be by this engine; the buffer is then empty). Resolves at once
   * when already stopped (with what an engine that stopped by itself left queued).
   */
  stop(): Promise<OutgoingData[]> {
    const run = this.#run;
    if (!run) return this.#lastDone.then(() => this.#takeQueue());
    // Per run: a run started while the previous one's dispatcher was still closing (its state
    // was already "stopped") must get its own stop, not the previous run's promise.
    return (run.stopping ??= this.#stop(run).then(() => this.#takeQueue()));
  }

  /**
   * Takes the read lock from outside the callbacks: until `lease.resume()` nothing is
   * dispatched and `lease.read()` returns the next messages. Rejects with
   * `ConnectionClosedError` when no connection is open.
   */
  pause(signal?: AbortSignal): Promise<PauseLease> {
    const run = this.#run;
    const s = run?.session;
    if (!run || !s || s.state !== "open") {
      return Promise.reject(new ConnectionClosedError("no open connection to pause"));
    }
    return this.#pauseSession(run, s, signal);
  }

  /**
   * Sends on the open connection and resolves with `"sent"` once the socket accepted the
   * message. While the engine is reconnecting (or sending its offline queue), with the
   * `sendBuffer` option on, queues it and resolves with `"buffered"` at once. Rejects with
   * `SendBufferFullError` when the buffer is full (policy `"reject-newest"`), with
   * `ConnectionClosedError` when there is no open connection and no buffer (or the engine is
   * stopped, starting or stopping), or when the connection closed before accepting the message.
   */
  send(data: OutgoingData): Promise<"sent" | "buffered"> {
    const bad = this.#checkData("send", data);
    if (bad) return Promise.reject(bad);
    const route = this.#route();
    switch (route.kind) {
      case "refuse":
        return Promise.reject(route.error);
      case "direct":
        return this.#send(route.session, data).then(() => "sent");
      case "buffer":
        try {
          this.#enqueue(route.buffer, data);
        } catch (error) {
          return Promise.reject(error);
        }
        return Promise.resolve("buffered");
    }
  }

  /**
   * Pings the server and resolves with the round-trip time in ms. Rejects with
   * `NotSupportedError` on adapters that cannot ping (WHATWG), `TimeoutError` after `timeoutMs`,
   * `ConnectionClosedError` when no connection is open.
   */
  ping(timeoutMs = 5000): Promise<number> {
    const s = this.#run?.session;
    if (!s || s.state !== "open" || !s.conn) {
      return Promise.reject(new ConnectionClosedError("no open connection"));
    }
    return s.conn.ping(timeoutMs);
  }

  /**
   * Sends `data` and resolves with the first incoming message `options.match` recognises. That
   * message is consumed: it is not given to `onMessage`. Rejects with `TimeoutError` after
   * `options.timeoutMs` (default 30 s), with `ConnectionClosedError` when the connection it was
   * sent on closes first, or when it cannot be sent (as `send()`). With the `sendBuffer` option
   * on, a request made while reconnecting is queued and sent after the reconnect (its timeout
   * runs meanwhile); a request that fails while still queued withdraws its message.
   */
  async request(data: OutgoingData, options: RequestOptions): Promise<WireMessage> {
    const bad = this.#checkData("request", data);
    if (bad) throw bad;
    if (typeof options !== "object" || options === null || options.match === undefined) {
      throw new TypeError("request(data, options): options.match is required");
    }
    const route = this.#route();
    if (route.kind === "refuse") throw route.error;
    const ac = new AbortController();
    const user = options.signal;
    const onUserAbort = () => ac.abort(user!.reason);
    if (user?.aborted) throw user.reason ?? new AbortError();
    user?.addEventListener("abort", onUserAbort, { once: true });
    const record: RequestRecord = { sent: route.kind === "direct" };
    try {
      const response = this.#requests.wait({ ...options, signal: ac.signal }, record);
      if (route.kind === "direct") {
        await this.#send(route.session, data).catch((e) => ac.abort(e));
      } else {
        try {
          const entry = this.#enqueue(route.buffer, data);
          entry.onSent = () => (record.sent = true);
          record.settled = () => {
            if (!record.sent) route.buffer.remove(entry);
          };
        } catch (error) {
          ac.abort(error);
        }
      }
      return await response;
    } finally {
      user?.removeEventListener("abort", onUserAbort);
    }
  }

  // ---- lifecycle ----

  #setState(run: Run, next: EngineState): void {
    if (this.#run !== run) return;
    // Once stop() runs, only its own states are shown.
    if (run.deadline !== undefined && next !== "stopping") return;
    this.#changeState(next);
  }

  #changeState(next: EngineState): void {
    const previous = this.#state;
    if (previous === next) return;
    this.#state = next;
    if (this.#listeners.size === 0) return;
    const change: StateChange = Object.freeze({ state: next, previous });
    for (const listener of this.#listeners) {
      queueMicrotask(() => {
        try {
          listener(change);
        } catch (error) {
          this.#report("wse: an onStateChange listener threw", error);
        }
      });
    }
  }

  #stop(run: Run): Promise<void> {
    return this.#tel.run(`stop ${this.#dest}`, SpanKind.INTERNAL, {}, () => this.#stopRun(run));
  }

  async #stopRun(run: Run): Promise<void> {
    const budget = this.#opts.stopTimeoutMs;
    this.#setState(run, "stopping");
    run.deadline = performance.now() + budget;
    run.abort.abort(new AbortError("the engine is stopping"));
    run.session?.requestClose("stop");
    try {
      await within(run.task, { timeoutMs: this.#left(run), what: "stop" });
    } catch {
      // Past the budget: drop the socket, tear down anyway.
      run.session?.conn?.terminate();
    }
    await this.#finish(run);
  }

  /** Remaining stop budget, or a full `stopTimeoutMs` outside `stop()`. */
  #left(run: Run): number {
    if (run.deadline === undefined) return this.#opts.stopTimeoutMs;
    return Math.max(1, run.deadline - performance.now());
  }

  /** Ends a run: fails pending requests, closes the dispatcher, settles `done`. Idempotent. */
  async #finish(run: Run): Promise<void> {
    if (run.finished) return run.done.promise;
    run.finished = true;
    if (!run.abort.signal.aborted) run.abort.abort(new AbortError("the engine stopped"));
    this.#requests.failAll(new ConnectionClosedError("the engine stopped"));
    if (this.#run === run) {
      this.#run = undefined;
      this.#lastDone = run.done.promise;
      this.#changeState("stopped");
    }
    const queued = this.#buffer?.length ?? 0;
    if (queued > 0 && run.stopping === undefined) {
      this.#report(
        `wse: the engine stopped with ${queued} message(s) in its send buffer: start() sends ` +
          "them, stop() hands them back",
      );
    }
    // The dispatcher promises to close within its budget; the grace bounds a broken one too.
    const left = this.#left(run);
    await within(run.dispatcher.close(left), { timeoutMs: left + 1000, what: "dispatcher close" })
      .catch((error) => {
        if (error instanceof TimeoutError) this.#report("wse: the dispatcher did not close", error);
      });
    this.#log?.flush();
    run.done.resolve();
  }

  #takeQueue(): OutgoingData[] {
    // A run started meanwhile owns the queue now.
    if (this.#run || !this.#buffer) return [];
    return this.#buffer.takeAll();
  }

  /** The connections of a run, one after another, until the run ends. Never rejects. */
  async #lifecycle(run: Run, first: Session): Promise<void> {
    try {
      let session: Session | undefined = first;
      while (session) {
        const peer = await this.#pump(run, session);
        this.#setState(run, "closing");
        await this.#shutdown(run, session, peer);
        if (run.abort.signal.aborted || !this.#opts.reconnect.enabled) break;
        session = await this.#reconnect(run);
      }
    } catch (error) {
      this.#report("wse: engine lifecycle failed (this is a bug)", error);
    }
    if (!run.deadline) await this.#finish(run); // stop() finishes its own run
  }

  #activate(run: Run, s: Session): void {
    s.state = "open";
    run.session = s;
    s.span = this.#tel.start(`session ${this.#dest}`, SpanKind.INTERNAL, {
      ...this.#serverAttrs(),
      [ATTR.CLIENT_ID]: s.id,
    });
    this.#tel.counts.connections++;
    const host: ConnectionHost = {
      id: s.id,
      send: (data) => this.#send(s, data),
      // The engine's own operations, called by name from handlers (main thread or worker).
      call: (op) => {
        if (op === "restart") return this.#restart(s);
        if (op === "exit") return this.#exit(run);
        throw new TypeError(`the engine has no operation "${op}"`);
      },
      reportError: (error, info) => this.#readError(run, s, error, info.workerId),
    };
    s.dispatch = run.dispatcher.open(host);
    this.#setState(run, "open");
    if (this.#opts.heartbeat) void this.#heartbeat(run, s, this.#opts.heartbeat);
    void this.#flush(run, s);
  }

  /** Pings every interval; a late pong drops the connection (the pump then sees 1006). */
  async #heartbeat(
    run: Run,
    s: Session,
    hb: { intervalMs: number; timeoutMs: number },
  ): Promise<void> {
    const conn = s.conn!;
    const signal = s.life.signal;
    // Bounded by the session: the sleep ends when it starts closing.
    while (!signal.aborted) {
      try {
        await sleep(hb.intervalMs, signal);
        await conn.ping(hb.timeoutMs);
      } catch (error) {
        // A ping that lost the race with a closing socket: the close itself is reported.
        if (signal.aborted || conn.isClosed || error instanceof ConnectionClosedError) return;
        this.#readError(run, s, error);
        if (!(error instanceof NotSupportedError)) conn.terminate();
        return;
      }
    }
  }

  /**
   * Moves messages from the connection into the dispatcher until the session must close.
   * Resolves with how the peer closed, or undefined when we were asked to close. While a
   * `request()` waits, each message is offered to it first. Once the socket is closed, a
   * dispatcher that takes nothing for `stopTimeoutMs` (a held lock, a hung handler) cannot keep
   * the session open: what is left is dropped and reported as one `UndeliveredError`.
   */
  #pump(run: Run, s: Session): Promise<CloseInfo | undefined> {
    const requests = this.#requests;
    const offer = (m: WireMessage) => requests.offer(m);
    const p = pump(s.conn!, s.dispatch!, {
      offer: () => requests.size > 0 ? offer : undefined,
      observe: this.#opts.telemetry === false
        ? undefined
        : { telemetry: this.#tel, destination: this.#dest, clientId: s.id },
      stallMs: this.#opts.stopTimeoutMs,
      onUndelivered: (n) =>
        this.#readError(run, s, new UndeliveredError(n, this.#opts.stopTimeoutMs)),
    });
    s.onInterrupt = () => p.stop();
    if (s.closeRequest) p.stop();
    return p.done.finally(() => {
      s.onInterrupt = undefined;
    });
  }

  /** Ends a session once: `onClose`, then (when we close) the close handshake. */
  async #shutdown(run: Run, s: Session, peer: CloseInfo | undefined): Promise<void> {
    s.state = "closing";
    s.life.abort();
    s.dispatch?.end();
    // Requests whose message is still in the offline buffer were not sent on this session.
    this.#requests.failAll(
      new ConnectionClosedError("the connection closed before a response arrived", peer),
      false,
    );
    if (peer) s.sendsClosed = true;
    const ctx: CloseContext = {
      ...this.#sessionContext(run, s),
      willReconnect: this.#opts.reconnect.enabled && !run.abort.signal.aborted,
    };
    let frame: CloseFrame | void = undefined;
    try {
      frame = await within(
        Promise.resolve().then(() =>
          this.#client.onClose
            ? this.#tel.run("callback onClose", SpanKind.INTERNAL, {
              [ATTR.CALLBACK]: "onClose",
              [ATTR.CLOSE_CODE]: peer?.code ?? 0,
            }, () =>
              this.#client.onClose!(peer, ctx), this.#within(s))
            : undefined
        ),
        { timeoutMs: this.#left(run), what: "onClose" },
      );
    } catch (error) {
      this.#closeError(
        new CloseError("onClose failed", { code: 1001, reason: "going away" }, error),
      );
    }
    s.sendsClosed = true;
    if (!peer) {
      let code = 1001;
      let reason = "going away";
      if (frame) {
        const r = frame.reason ?? "";
        if (!validCloseCode(frame.code) || new TextEncoder().encode(r).byteLength > 123) {
          this.#closeError(
            new CloseError(
              "onClose returned an invalid close frame (code 1000-1003, 1007-1014, 3000-4999; " +
                "reason at most 123 bytes); sent 1001 instead",
              { code: Number(frame.code), reason: r },
            ),
          );
        } else {
          code = frame.code;
          reason = r;
        }
      }
      const conn = s.conn!;
      try {
        const left = this.#left(run);
        // Adapters bound their own close; the grace bounds one that does not.
        const info = await within(conn.close(code, reason, left), {
          timeoutMs: left + 1000,
          what: "close handshake",
        });
        if (!info.wasClean && info.initiator === "local") {
          this.#closeError(
            new CloseError("the peer did not complete the close handshake", { code, reason }),
          );
        }
      } catch (error) {
        conn.terminate();
        this.#closeError(new CloseError("closing the connection failed", { code, reason }, error));
      }
    }
    s.state = "ended";
    this.#tel.counts.connections--;
    if (s.span) {
      const close = peer ??
        { code: frame ? frame.code : 1001, reason: frame?.reason ?? "", wasClean: true };
      s.span.setAttributes({
        [ATTR.CLOSE_CODE]: close.code,
        [ATTR.CLOSE_REASON]: close.reason,
        [ATTR.CLOSE_CLEAN]: close.wasClean,
      });
      s.span.end();
    }
  }

  /** The session's span as parent: callbacks and the user's own spans nest under it. */
  #within(s: Session) {
    return s.span ? otelTrace.setSpan(otelContext.active(), s.span) : undefined;
  }

  #serverAttrs() {
    const url = this.#opts.url;
    return {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.SERVER_ADDRESS]: url.hostname,
      [ATTR.SERVER_PORT]: Number(url.port) || (url.protocol === "wss:" ? 443 : 80),
    };
  }

  /** The retry loop. Resolves with an open session, or undefined when it gave up or was ended. */
  async #reconnect(run: Run): Promise<Session | undefined> {
    this.#setState(run, "reconnecting");
    const rc = this.#opts.reconnect;
    const signal = run.abort.signal;
    // Bounded: every iteration counts a failure and ends at maxRetries, or stop()/exit() abort.
    for (let failures = 0; failures < rc.maxRetries; failures++) {
      if (signal.aborted) return undefined;
      const delay = fullJitterDelay(failures, rc, rc.random);
      try {
        await rc.sleep(delay, signal);
      } catch {
        return undefined; // interrupted by stop() / exit()
      }
      if (signal.aborted) return undefined;
      const span = this.#tel.start(`reconnect ${this.#dest}`, SpanKind.INTERNAL, {
        ...this.#serverAttrs(),
        [ATTR.RETRY_COUNT]: failures,
        [ATTR.RETRY_DELAY]: Math.round(delay),
      });
      try {
        const session = await this.#open(run, true);
        span?.end();
        this.#tel.reconnect("ok");
        return session;
      } catch (error) {
        if (span) {
          failSpan(span, error);
          span.end();
        }
        this.#tel.reconnect(error instanceof Error ? error.name : "Error");
        if (signal.aborted) return undefined;
        const willRetry = failures + 1 < rc.maxRetries;
        if (!this.#client.onRestartError) {
          this.#report("wse: a reconnect attempt failed (no client.onRestartError)", error);
          if (!willRetry) {
            this.#report(
              `wse: gave up reconnecting after ${failures + 1} failed attempt(s) ` +
                "(reconnect.maxRetries); the engine stopped",
            );
          }
          continue;
        }
        await this.#callback(
          "onRestartError",
          () =>
            this.#client.onRestartError?.(error, failures, {
              exit: () => this.#exit(run),
              willRetry,
            }),
        );
      }
    }
    return undefined;
  }

  /**
   * Dials and runs `onOpen` within `openTimeoutMs`, then activates the session; on any failure
   * closes what it opened.
   */
  async #open(run: Run, restarting: boolean): Promise<Session> {
    const s = new Session();
    run.session = s;
    try {
      await within((signal) => this.#attempt(run, s, restarting, signal), {
        timeoutMs: this.#opts.openTimeoutMs,
        signal: run.abort.signal,
        what: "open (dial + onOpen)",
      });
      // stop() / exit() may have come in the turns since onOpen returned: refuse, never activate
      // a session of a run that is ending (its state would read "open" while stopping).
      if (run.abort.signal.aborted) throw run.abort.signal.reason;
      this.#activate(run, s);
      return s;
    } catch (error) {
      s.state = "ended";
      s.sendsClosed = true;
      s.life.abort();
      const conn = s.conn;
      if (conn) {
        const left = this.#left(run);
        await within(conn.close(1001, "websocket client failed to start", left), {
          timeoutMs: left + 1000,
        }).catch(() => conn.terminate());
      }
      throw error;
    }
  }

  async #attempt(run: Run, s: Session, restarting: boolean, signal: AbortSignal): Promise<void> {
    const o = this.#opts;
    const dialOptions: DialOptions = {
      protocols: o.protocols,
      headers: o.headers,
      handshakeTimeoutMs: o.openTimeoutMs,
      maxPayload: o.maxPayload,
      readHighWaterMark: o.readHighWaterMark,
      readLowWaterMark: o.readLowWaterMark,
      maxQueuedBytes: o.maxQueuedBytes,
      overflow: o.overflow,
      signal,
      onError: (error) => this.#readError(run, s, error),
    };
    const conn = await o.adapter.dial(o.url, dialOptions);
    if (signal.aborted) {
      conn.terminate();
      throw signal.reason;
    }
    s.conn = conn;
    s.handshake = conn.handshake;
    const ctx: OpenContext = { ...this.#sessionContext(run, s), restarting };
    if (this.#client.onOpen) {
      await this.#tel.run("callback onOpen", SpanKind.INTERNAL, {
        [ATTR.CALLBACK]: "onOpen",
        [ATTR.CLIENT_ID]: s.id,
      }, () => this.#client.onOpen!(ctx));
    }
    if (s.closeRequest) {
      if (s.closeRequest === "exit") throw new AbortError("onOpen called exit()");
      throw new AbortError("onOpen called restart()");
    }
    if (signal.aborted) throw signal.reason;
  }

  // ---- sending ----

  #checkData(what: string, data: unknown): TypeError | undefined {
    if (typeof data === "string" || data instanceof Uint8Array) return undefined;
    return new TypeError(`${what}(data): data must be a string or a Uint8Array`);
  }

  /** Where a message from `send()`/`request()` goes now. */
  #route(): Route {
    const run = this.#run;
    if (!run) {
      return {
        kind: "refuse",
        error: new ConnectionClosedError("the engine is not started (call start() first)"),
      };
    }
    if (run.deadline !== undefined || run.exited || run.finished) {
      return { kind: "refuse", error: new ConnectionClosedError("the engine is stopping") };
    }
    const s = run.session;
    const buffer = this.#buffer;
    if (s && this.#canSend(run, s) && !(buffer && (buffer.length > 0 || s.flushing))) {
      return { kind: "direct", session: s };
    }
    if (buffer && this.#state !== "starting") return { kind: "buffer", buffer };
    return {
      kind: "refuse",
      error: new ConnectionClosedError(
        this.#state === "starting"
          ? "the engine is starting: await start() before sending"
          : `no open connection (the engine is ${this.#state}); the sendBuffer option queues ` +
            "sends while reconnecting",
      ),
    };
  }

  /** True while `s` is the run's open session and its socket can take messages. */
  #canSend(run: Run, s: Session): boolean {
    return this.#run === run && run.session === s && run.deadline === undefined &&
      s.state === "open" && !s.closeRequest && !s.sendsClosed && s.conn !== undefined &&
      !s.conn.isClosed;
  }

  /** Queues `data`; reports what "drop-oldest" pushed out; throws when it is not queued. */
  #enqueue(buffer: SendBuffer, data: OutgoingData): BufferedMessage {
    const { entry, dropped } = buffer.push(data);
    for (const old of dropped) {
      this.#dropped(
        old.data,
        new SendBufferFullError(
          "drop-oldest",
          buffer.length >= buffer.maxMessages ? "maxMessages" : "maxBytes",
          buffer.length,
          buffer.bytes,
        ),
      );
    }
    return entry;
  }

  /**
   * Sends the offline buffer on a session that just opened, oldest first, one message at a
   * time (each once the socket accepted the previous one). New sends queue behind it until it
   * is empty. It stops when the session stops being open; the rest waits for the next one.
   */
  async #flush(run: Run, s: Session): Promise<void> {
    const buffer = this.#buffer;
    if (!buffer || s.flushing) return;
    s.flushing = true;
    try {
      // Bounded: every turn takes one message; it ends when the queue is empty or the session
      // can no longer send.
      while (buffer.length > 0 && this.#canSend(run, s)) {
        const entry = buffer.shift()!;
        entry.onSent?.();
        try {
          await s.conn!.send(entry.data);
        } catch {
          // The socket closed while taking it: it may have reached the server or not. It is
          // never sent again (no duplicates); the loss is reported.
          this.#dropped(
            entry.data,
            new ConnectionClosedError(
              "a buffered message was being sent when the connection closed; it may not have " +
                "reached the server and is not sent again",
            ),
          );
          return;
        }
      }
    } finally {
      s.flushing = false;
    }
  }

  #dropped(message: OutgoingData, error: Error): void {
    this.#tel.drop(
      error.name === "SendBufferFullError" ? "send-buffer-full" : "send-buffer-closed",
    );
    const onDrop = this.#opts.sendBuffer?.onDrop;
    if (!onDrop) {
      this.#report("wse: a buffered message was not sent (no sendBuffer.onDrop)", error);
      return;
    }
    try {
      onDrop(message, error);
    } catch (e) {
      this.#report("wse: sendBuffer.onDrop threw", e);
    }
  }

  // ---- controls ----

  #sessionContext(run: Run, s: Session, workerId = "main"): SessionContext {
    return {
      sessionId: s.id,
      workerId,
      handshake: s.handshake,
      send: (data) => this.#send(s, data),
      restart: () => this.#restart(s),
      exit: () => this.#exit(run),
      pause: (signal) => this.#pauseSession(run, s, signal),
    };
  }

  #send(s: Session, data: OutgoingData): Promise<void> {
    if (s.sendsClosed || s.state === "ended" || !s.conn) {
      return Promise.reject(new ConnectionClosedError("the session has ended"));
    }
    const tel = this.#tel;
    const size = typeof data === "string" ? data.length : data.byteLength;
    tel.counts.messagesOut++;
    tel.counts.bytesOut += size;
    if (!tel.sampleMessage()) return s.conn.send(data);
    const conn = s.conn;
    return tel.run(`send ${this.#dest}`, SpanKind.PRODUCER, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: "send",
      [ATTR.OPERATION_TYPE]: "send",
      [ATTR.DESTINATION]: this.#dest,
      [ATTR.CLIENT_ID]: s.id,
      [ATTR.BODY_SIZE]: size,
    }, () => conn.send(data));
  }

  #restart(s: Session): void {
    if (s.state === "opening") s.closeRequest ??= "restart";
    else s.requestClose("restart");
  }

  #exit(run: Run): void {
    if (run.exited || run.finished) return;
    run.exited = true;
    const s = run.session;
    if (s?.state === "opening") s.closeRequest ??= "exit";
    else s?.requestClose("exit");
    run.abort.abort(new AbortError("exit() was called"));
  }

  #pauseSession(run: Run, s: Session, signal?: AbortSignal): Promise<PauseLease> {
    if (s.state === "opening" && s.conn) {
      return Promise.resolve(directLease(s, s.conn, (data) => this.#send(s, data)));
    }
    if (s.state !== "open" || run.session !== s || !s.dispatch) {
      return Promise.reject(new ConnectionClosedError("the session has ended"));
    }
    return s.dispatch.pause(signal);
  }

  // ---- reporting ----

  /**
   * Reports to `onReadError` (or the logger) with the context of the session's own run. Once
   * that run ended (e.g. a handler that outlived stop() throws), nothing is reported: a later run
   * must not get its error, nor a context whose `exit()` would stop the later run.
   */
  #readError(run: Run, s: Session, error: unknown, workerId?: string): void {
    if (run.finished) return;
    if (error instanceof ReadOverflowError) this.#tel.drop("read-overflow");
    else if (error instanceof UndeliveredError) this.#tel.drop("undelivered");
    if (!this.#client.onReadError) {
      this.#report("wse: read error (no client.onReadError)", error);
      return;
    }
    void this.#callback(
      "onReadError",
      () => this.#client.onReadError?.(error, this.#sessionContext(run, s, workerId)),
    );
  }

  #closeError(error: CloseError): void {
    if (!this.#client.onCloseError) {
      this.#report("wse: close error (no client.onCloseError)", error);
      return;
    }
    void this.#callback("onCloseError", () => this.#client.onCloseError?.(error));
  }

  async #callback(name: string, call: () => unknown): Promise<void> {
    try {
      await this.#tel.run(`callback ${name}`, SpanKind.INTERNAL, { [ATTR.CALLBACK]: name }, call);
    } catch (error) {
      this.#report(`wse: client.${name} threw`, error);
    }
  }

  /** An error no callback handles: to the rate-limited logger (nowhere with `logger: false`). */
  #report(message: string, error?: unknown): void {
    this.#log?.log(message, error);
  }
}

/**
 * The pause lease `onOpen` gets: dispatch has not started, so it reads the connection directly.
 * It stops working once `onOpen` has returned and dispatch started.
 */
function directLease(
  s: Session,
  conn: AdapterConnection,
  send: (data: OutgoingData) => Promise<void>,
): PauseLease {
  return new Lease({
    take: () => {
      if (s.state !== "opening") {
        throw new EngineStateError("read", "dispatching (onOpen returned)");
      }
      return conn.poll() ?? (conn.isClosed ? null : undefined);
    },
    changed: (signal) => within(conn.readable(), { signal }),
    send,
    release: noop,
  });
}
