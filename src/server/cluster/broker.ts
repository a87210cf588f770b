/**
 * The broker the cluster layer stands on: byte pub/sub, liveness entries for membership, an
 * opt-in topic history with offsets and epochs, and connection state events. The cluster logic
 * sees only this interface, so another engine (NATS, say) can be added beside the Redis one
 * (`redis_broker.ts`) without touching the server.
 *
 * Delivery is at most once, and a failure is never silent: a publish resolves once the broker
 * accepted it (with the number of subscribers it reached), or rejects. A publish that rejects
 * with {@linkcode BrokerUnavailableError} because the connection dropped while it was in flight
 * may still have been delivered. Messages published by one broker instance reach each subscriber
 * in publish order.
 *
 * Recovering what a subscriber missed while it was away is the job of the topic history: the
 * subscriber keeps the {@linkcode StreamPosition} of the last message it saw; after a gap
 * (reconnect, resubscription) it subscribes first, then asks {@linkcode Broker.history} for
 * everything after that position and drops the pub/sub copies whose offset it already has.
 *
 * @example
 * ```ts
 * import type { Broker } from "./broker.ts";
 * async function relay(broker: Broker): Promise<void> {
 *   const stop = broker.on((e) => console.log("broker", e.type));
 *   await broker.subscribe("node.b", (m) => console.log(m.channel, m.payload.length));
 *   await broker.publish("node.b", new TextEncoder().encode("hello"));
 *   stop();
 * }
 * ```
 *
 * @module
 */

/**
 * A place in a topic's history: the offset of a message and the epoch of the history it is in.
 * Offsets start at 1 and grow by one per message; a new epoch means the history was lost (the
 * broker restarted without persistence, or the history expired) and offsets started again.
 *
 * @example
 * ```ts
 * import type { StreamPosition } from "./broker.ts";
 * const nothingSeenYet: StreamPosition = { offset: 0, epoch: "a1b2" };
 * ```
 */
export interface StreamPosition {
  /** The offset of the last message (0 before the first one). */
  readonly offset: number;
  /** The epoch of the history. */
  readonly epoch: string;
}

/**
 * A message as a subscriber receives it.
 *
 * @example
 * ```ts
 * import type { BrokerMessage } from "./broker.ts";
 * const onMessage = (m: BrokerMessage) => console.log(m.channel, m.position?.offset);
 * ```
 */
export interface BrokerMessage {
  /** The channel it was published on (as given to `publish`, without any broker prefix). */
  readonly channel: string;
  /** The published bytes; a view that nothing overwrites, so it may be kept. */
  readonly payload: Uint8Array;
  /** Its place in the history, when it was published with {@linkcode Broker.publishWithHistory}. */
  readonly position?: StreamPosition;
}

/**
 * Called for each message of a subscribed channel. It runs on the broker's receive path: it should
 * return quickly. What it throws is reported as an `"error"` {@linkcode BrokerEvent}.
 *
 * @example
 * ```ts
 * import type { MessageHandler } from "./broker.ts";
 * const handler: MessageHandler = (m) => console.log(m.payload.byteLength);
 * ```
 */
export type MessageHandler = (message: BrokerMessage) => void;

/**
 * How much history a topic keeps; given with each {@linkcode Broker.publishWithHistory}.
 *
 * @example
 * ```ts
 * import type { HistoryOptions } from "./broker.ts";
 * const lastThousandForTenMinutes: HistoryOptions = { size: 1000, ttlMs: 600_000 };
 * ```
 */
export interface HistoryOptions {
  /** At most this many messages are kept; older ones are trimmed as new ones arrive. */
  size: number;
  /**
   * The history (its messages, not its epoch) expires this long after the topic's last publish.
   * Offsets and the epoch live longer (the implementation's meta TTL), so a client whose
   * messages expired learns that its position left the window rather than seeing offsets reset.
   */
  ttlMs: number;
}

/**
 * What {@linkcode Broker.publishWithHistory} resolves with.
 *
 * @example
 * ```ts
 * import type { HistoryPublish } from "./broker.ts";
 * const show = (p: HistoryPublish) => `${p.epoch}/${p.offset} reached ${p.receivers}`;
 * ```
 */
export interface HistoryPublish extends StreamPosition {
  /** How many subscriptions the message was delivered to (as {@linkcode Broker.publish}). */
  readonly receivers: number;
}

