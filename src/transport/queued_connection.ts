/**
 * The read side the event-driven adapters (WHATWG `WebSocket`, `npm:ws`) share: socket events feed
 * an {@linkcode IncomingQueue}, the engine polls it, and the close is recorded once.
 *
 * @module
 */

import { deferred } from "../util/async.ts";
import { IncomingQueue } from "./incoming_queue.ts";
import type {
  AdapterConnection,
  CloseInfo,
  DialOptions,
  HandshakeInfo,
  OutgoingData,
  WireMessage,
} from "./types.ts";

/**
 * Base of an adapter connection whose socket pushes events. Subclasses call `received()` for each
 * message and `ended()` once the socket closed; they implement sending and closing.
 */
export abstract class QueuedConnection implements AdapterConnection {
  readonly #queue: IncomingQueue;
  readonly #closeInfo = deferred<CloseInfo>();
  #isClosed = false;
  /** What the handshake gave; set by the adapter once the socket opened. */
  handshake: HandshakeInfo = { protocol: "", extensions: "" };

  /**
   * @param opts the dial options (watermarks, overflow policy, error sink)
   * @param flow how to stop and resume reading the socket, when it can (npm:ws can; WHATWG cannot)
   */
  constructor(opts: DialOptions, flow: { pause?: () => void; resume?: () => void } = {}) {
    this.#queue = new IncomingQueue({
      highWaterMark: opts.readHighWaterMark,
      lowWaterMark: opts.readLowWaterMark,
      maxQueuedBytes: opts.maxQueuedBytes,
      overflow: opts.overflow,
      onPause: flow.pause,
      onResume: flow.resume,
      onOverflow: (error) => {
        try {
          opts.onError?.(error);
        } catch { /* the sink must not break reading */ }
        if (error.policy === "close") void this.close(1008, "read overflow", 1000);
      },
    });
  }

  /** Queues a received message. */
  protected received(message: WireMessage): void {
    this.#queue.push(message);
  }

  /** Records how the socket closed (once); queued messages can still be polled. */
  protected ended(info: CloseInfo): void {
    this.#isClosed = true;
    this.#closeInfo.resolve(info);
    this.#queue.end(info);
  }

  /** Settles when the socket closed, whether or not every message was polled. */
  protected get socketClosed(): Promise<CloseInfo> {
    return this.#closeInfo.promise;
  }

  abstract readonly underlying: unknown;
  abstract readonly bufferedAmount: number;
  abstract send(data: OutgoingData): Promise<void>;
  abstract ping(timeoutMs: number): Promise<number>;
  abstract close(code?: number, reason?: string, timeoutMs?: number): Promise<CloseInfo>;
  abstract terminate(): void;

  get closed(): Promise<CloseInfo> {
    return this.#queue.closed;
  }
  get isClosed(): boolean {
    return this.#isClosed;
  }
  poll(): WireMessage | undefined {
    return this.#queue.poll();
  }
  readable(): Promise<void> {
    return this.#queue.readable();
  }
  onReadable(listener: (() => void) | undefined): void {
    this.#queue.listen(listener);
  }
}
