/**
 * The request helper for protocols with correlation ids: send a request, get back the first
 * incoming message that matches it. Matching happens in the engine's pump, before dispatch, so a
 * matched response is **consumed**: it is not given to `onMessage` (nor to a pause lease).
 * Unmatched messages flow on as usual.
 *
 * @module
 */

import { ConnectionClosedError, type WireMessage } from "../transport/types.ts";
import { AbortError, TimeoutError } from "../util/async.ts";

/**
 * How a request recognises its response: a predicate, or an id plus a function that extracts
 * the id of an incoming message (`undefined` when it has none). Id matching costs one lookup
 * per message however many requests are pending; predicates are tried oldest first.
 */
type ResponseMatcher =
  | ((message: WireMessage) => boolean)
  | { readonly id: unknown; readonly idOf: (message: WireMessage) => unknown };

/**
 * Options of `engine.request(data, options)`.
 *
 * @example
 * ```ts
 * import type { RequestOptions } from "./request.ts";
 * const idOf = (m: { type: string; data: unknown }) =>
 *   m.type === "text" ? JSON.parse(m.data as string).id : undefined;
 * const options: RequestOptions = { match: { id: 7, idOf }, timeoutMs: 2000 };
 * ```
 */
export interface RequestOptions {
  /**
   * Which incoming message is the response: a predicate, or an id plus a function that extracts
   * the id of an incoming message (`undefined` when it has none). Id matching costs one lookup
   * per message however many requests are pending; predicates are tried oldest first.
   */
  readonly match:
    | ((message: WireMessage) => boolean)
    | { readonly id: unknown; readonly idOf: (message: WireMessage) => unknown };
  /** Reject with `TimeoutError` after this many ms. Default 30 000. */
  readonly timeoutMs?: number;
  /** Aborting rejects the request with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Default `timeoutMs` of a request. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * What the engine knows of a request's message: whether it was handed to a connection yet (a
 * request queued in the offline buffer is not failed by the end of a session it was never sent
 * on), and what to do once the request settles (withdraw its message if still queued).
 */
export interface RequestRecord {
  sent: boolean;
  settled?: () => void;
}

interface Pending {
  readonly matcher: ResponseMatcher;
  readonly record?: RequestRecord;
  settle(result: { message: WireMessage } | { error: unknown }): void;
}

/**
 * Pending requests of one engine, matched against incoming messages.
 *
 * @example
 * ```ts
 * import { RequestTracker } from "./request.ts";
 * const tracker = new RequestTracker();
 * const response = tracker.wait({ match: (m) => m.type === "text" && m.data === "pong" });
 * tracker.offer({ type: "text", data: "pong" }); // true: consumed
 * console.log(await response);
 * ```
 */
export class RequestTracker {
  #predicates: Pending[] = [];
  #byId = new Map<(message: WireMessage) => unknown, Map<unknown, Pending[]>>();
  #size = 0;

  /** Requests waiting for a response. */
  get size(): number {
    return this.#size;
  }

  /**
   * Registers a request and resolves with its response. Register before sending, so a fast
   * response cannot be missed. `record` tells whether its message was sent yet (default: it was).
   */
  wait(options: RequestOptions, record?: RequestRecord): Promise<WireMessage> {
    const { match, signal } = options;
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (signal?.aborted) return Promise.reject(signal.reason ?? new AbortError());
    return new Promise<WireMessage>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => pending.settle({ error: signal!.reason ?? new AbortError() });
      const pending: Pending = {
        matcher: match,
        record,
        settle: (result) => {
          if (!this.#remove(pending)) return;
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          record?.settled?.();
          if ("message" in result) resolve(result.message);
          else reject(result.error);
        },
      };
      this.#add(pending);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs > 0 && timeoutMs !== Infinity) {
        timer = setTimeout(
          () => pending.settle({ error: new TimeoutError("request", timeoutMs) }),
          timeoutMs,
        );
      }
    });
  }

  /** Offers an incoming message; true when a request took it (it must not be dispatched). */
  offer(message: WireMessage): boolean {
    if (this.#size === 0) return false;
    for (const [idOf, table] of this.#byId) {
      let id: unknown;
      try {
        id = idOf(message);
      } catch {
        continue; // an extractor that cannot read this message does not match it
      }
      if (id === undefined) continue;
      const list = table.get(id);
      if (list && list.length > 0) {
        list[0].settle({ message });
        return true;
      }
    }
    for (const pending of [...this.#predicates]) { // settle() removes from the list
      let matched: boolean;
      try {
        matched = (pending.matcher as (m: WireMessage) => boolean)(message);
      } catch (error) {
        pending.settle({ error });
        continue;
      }
      if (matched) {
        pending.settle({ message });
        return true;
      }
    }
    return false;
  }

  /**
   * Rejects every pending request whose message was sent (the connection closed), or every one
   * with `unsentToo` (the engine stopped).
   */
  failAll(
    error: unknown = new ConnectionClosedError("the connection closed before a response arrived"),
    unsentToo = true,
  ): void {
    const all: Pending[] = [...this.#predicates];
    for (const table of this.#byId.values()) for (const list of table.values()) all.push(...list);
    for (const p of all) if (unsentToo || !p.record || p.record.sent) p.settle({ error });
  }

  #add(p: Pending): void {
    this.#size++;
    if (typeof p.matcher === "function") {
      this.#predicates.push(p);
      return;
    }
    let table = this.#byId.get(p.matcher.idOf);
    if (!table) this.#byId.set(p.matcher.idOf, table = new Map());
    const list = table.get(p.matcher.id);
    if (list) list.push(p);
    else table.set(p.matcher.id, [p]);
  }

  #remove(p: Pending): boolean {
    if (typeof p.matcher === "function") {
      const i = this.#predicates.indexOf(p);
      if (i < 0) return false;
      this.#predicates.splice(i, 1);
    } else {
      const table = this.#byId.get(p.matcher.idOf);
      const list = table?.get(p.matcher.id);
      const i = list ? list.indexOf(p) : -1;
      if (i < 0) return false;
      list!.splice(i, 1);
      if (list!.length === 0) table!.delete(p.matcher.id);
      if (table!.size === 0) this.#byId.delete(p.matcher.idOf);
    }
    this.#size--;
    return true;
  }
}
