/**
 * Every message between the pool's main thread and its workers, declared once and used at both
 * ends. Messages themselves never travel this way: they go through the ring. What does: the
 * start-up, the handlers' operations (batched, in order per worker) and their answers.
 *
 * @module
 */

import type { OutgoingData } from "../transport/types.ts";
import type { SharedChannel } from "./ring.ts";
import type { TraceCarrier } from "../telemetry/telemetry.ts";

/** Main thread → worker: start; the channel to read and where the handler module is. */
export interface InitMessage {
  t: "init";
  /** The channel this worker reads. */
  channel: SharedChannel;
  /** The pool's connection table (growable). */
  table: SharedArrayBuffer;
  /** Index of this worker: its words in the channel's control block. */
  index: number;
  /** Its lock token. */
  token: number;
  workerId: string;
  /** URL of the handler module. */
  module: string;
  /** URL of a module exporting `context(base)`, which shapes what handlers get. */
  context?: string;
}

/**
 * An error as it crosses threads: its name, message and own primitive fields (an id, a code).
 * The other side restores its class by name when it knows it.
 */
export interface WireError {
  name: string;
  message: string;
  fields?: Record<string, string | number | boolean>;
}

/** Main thread → worker: answers to operations, in order: `[call id, error or null, value]`. */
export interface AcksMessage {
  t: "acks";
  acks: [number, WireError | null, unknown][];
}

/** Main thread → worker: finish the handler in flight, take nothing new. */
export interface StopMessage {
  t: "stop";
}

/** Everything the main thread sends a worker. */
export type ToWorker = InitMessage | AcksMessage | StopMessage;

/**
 * An operation from a handler for connection (`slot`, `gen`):
 * - `send`: send on the connection (answered);
 * - `call`: one of the owner's named operations (answered with its result);
 *   both carry the trace context of the message being handled, when it was traced, so what the
 *   main thread does for them continues that trace;
 * - `error`: a handler threw (not answered);
 * - `ended`: the connection's close record was handled; `dropped` messages were discarded.
 */
export type Op =
  | ["send", slot: number, gen: number, id: number, data: OutgoingData, trace?: TraceCarrier]
  | [
    "call",
    slot: number,
    gen: number,
    id: number,
    op: string,
    args: unknown[],
    trace?: TraceCarrier,
  ]
  | ["error", slot: number, gen: number, error: unknown]
  | ["ended", slot: number, gen: number, dropped: number];

/** Worker → main thread: every message a worker sends. */
export type FromWorker =
  /** The module loaded and exports `onMessage`; which optional handlers it has. */
  | { t: "ready" }
  | { t: "init-error"; error: string }
  /** A batch of operations, in the order the handlers made them. */
  | { t: "out"; ops: Op[] }
  /** A handler called `self.close()`: the worker is about to die. */
  | { t: "closing" }
  /** The reader loop ended after a stop. */
  | { t: "stopped" };

/** Turns an error into its wire form. */
export function toWireError(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const fields: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(error)) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") fields[k] = v;
  }
  return { name: error.name, message: error.message, fields };
}

/**
 * Rebuilds an error from its wire form: an instance of `classes[name]` when given (so
 * `instanceof` works on the other side), else an `Error` with that name; fields restored.
 */
export function fromWireError(
  e: WireError,
  classes: Readonly<Record<string, abstract new (...args: never[]) => Error>> = {},
): Error {
  const Class = classes[e.name];
  const error: Error = Class ? Object.create(Class.prototype) : new Error(e.message);
  Object.assign(error, e.fields ?? {});
  Object.defineProperty(error, "message", { value: e.message, writable: true, configurable: true });
  Object.defineProperty(error, "name", { value: e.name, writable: true, configurable: true });
  return error;
}
