/**
 * The pump: moves one connection's messages into its dispatch connection, for the engine and the
 * server alike. On the raw path (a connection with `setSink`, a dispatcher with `deliver`) each
 * payload goes straight from the parser into the dispatcher; otherwise the connection's queue is
 * drained synchronously from its readable signal. Either way, when the dispatcher is full the pump
 * stops taking messages (the connection then stops reading its socket) until it has room.
 *
 * @module
 */

import type { CloseInfo, MessageSink, WireMessage } from "../transport/types.ts";
import { ATTR, carrierOf, SpanKind, type Telemetry } from "../telemetry/telemetry.ts";
import { deferred, TimeoutError, within } from "../util/async.ts";
import type { DispatchConnection, TraceCarrier } from "./types.ts";

/** The read side of a connection, as the pump needs it (an adapter connection fits). */
export interface PumpSource {
  /** Takes the next queued message, or `undefined`. */
  poll(): WireMessage | undefined;
  /** The one function called synchronously when a message is queued or the stream ends. */
  onReadable(listener: (() => void) | undefined): void;
  /** The raw fast path, where the connection has one. */
  setSink?(sink: MessageSink | undefined): void;
  /** Settles once the connection closed and every message was taken. */
  readonly closed: Promise<CloseInfo>;
  /** True once the socket is closed (messages may still be queued). */
  readonly isClosed: boolean;
}

/** A running pump. */
export interface Pump {
  /** How the connection ended, or `undefined` once the pump was stopped. */
  readonly done: Promise<CloseInfo | undefined>;
  /** Stops taking messages (those not taken stay with the connection); `done` resolves. */
  stop(): void;
}

const utf8 = new TextDecoder();

/**
 * Who is pumping, for telemetry: a `receive {destination}` span per traced message (its context
 * travels with the message to the handler) and the message and byte counts.
 */
export interface PumpTelemetry {
  readonly telemetry: Telemetry;
  /** The span names' destination (a URL path, a route). */
  readonly destination: string;
  /** The session's or connection's id (`messaging.client.id`). */
  readonly clientId: string;
}

/** Options of {@linkcode pump}. */
export interface PumpOptions {
  /**
   * Sees each message first and may consume it (return true): the engine answers pending
   * `request()`s this way. Messages are then built even on the raw path, so return a function
   * only while it has something to match.
   */
  offer?: () => ((message: WireMessage) => boolean) | undefined;
  /** Counts and traces what goes through. */
  observe?: PumpTelemetry;
  /**
   * Once the socket is closed, how long the dispatcher may take nothing before the messages
   * still queued are dropped — counted and given to `onUndelivered` — so a held lock or a hung
   * handler cannot keep a dead connection's session open. While the socket is open the pump
   * waits as long as it takes: that is read back-pressure. Default: wait forever.
   */
  stallMs?: number;
  /** How many messages were dropped after a stall (see `stallMs`). */
  onUndelivered?: (count: number) => void;
}

/**
 * Starts pumping `source` into `target` until the connection ends (`done` resolves with how) or
 * `stop()`.
 *
 * @example
 * ```ts ignore
 * import { pump } from "./pump.ts";
 * const p = pump(connection, dispatcher.open(host));
 * const closeInfo = await p.done;
 * ```
 */
export function pump(
  source: PumpSource,
  target: DispatchConnection,
  options: PumpOptions = {},
): Pump {
  return new Pumping(source, target, options);
}

// One object with methods, not a bundle of closures: a server runs one pump per connection.
// It is the connection's sink on the raw path.
class Pumping implements Pump, MessageSink {
  readonly #source: PumpSource;
  readonly #target: DispatchConnection;
  readonly #o: PumpOptions;
  readonly #deliver?: (text: boolean, payload: Uint8Array, trace?: TraceCarrier) => boolean;
  readonly #done = deferred<CloseInfo | undefined>();
  #stopped = false;
  /** Raw path: > 0 once the dispatcher stalled past a closed socket (count, drop). */
  #discarding = 0;
  /** Poll path: a message taken from the connection, not yet by the dispatcher. */
  #held: WireMessage | undefined;
  #blocked = false;
  #draining = false;
  #ended = false;
  #peer: CloseInfo | undefined;

