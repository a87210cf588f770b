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
import { deferred } from "../util/async.ts";
import type { DispatchConnection } from "./types.ts";

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
 * Starts pumping `source` into `target`. `offer`, when given, sees each message first and may
 * consume it (return true): the engine answers pending `request()`s this way. Messages are then
 * built even on the raw path, so give `offer` only while it has something to match.
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
): Pump {
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
        if (!take) return deliver(text, payload);
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
        const message = held ?? source.poll();
        held = undefined;
        if (message === undefined) {
          if (peer) done.resolve(peer); // closed, and the held message went in first
          return;
        }
        if (offer?.()?.(message)) continue;
        if (!target.push(message)) {
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