/**
 * A message read back from a topic's history.
 *
 * @example
 * ```ts
 * import type { HistoryMessage } from "./broker.ts";
 * const size = (m: HistoryMessage) => m.payload.byteLength;
 * ```
 */
export interface HistoryMessage {
  /** Its offset (its epoch is the one of the {@linkcode HistoryResult}). */
  readonly offset: number;
  /** The published bytes. */
  readonly payload: Uint8Array;
}

/**
 * The query of {@linkcode Broker.history}.
 *
 * @example
 * ```ts
 * import type { HistoryQuery } from "./broker.ts";
 * const afterSeven: HistoryQuery = { since: { offset: 7, epoch: "a1b2" }, limit: 100 };
 * ```
 */
export interface HistoryQuery {
  /** Return the messages after this position; without it, every message still kept. */
  since?: StreamPosition;
  /** Return at most this many messages (default 1000); see {@linkcode HistoryResult}. */
  limit?: number;
}

/**
 * What {@linkcode Broker.history} answers. Either the messages after the asked position, in
 * offset order, with nothing missing between them (`recovered: true`), or an explicit statement
 * that the position cannot be recovered from: `"epoch"` when the history was lost since (the
 * position's epoch is not the current one), `"window"` when messages after it were already
 * trimmed or expired. Both carry the current position, from which a client starts again.
 *
 * @example
 * ```ts
 * import type { HistoryResult } from "./broker.ts";
 * function describe(r: HistoryResult): string {
 *   return r.recovered
 *     ? `${r.messages.length} missed${r.truncated ? ", more to page" : ""}`
 *     : `lost (${r.reason}); start again at ${r.position.offset}`;
 * }
 * ```
 */
export type HistoryResult =
  | {
    readonly recovered: true;
    /** The messages after the asked position, in offset order, at most `limit` of them. */
    readonly messages: readonly HistoryMessage[];
    /** True when `limit` cut the answer: ask again from the last message's offset. */
    readonly truncated: boolean;
    /** The topic's current position (the last offset published, and the epoch). */
    readonly position: StreamPosition;
  }
  | {
    readonly recovered: false;
    /** Why: the history was lost (`"epoch"`) or the position left the kept window (`"window"`). */
    readonly reason: "epoch" | "window";
    /** The topic's current position. */
    readonly position: StreamPosition;
  };

/**
 * A live member of a liveness group (see {@linkcode Broker.setAlive}).
 *
 * @example
 * ```ts
 * import type { AliveEntry } from "./broker.ts";
 * const soon = (e: AliveEntry) => e.ttlMs < 1000;
 * ```
 */
export interface AliveEntry {
  /** The value the member last set. */
  readonly value: string;
  /** Milliseconds until the member expires unless it refreshes. */
  readonly ttlMs: number;
}

/**
 * A change of the broker connection.
 *
 * - `"down"`: the connection to the broker was lost. From now until `"up"`, operations reject
 *   with {@linkcode BrokerUnavailableError}, in-flight ones included, and no message arrives.
 *   Reconnection is automatic.
 * - `"up"`: the connection is back and every channel that has handlers was subscribed again
 *   (`resubscribed` of them). Messages published while it was down were not received.
 * - `"error"`: something that does not change the state, e.g. a handler threw, or a message on
 *   one of our channels was not in our format.
 *
 * @example
 * ```ts
 * import type { BrokerEvent } from "./broker.ts";
 * const log = (e: BrokerEvent) =>
 *   e.type === "up" ? console.log(`back, ${e.resubscribed} channels`) : console.warn(e.error);
 * ```
 */
export type BrokerEvent =
  | { readonly type: "down"; readonly error: Error }
  | { readonly type: "up"; readonly resubscribed: number }
  | { readonly type: "error"; readonly error: Error };

/**
 * The state of a broker: `"up"` (operations run), `"down"` (reconnecting; operations reject),
 * `"closed"` (after {@linkcode Broker.close}).
 *
 * @example
 * ```ts
 * import type { BrokerState } from "./broker.ts";
 * const usable = (s: BrokerState) => s === "up";
 * ```
 */
export type BrokerState = "up" | "down" | "closed";

