/**
 * The dispatcher that runs handlers on the main thread: one queue for every connection, one
 * handler at a time, in arrival order (async handlers are awaited). Its read lock is an async
 * mutex taken around every "take the next entry"; a lease takes its own connection's messages out
 * of the queue while the others wait.
 *
 * @module
 */

import { ConnectionClosedError, type OutgoingData, type WireMessage } from "../transport/types.ts";
import { type Deferred, deferred, within } from "../util/async.ts";
import { Turns } from "../util/turn.ts";
import { Lease } from "./lease.ts";
import { ATTR, carrierOf, processMessage, type Telemetry } from "../telemetry/telemetry.ts";
import {
  type ConnectionHost,
  type DispatchConnection,
  type Dispatcher,
  type EndOptions,
  type HandlerContext,
  type Handlers,
  LeaseResumedError,
  type PauseLease,
  type TraceCarrier,
} from "./types.ts";

/**
 * Options of {@linkcode InlineDispatcher}.
 *
 * @example
 * ```ts
 * import type { InlineOptions } from "./inline.ts";
 * const options: InlineOptions = { maxQueued: 4096 };
 * ```
 */
export interface InlineOptions<C = HandlerContext> {
  /** Messages queued (all connections together) before `push` refuses. Default 1024. */
  maxQueued?: number;
  /**
   * Messages one connection may have queued before its `push` refuses (the others go on), so a
   * flooding connection cannot fill the queue for everyone. Default `maxQueued`.
   */
  maxQueuedPerConnection?: number;
  /** Builds the context handlers get from the base one (the engine and the server add names). */
  context?: (base: HandlerContext) => C;
  /** Where traced messages' `process` spans go (the owner's). */
  telemetry?: Telemetry;
}

const OPEN = 0, MESSAGE = 1, CLOSE = 2;

interface Entry {
  kind: typeof OPEN | typeof MESSAGE | typeof CLOSE;
  conn: InlineConnection;
  message?: WireMessage;
  info?: unknown;
  trace?: TraceCarrier;
}

class InlineConnection implements DispatchConnection {
  readonly host: ConnectionHost;
  // deno-lint-ignore no-explicit-any
  readonly #d: InlineDispatcher<any>;
  /** Entries of this connection in the queue. */
  queued = 0;
  /** Message entries of this connection in the queue (what its bound counts). */
  messages = 0;
  ended = false;
  discard = false;
  dropped = 0;
  /** Leases taken outside a handler: they end with the connection. */
  leases?: Set<Lease>;
  /** Resolved once its share of the queue drained to half (while its pump waits). */
  room?: Deferred<void>;
  /** What the handlers get, built on first use: an idle connection needs none. */
  #ctx: unknown;
  readonly #base: InlineContext;
  // deno-lint-ignore no-explicit-any
  constructor(d: InlineDispatcher<any>, host: ConnectionHost) {
    this.#d = d;
    this.host = host;
    this.#base = new InlineContext(d, this);
  }
  get base(): InlineContext {
    return this.#base;
  }
  // deno-lint-ignore no-explicit-any
  get ctx(): any {
    return this.#ctx ??= this.#d.shape(this.#base);
  }
  get id(): string {
    return this.host.id;
  }
  push(message: WireMessage, trace?: TraceCarrier): boolean {
    return this.#d.offer(this, message, trace);
  }
  writable(): Promise<void> {
    return this.#d.writable(this);
  }
  pause(signal?: AbortSignal): Promise<PauseLease> {
    return this.#d.pauseFor(this, signal, false);
  }
  end(options: EndOptions = {}): void {
    this.#d.endConnection(this, options);
  }
}

/** The base context of a connection's handlers on the main thread: methods, no closures. */
class InlineContext implements HandlerContext {
  readonly workerId = "main";
  trace?: TraceCarrier = undefined;
  // deno-lint-ignore no-explicit-any
  readonly #d: InlineDispatcher<any>;
  readonly #conn: InlineConnection;
  // deno-lint-ignore no-explicit-any
  constructor(d: InlineDispatcher<any>, conn: InlineConnection) {
    this.#d = d;
    this.#conn = conn;
  }
  get connectionId(): string {
    return this.#conn.host.id;
  }
  send(data: OutgoingData): Promise<void> {
    return this.#conn.host.send(data);
  }
  pause(signal?: AbortSignal): Promise<PauseLease> {
    return this.#d.pauseFor(this.#conn, signal, true);
  }
  call(op: string, ...args: unknown[]): Promise<unknown> {
    const host = this.#conn.host;
    return Promise.resolve().then(() => host.call(op, args));
  }
}

