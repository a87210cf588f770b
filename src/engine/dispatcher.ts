/**
 * The seam between the engine (which owns the socket) and whatever runs `onMessage`: inline on the
 * main thread, or a pool of Web Workers fed through shared memory (`src/pool/`).
 *
 * The engine pumps messages from the adapter into the dispatcher and stops pumping while the
 * dispatcher is full (so the adapter's queue fills and the socket is paused: back-pressure).
 * The read lock / pause button belongs to the dispatcher: whoever holds it takes messages
 * themselves, in arrival order, while nothing else is dispatched.
 *
 * @module
 */

import type { OutgoingData, WireMessage } from "../transport/types.ts";

/** W3C trace context of a message's receive span, carried to whoever handles it. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

/** What a dispatcher may ask of the engine for one session. */
export interface DispatchHost {
  /** The session these messages belong to (new per connection). */
  readonly sessionId: string;
  /** Sends on this session's socket; rejects with `ConnectionClosedError` once the session ended. */
  send(data: OutgoingData): Promise<void>;
  /** Drops this session and reconnects (if auto-reconnect is on). */
  restart(): void;
  /** Stops the engine for good. */
  exit(): void;
  /** A handler threw, or a worker died with a message in flight: routed to `onReadError`. */
  reportError(error: unknown, info: { workerId: string }): void;
}

/** The read lock, held: nothing is dispatched until `resume()`. */
export interface PauseLease {
  /**
   * Takes the next message in arrival order, waiting for one if needed.
   * Rejects with `TimeoutError` after `timeoutMs`, with `ConnectionClosedError` once the session
   * ended and nothing is left to read.
   */
  read(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<WireMessage>;
  /** Sends on the session's socket (same as the context's `send`). */
  send(data: OutgoingData): Promise<void>;
  /** Releases the lock; dispatch resumes. Idempotent. */
  resume(): void;
  /** True until `resume()`. */
  readonly held: boolean;
}

/** Runs `onMessage` for the engine. One instance lives as long as its engine. */
export interface Dispatcher {
  /** Prepares (spawns and checks workers). `start()` fails with this error if it rejects. */
  init(): Promise<void>;
  /** A new session begins (after `onOpen` succeeded). */
  attach(host: DispatchHost): void;
  /**
   * Offers one message. Returns false if it cannot be taken now (full); the engine then waits for
   * `writable()` and offers the same message again. A message bigger than any buffer must still
   * be taken eventually.
   */
  push(message: WireMessage, trace?: TraceCarrier): boolean;
  /** Resolves when `push` may succeed again. */
  writable(): Promise<void>;
  /** Acquires the read lock from the main thread without blocking its event loop. */
  pause(signal?: AbortSignal): Promise<PauseLease>;
  /**
   * The session ended: messages already taken in still run (their `send` now rejects); nothing new
   * arrives until the next `attach`.
   */
  detach(): void;
  /**
   * Shuts down within `timeoutMs`: in-flight handlers get until then, busy workers are terminated
   * after it. Resolves with the number of queued messages that were never handled.
   */
  close(timeoutMs: number): Promise<{ abandoned: number }>;
}
