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
  const { offer, observe, stallMs, onUndelivered } = options;
  const tel = observe?.telemetry;
  const counts = tel?.counts;
  const spanName = observe ? `receive ${observe.destination}` : "";
  /** A traced message: its receive span is started, the handler gets its context. */
  const traced = (size: number, text: boolean, hand: (carrier?: TraceCarrier) => boolean) => {
    const span = tel!.start(spanName, SpanKind.CLIENT, {
      [ATTR.SYSTEM]: "websocket",
      [ATTR.OPERATION_NAME]: "receive",
      [ATTR.OPERATION_TYPE]: "receive",
      [ATTR.DESTINATION]: observe!.destination,
      [ATTR.CLIENT_ID]: observe!.clientId,
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
  };
  const done = deferred<CloseInfo | undefined>();
  let stopped = false;
  const stop = () => {
    stopped = true;
    done.resolve(undefined);
  };
  /** Resolves true when the dispatcher stalled past a closed socket (see `stallMs`). */
  const whenWritable = async (): Promise<boolean> => {
    const ready = target.writable();
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
        if (!(error instanceof TimeoutError) || stopped) return false;
        if (source.isClosed) return true;
      }
    }
  };
  const deliver = target.deliver;
  if (source.setSink && deliver) {
    let discarding = 0; // > 0 once the dispatcher stalled past a closed socket: count, drop
    // On the raw path `closed` settles only once every message was delivered (or dropped).
    source.closed.then((info) => {
      if (discarding > 1) onUndelivered?.(discarding - 1);
      done.resolve(info);
    });
    source.setSink({
      deliver: (text, payload) => {
        if (stopped) return false; // kept by the connection
        if (discarding > 0) {
          discarding++;
          return true;
        }
        const take = offer?.();
        if (!take) {
          if (!counts) return deliver(text, payload);
          // counted once taken (a refused message is offered again later)
          const ok = tel!.sampleMessage()
            ? traced(payload.length, text, (c) => deliver(text, payload, c))
            : deliver(text, payload);
          if (ok) {
            counts.messagesIn++;
            counts.bytesIn += payload.length;
          }
          return ok;
        }
        const message: WireMessage = text
          ? { type: "text", data: utf8.decode(payload) }
          : { type: "binary", data: payload.slice() };
        return take(message) || target.push(message);
      },
      writable: () =>
        whenWritable().then((stalled) => {
          if (stalled) discarding = 1;
        }),
    });
    void done.promise.then(() => source.setSink!(undefined));
    return { done: done.promise, stop };
  }
  let held: WireMessage | undefined; // taken from the connection, not yet by the dispatcher
  let blocked = false;
  let draining = false;
  let ended = false;
  let peer: CloseInfo | undefined;
  // Runs synchronously from the connection's queue (one call per arriving message, or per batch)
  // and from the dispatcher when it has room again: no promise per message.
  const drain = (): void => {
    if (stopped || draining || blocked) return;
    draining = true;
    try {
      // Bounded: every turn takes a queued message; it stops when the queue is empty, the
      // dispatcher is full, or the pump was stopped (a handler may stop it synchronously).
      while (!stopped) {
        const retry = held !== undefined; // refused before: not counted or traced again
        const message = held ?? source.poll();
        held = undefined;
        if (message === undefined) {
          if (peer) done.resolve(peer); // closed, and the held message went in first
          return;
        }
        if (offer?.()?.(message)) continue;
        let accepted: boolean;
        if (counts && !retry) {
          const size = message.type === "text" ? message.data.length : message.data.byteLength;
          counts.messagesIn++;
          counts.bytesIn += size;
          accepted = tel!.sampleMessage()
            ? traced(size, message.type === "text", (c) => target.push(message, c))
            : target.push(message);
        } else accepted = target.push(message);
        if (!accepted) {
          held = message;
          blocked = true;
          whenWritable().then((stalled) => {
            blocked = false;
            if (stalled) {
              // The socket is gone and the dispatcher took nothing: drop the rest (reported).
              let n = 1;
              while (source.poll() !== undefined) n++;
              held = undefined;
              onUndelivered?.(n);
            }
            drain();
          }, stop);
          return;
        }
      }
    } catch (error) {
      done.reject(error); // a bug; it must not escape into the connection's event handler
    } finally {
      draining = false;
    }
  };
  void done.promise.then(() => {
    ended = true;
    source.onReadable(undefined);
  }, () => source.onReadable(undefined));
  source.onReadable(() => {
    if (!ended) drain();
  });
  // `closed` settles once the queue is empty; a message held for the dispatcher still goes first.
  source.closed.then((info) => {
    peer = info;
    drain();
  });
  drain();
  return { done: done.promise, stop };
}
