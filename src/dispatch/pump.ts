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
import { deferred } from "../util/async.ts";
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

/**
 * Starts pumping `source` into `target`. `offer`, when given, sees each message first and may
 * consume it (return true): the engine answers pending `request()`s this way. Messages are then
 * built even on the raw path, so give `offer` only while it has something to match. `observe`
 * counts and traces what goes through.
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
  offer?: () => ((message: WireMessage) => boolean) | undefined,
  observe?: PumpTelemetry,
): Pump {
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
  const deliver = target.deliver;
  if (source.setSink && deliver) {
    // On the raw path `closed` settles only once every message was delivered.
    source.closed.then((info) => done.resolve(info));
    source.setSink({
      deliver: (text, payload) => {
        if (stopped) return false; // kept by the connection
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
      writable: () => target.writable(),
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
          target.writable().then(() => {
            blocked = false;
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