  constructor(source: PumpSource, target: DispatchConnection, options: PumpOptions) {
    this.#source = source;
    this.#target = target;
    this.#o = options;
    const deliver = target.deliver;
    if (source.setSink && deliver) {
      this.#deliver = deliver;
      // On the raw path `closed` settles only once every message was delivered (or dropped).
      source.closed.then((info) => {
        if (this.#discarding > 1) options.onUndelivered?.(this.#discarding - 1);
        this.#finish(info);
      });
      source.setSink(this);
      return;
    }
    source.onReadable(() => {
      if (!this.#ended) this.#drain();
    });
    // `closed` settles once the queue is empty; a message held for the dispatcher still goes first.
    source.closed.then((info) => {
      this.#peer = info;
      this.#drain();
    });
    this.#drain();
  }

  get done(): Promise<CloseInfo | undefined> {
    return this.#done.promise;
  }

  stop(): void {
    this.#stopped = true;
    this.#finish(undefined);
  }

  /** Done: `done` settles and the connection no longer calls in. */
  #finish(info: CloseInfo | undefined, error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    // Detached after this turn: this may run inside the connection's own delivery.
    const source = this.#source;
    if (this.#deliver) queueMicrotask(() => source.setSink!(undefined));
    else queueMicrotask(() => source.onReadable(undefined));
    if (error === undefined) this.#done.resolve(info);
    else this.#done.reject(error);
  }

  /** The raw path's sink: a payload view from the parser, valid for this call only. */
  deliver(text: boolean, payload: Uint8Array): boolean {
    if (this.#stopped) return false; // kept by the connection
    if (this.#discarding > 0) {
      this.#discarding++;
      return true;
    }
    const deliver = this.#deliver!;
    const take = this.#o.offer?.();
    if (!take) {
      const tel = this.#o.observe?.telemetry;
      if (!tel) return deliver(text, payload);
      // counted once taken (a refused message is offered again later)
      const ok = tel.sampleMessage()
        ? this.#traced(payload.length, text, (c) => deliver(text, payload, c))
        : deliver(text, payload);
      if (ok) {
        tel.counts.messagesIn++;
        tel.counts.bytesIn += payload.length;
      }
      return ok;
    }
    const message: WireMessage = text
      ? { type: "text", data: utf8.decode(payload) }
      : { type: "binary", data: payload.slice() };
    return take(message) || this.#target.push(message);
  }

  writable(): Promise<void> {
    return this.#whenWritable().then((stalled) => {
      if (stalled) this.#discarding = 1;
    });
  }

  /** A traced message: its receive span is started, the handler gets its context. */
  #traced(size: number, text: boolean, hand: (carrier?: TraceCarrier) => boolean): boolean {
    const observe = this.#o.observe!;
    const span = observe.telemetry.start(`receive ${observe.destination}`, SpanKind.CLIENT, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: "receive",
      [ATTR.OPERATION_TYPE]: "receive",
      [ATTR.DESTINATION]: observe.destination,
      [ATTR.CLIENT_ID]: observe.clientId,
      [ATTR.BODY_SIZE]: size,
      [ATTR.MESSAGE_TYPE]: text ? "text" : "binary",
    });
    const carrier = carrierOf(span);
    if (carrier) carrier.receivedAt = performance.timeOrigin + performance.now();
    try {
      return hand(carrier);
    } finally {
      span?.end();
    }
  }

  /** Resolves true when the dispatcher stalled past a closed socket (see `stallMs`). */
  async #whenWritable(): Promise<boolean> {
    const ready = this.#target.writable();
    const stallMs = this.#o.stallMs;
    if (!stallMs) {
      await ready;
      return false;
    }
    // Bounded: each turn waits at most `stallMs`; it ends once the dispatcher has room, the pump
    // was stopped, or the socket is closed.
    for (;;) {
      try {
        await within(ready, { timeoutMs: stallMs });
        return false;
      } catch (error) {
        if (!(error instanceof TimeoutError) || this.#stopped) return false;
        if (this.#source.isClosed) return true;
      }
    }
  }

  // Runs synchronously from the connection's queue (one call per arriving message, or per batch)
  // and from the dispatcher when it has room again: no promise per message.
  #drain(): void {
    if (this.#stopped || this.#draining || this.#blocked) return;
    this.#draining = true;
    const source = this.#source;
    const target = this.#target;
    const { offer, observe } = this.#o;
    const tel = observe?.telemetry;
    try {
      // Bounded: every turn takes a queued message; it stops when the queue is empty, the
      // dispatcher is full, or the pump was stopped (a handler may stop it synchronously).
      while (!this.#stopped) {
        const retry = this.#held !== undefined; // refused before: not counted or traced again
        const message = this.#held ?? source.poll();
        this.#held = undefined;
        if (message === undefined) {
          if (this.#peer) this.#finish(this.#peer); // closed; the held message went first
          return;
        }
        if (offer?.()?.(message)) continue;
        let accepted: boolean;
        if (tel && !retry) {
          const size = message.type === "text" ? message.data.length : message.data.byteLength;
          tel.counts.messagesIn++;
          tel.counts.bytesIn += size;
          accepted = tel.sampleMessage()
            ? this.#traced(size, message.type === "text", (c) => target.push(message, c))
            : target.push(message);
        } else accepted = target.push(message);
        if (!accepted) {
          this.#held = message;
          this.#blocked = true;
          this.#whenWritable().then((stalled) => {
            this.#blocked = false;
            if (stalled) {
              // The socket is gone and the dispatcher took nothing: drop the rest (reported).
              let n = 1;
              while (source.poll() !== undefined) n++;
              this.#held = undefined;
              this.#o.onUndelivered?.(n);
            }
            this.#drain();
          }, () => this.stop());
          return;
        }
      }
    } catch (error) {
      this.#finish(undefined, error); // a bug: it must not escape into the connection's handler
    } finally {
      this.#draining = false;
    }
  }
}