/**
 * A message broker as the cluster layer needs it.
 *
 * Channel names and group names are the caller's; an implementation may prefix them to keep
 * several applications apart on one broker.
 *
 * @example
 * ```ts
 * import type { Broker } from "./broker.ts";
 * async function recover(broker: Broker, topic: string, last: { offset: number; epoch: string }) {
 *   const r = await broker.history(topic, { since: last });
 *   if (!r.recovered) console.warn(`cannot recover ${topic}: ${r.reason}`);
 *   return r;
 * }
 * ```
 */
export interface Broker {
  /** The current state. */
  readonly state: BrokerState;

  /**
   * Publishes `payload` on `channel`. Publishes issued together (in one turn of the event loop)
   * go to the broker in one write, in call order. Resolves with the number of subscriptions the
   * broker delivered it to (0: nobody listens, the message is gone). Rejects with
   * {@linkcode BrokerUnavailableError} while the connection is down, never drops silently.
   */
  publish(channel: string, payload: Uint8Array): Promise<number>;

  /**
   * Publishes `payload` on `channel` and appends it to the channel's history in one atomic step;
   * subscribers receive it with its {@linkcode BrokerMessage.position}. Batched and ordered with
   * {@linkcode Broker.publish}. Resolves with the new position and the receiver count.
   */
  publishWithHistory(
    channel: string,
    payload: Uint8Array,
    options: HistoryOptions,
  ): Promise<HistoryPublish>;

  /**
   * Reads `channel`'s history after `query.since` (see {@linkcode HistoryResult}). Asking creates
   * the epoch when the channel has none yet, so a subscriber can take its start position before
   * the first publish.
   */
  history(channel: string, query?: HistoryQuery): Promise<HistoryResult>;

  /**
   * Adds `handler` to `channel`. The broker holds one subscription per channel however many
   * handlers it has; it is made by the first handler and removed with the last. Resolves once the
   * broker confirmed the subscription. Rejects with {@linkcode BrokerUnavailableError} while the
   * connection is down, and then the handler is not added. Adding a handler twice has no effect.
   * Once added, a handler survives reconnections (see the `"up"` event).
   */
  subscribe(channel: string, handler: MessageHandler): Promise<void>;

  /**
   * Removes `handler` from `channel`; the broker subscription goes with the last handler. Never
   * rejects for a lost connection: the handler is removed at once either way.
   */
  unsubscribe(channel: string, handler: MessageHandler): Promise<void>;

  /**
   * Marks `member` of `group` alive for `ttlMs`, with a value (e.g. its address). Call it again
   * before the TTL runs out to stay alive. Expiry uses the broker's clock, not the caller's.
   */
  setAlive(group: string, member: string, value: string, ttlMs: number): Promise<void>;

  /** Removes `member` from `group` at once (a clean leave). */
  removeAlive(group: string, member: string): Promise<void>;

  /** The members of `group` whose TTL has not run out. */
  listAlive(group: string): Promise<Map<string, AliveEntry>>;

  /** Listens to {@linkcode BrokerEvent}s; returns the function that stops listening. */
  on(listener: (event: BrokerEvent) => void): () => void;

  /**
   * Closes the broker: queued and in-flight operations reject with
   * {@linkcode BrokerClosedError}, handlers are dropped, and no timer or socket stays open once
   * it resolves. Safe to call twice.
   */
  close(): Promise<void>;
}

/**
 * A broker failure: the broker answered with an error.
 *
 * @example
 * ```ts
 * import { BrokerError } from "./broker.ts";
 * const isBroker = (e: unknown) => e instanceof BrokerError;
 * ```
 */
export class BrokerError extends Error {
  /** Always `"BrokerError"`. */
  override name = "BrokerError";
}

/**
 * The connection to the broker is down (or was lost while the operation was in flight).
 *
 * @example
 * ```ts
 * import { BrokerUnavailableError } from "./broker.ts";
 * const retryLater = (e: unknown) => e instanceof BrokerUnavailableError;
 * ```
 */
export class BrokerUnavailableError extends BrokerError {
  /** Always `"BrokerUnavailableError"`. */
  override name = "BrokerUnavailableError";
}

/**
 * The broker was closed; a kind of {@linkcode BrokerUnavailableError}.
 *
 * @example
 * ```ts
 * import { BrokerClosedError } from "./broker.ts";
 * const closed = (e: unknown) => e instanceof BrokerClosedError;
 * ```
 */
export class BrokerClosedError extends BrokerUnavailableError {
  /** Always `"BrokerClosedError"`. */
  override name = "BrokerClosedError";
}