/**
 * Runs handlers on the main thread, serially, with a bounded queue and a read lock.
 *
 * @example
 * ```ts
 * import { InlineDispatcher } from "./inline.ts";
 * const d = new InlineDispatcher({ onMessage: (m) => console.log(m.data) });
 * await d.init();
 * const c = d.open({
 *   id: "c1",
 *   send: () => Promise.resolve(),
 *   call: () => undefined,
 *   reportError: (e) => console.error(e),
 * });
 * c.push({ type: "text", data: "hi" });
 * c.end();
 * await d.close(1000);
 * ```
 */
export class InlineDispatcher<C = HandlerContext> implements Dispatcher {
  readonly #handlers: Handlers<C>;
  readonly #max: number;
  readonly #maxPer: number;
  readonly #context?: (base: HandlerContext) => C;
  readonly #telemetry?: Telemetry;
  #queue: (Entry | undefined)[] = [];
  #head = 0;
  /** Message entries queued (what the bound counts). */
  #messages = 0;
  #locked = false;
  #lockWaiters: { grant(): void; fail(e: unknown): void }[] = [];
  #changed?: Deferred<void>; // created only when someone waits: no promise per message
  /** Waiters for room in the queue, and connections waiting for room in their own share. */
  #room?: Deferred<void>;
  readonly #blocked = new Set<InlineConnection>();
  #closed = false;
  #loop?: Promise<void>;
  #inFlight?: Promise<unknown>;
  /** The connection whose handler runs now, and the leases that handler took. */
  #running?: { conn: InlineConnection; leases: Lease[] };

  /** `handlers` run for every connection; without `onMessage`, messages are taken and dropped. */
  constructor(handlers: Handlers<C>, options: InlineOptions<C> = {}) {
    this.#handlers = handlers;
    this.#max = options.maxQueued ?? 1024;
    this.#maxPer = Math.min(this.#max, options.maxQueuedPerConnection ?? this.#max);
    this.#context = options.context;
    this.#telemetry = options.telemetry;
  }

  /** Messages queued, not yet handled. */
  get queued(): number {
    return this.#messages;
  }

  /** Starts the dispatch loop. */
  init(): Promise<void> {
    this.#loop ??= this.#run();
    return Promise.resolve();
  }

  /** A connection opens; its `onConnect` runs before its messages. */
  open(host: ConnectionHost, info?: unknown): DispatchConnection {
    const conn = new InlineConnection(this, host);
    if (this.#handlers.onConnect) this.#enqueue({ kind: OPEN, conn, info });
    return conn;
  }

  /** The context handlers get, from a connection's base one. */
  shape(base: HandlerContext): C {
    return this.#context ? this.#context(base) : base as C;
  }

  /** Queues a message of `conn`; false when full. */
  offer(conn: InlineConnection, message: WireMessage, trace?: TraceCarrier): boolean {
    if (this.#closed || conn.ended) return true; // nothing runs any more: taken and dropped
    if (this.#messages >= this.#max || conn.messages >= this.#maxPer) return false;
    this.#messages++;
    conn.messages++;
    this.#enqueue({ kind: MESSAGE, conn, message, trace });
    return true;
  }

  /**
   * Resolves when the queue has room for `conn` (or the dispatcher closed). Waiters are woken
   * once the queue (or the connection's share) has drained to half, not at every message taken:
   * with a thousand connections blocked, a wake-up per message would cost a thousand.
   */
  async writable(conn: InlineConnection): Promise<void> {
    // Bounded: each turn waits for a drain to half or the end of the connection or dispatcher.
    while (!this.#closed && !conn.ended) {
      if (conn.messages >= this.#maxPer) {
        if (!conn.room) {
          conn.room = deferred();
          this.#blocked.add(conn);
        }
        await conn.room.promise;
      } else if (this.#messages >= this.#max) await (this.#room ??= deferred()).promise;
      else return;
    }
  }

  #wakeConnection(conn: InlineConnection): void {
    const d = conn.room;
    if (!d) return;
    conn.room = undefined;
    this.#blocked.delete(conn);
    d.resolve();
  }

  #wakeAll(): void {
    const d = this.#room;
    this.#room = undefined;
    d?.resolve();
  }

  /** Ends `conn`: its queued messages are handled (or dropped), then `onDisconnect`. */
  endConnection(conn: InlineConnection, options: EndOptions): void {
    if (conn.ended) return;
    conn.ended = true;
    conn.discard = options.discard ?? false;
    this.#wakeConnection(conn);
    if (conn.leases) {
      for (const lease of conn.leases) {
        lease.revoke(new ConnectionClosedError("the connection ended"));
      }
      conn.leases = undefined;
    }
    this.#enqueue({ kind: CLOSE, conn, info: options.info });
  }

  /** Stops: waits up to `timeoutMs` for the handler in flight; queued messages are abandoned. */
  async close(timeoutMs: number): Promise<{ abandoned: number }> {
    if (this.#closed) return { abandoned: 0 };
    this.#closed = true;
    const abandoned = this.#messages;
    this.#queue = [];
    this.#head = 0;
    this.#messages = 0;
    for (const w of this.#lockWaiters.splice(0)) {
      w.fail(new ConnectionClosedError("the dispatcher closed"));
    }
    this.#wakeAll();
    for (const c of [...this.#blocked]) this.#wakeConnection(c);
    this.#notify();
    const inFlight = this.#inFlight;
    if (inFlight) await within(inFlight, { timeoutMs, what: "handler in flight" }).catch(() => {});
    return { abandoned };
  }

  /** Takes the read lock for `conn`. Inside one of its handlers the lease ends with the handler. */
  async pauseFor(
    conn: InlineConnection,
    signal: AbortSignal | undefined,
    fromContext: boolean,
  ): Promise<PauseLease> {
    if (conn.ended) throw new ConnectionClosedError("the connection ended");
    const waiting = this.#acquire(signal);
    if (waiting) await waiting;
    if (conn.ended) {
      this.#release();
      throw new ConnectionClosedError("the connection ended");
    }
    const run = fromContext && this.#running?.conn === conn ? this.#running : undefined;
    const lease = new Lease({
      take: () => this.#takeFor(conn),
      changed: (s) => within(this.#changes(), { signal: s }),
      send: (data) => conn.host.send(data),
      release: () => {
        conn.leases?.delete(lease);
        this.#release();
        this.#notify();
      },
    });
    if (run) run.leases.push(lease);
    else (conn.leases ??= new Set()).add(lease);
    return lease;
  }

  // ---- internals ----

  #enqueue(entry: Entry): void {
    entry.conn.queued++;
    this.#queue.push(entry);
    this.#notify();
  }

  #notify(): void {
    const d = this.#changed;
    if (d) {
      this.#changed = undefined;
      d.resolve();
    }
  }

  #changes(): Promise<void> {
    return (this.#changed ??= deferred<void>()).promise;
  }

  /** Takes the next entry (skipping the holes leases left). */
  #take(): Entry | undefined {
    const q = this.#queue;
    while (this.#head < q.length && q[this.#head] === undefined) this.#head++;
    if (this.#head >= q.length) {
      if (q.length) {
        this.#queue = [];
        this.#head = 0;
      }
      return undefined;
    }
    const entry = q[this.#head]!;
    q[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
    this.#taken(entry);
    return entry;
  }

  #taken(entry: Entry): void {
    const conn = entry.conn;
    conn.queued--;
    if (entry.kind !== MESSAGE) return;
    this.#messages--;
    conn.messages--;
    if (conn.room && conn.messages <= this.#maxPer >> 1) this.#wakeConnection(conn);
    if (this.#room && this.#messages <= this.#max >> 1) this.#wakeAll();
  }

  /** A lease's take: the connection's next message, `undefined`, or `null` once it is over. */
  #takeFor(conn: InlineConnection): WireMessage | undefined | null {
    if (conn.queued > 0) {
      const q = this.#queue;
      for (let i = this.#head; i < q.length; i++) {
        const e = q[i];
        if (e === undefined || e.conn !== conn) continue;
        if (e.kind === CLOSE) return null;
        if (e.kind === OPEN) continue;
        q[i] = undefined;
        this.#taken(e);
        return e.message;
      }
    }
    return conn.ended ? null : undefined;
  }

  /** Takes the lock: synchronously when free, else in FIFO order. */
  #acquire(signal?: AbortSignal): Promise<void> | undefined {
    if (this.#closed) return Promise.reject(new ConnectionClosedError("the dispatcher closed"));
    signal?.throwIfAborted();
    if (!this.#locked) {
      this.#locked = true;
      return undefined;
    }
    return within((s) =>
      new Promise<void>((resolve, reject) => {
        const waiter = { grant: resolve, fail: reject };
        this.#lockWaiters.push(waiter);
        s.addEventListener("abort", () => {
          const i = this.#lockWaiters.indexOf(waiter);
          if (i >= 0) this.#lockWaiters.splice(i, 1);
          else this.#release(); // granted in the same turn as the abort: hand it on
        }, { once: true });
      }), { signal });
  }

  #release(): void {
    const next = this.#lockWaiters.shift();
    if (next) next.grant(); // hand-off: the lock stays taken
    else this.#locked = false;
  }

  async #run(): Promise<void> {
    // Handlers that settle at once chain by microtasks: every 64 of them, give the event loop
    // a turn so socket reads and timers are not starved.
    const turns = new Turns();
    let streak = 0;
    try {
      while (!this.#closed) {
        if (++streak >= 64) {
          streak = 0;
          await turns.next();
        }
        if (this.#head >= this.#queue.length) {
          streak = 0;
          await this.#changes();
          continue;
        }
        const waiting = this.#acquire();
        if (waiting) {
          try {
            await waiting;
          } catch {
            return; // closed while waiting for a pause to end
          }
        }
        const entry = this.#take();
        this.#release();
        if (entry) await this.#handle(entry);
      }
    } finally {
      turns.close();
    }
  }

  async #handle(entry: Entry): Promise<void> {
    const conn = entry.conn;
    const h = this.#handlers;
    if (entry.kind === MESSAGE && conn.discard) {
      conn.dropped++;
      return;
    }
    const run = { conn, leases: [] as Lease[] };
    this.#running = run;
    try {
      let result: unknown;
      if (entry.kind === MESSAGE) {
        const base = conn.base;
        const tel = this.#telemetry;
        result = entry.trace && tel
          ? processMessage(tel, entry.trace, { [ATTR.CLIENT_ID]: conn.id }, (span) => {
            base.trace = carrierOf(span) ?? entry.trace;
            return h.onMessage?.(entry.message!, conn.ctx);
          })
          : (base.trace = undefined, h.onMessage?.(entry.message!, conn.ctx));
      } else if (entry.kind === OPEN) result = h.onConnect?.(conn.ctx, entry.info);
      else result = h.onDisconnect?.(entry.info, conn.ctx);
      if (result && typeof (result as Promise<unknown>).then === "function") {
        this.#inFlight = result as Promise<unknown>;
        await result;
      }
    } catch (error) {
      this.#report(conn, error);
    } finally {
      this.#inFlight = undefined;
      this.#running = undefined;
      for (const lease of run.leases) lease.revoke(new LeaseResumedError());
    }
    if (entry.kind === CLOSE) {
      try {
        conn.host.ended?.({ dropped: conn.dropped });
      } catch (error) {
        this.#report(conn, error);
      }
    }
  }

  #report(conn: InlineConnection, error: unknown): void {
    try {
      this.#handlers.onReadError?.(error, conn.ctx);
    } catch { /* the original error is still reported below */ }
    try {
      conn.host.reportError(error, { workerId: "main" });
    } catch { /* the host's reporting must not stop dispatch */ }
  }
}
