/**
 * {@linkcode Deadline}: deadlines that share one runtime timer. Each connection keeps at most one
 * (its earliest keep-alive, pong, close or ping deadline), so 10,000 idle connections cost 10,000
 * small heap entries and a single `setTimeout`, not a timer each.
 *
 * The deadlines live in a binary min-heap ordered by due time; the one timer is armed for the
 * earliest and re-armed as that changes. Due deadlines fire together, in due order, and each may
 * set itself again from its callback.
 *
 * @module
 */

/** Deadlines this close to due (ms) fire with the ones that are due: the timer is not that precise. */
const SLACK = 1;

const heap: Deadline[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
let timerAt = Infinity;

/**
 * A deadline on the shared timer: `fn` runs once after the time it is set to, unless it was moved
 * or cancelled first. Times are `performance.now()` milliseconds.
 *
 * @example
 * ```ts
 * import { Deadline } from "./deadlines.ts";
 * const d = new Deadline(() => console.log("due"));
 * d.set(performance.now() + 50); // "due" in about 50 ms
 * d.set(performance.now() + 10); // moved: in about 10 ms instead
 * d.cancel(); // or not at all
 * ```
 */
export class Deadline {
  #at = Infinity;
  #slot = -1;
  readonly #fn: () => void;

  /** A deadline that calls `fn` when it is due; not set yet. */
  constructor(fn: () => void) {
    this.#fn = fn;
  }

  /** When it is due (`Infinity` when not set). */
  get at(): number {
    return this.#at;
  }

  /** Sets (or moves) it to `at`; `Infinity` cancels it. */
  set(at: number): void {
    if (at === this.#at) return;
    if (at === Infinity) return this.cancel();
    const earlier = at < this.#at;
    this.#at = at;
    if (this.#slot < 0) {
      this.#slot = heap.length;
      heap.push(this);
      Deadline.#up(this.#slot);
    } else if (earlier) Deadline.#up(this.#slot);
    else Deadline.#down(this.#slot);
    Deadline.#arm();
  }

  /** Cancels it (nothing happens when it was not set). */
  cancel(): void {
    if (this.#slot < 0) return;
    Deadline.#remove(this.#slot);
    Deadline.#arm();
  }

  /** Deadlines set now, across the isolate (for tests and diagnostics). */
  static get pending(): number {
    return heap.length;
  }

  static #remove(slot: number): void {
    const d = heap[slot];
    const last = heap.pop()!;
    d.#slot = -1;
    d.#at = Infinity;
    if (last === d) return;
    heap[slot] = last;
    last.#slot = slot;
    Deadline.#up(slot);
    Deadline.#down(last.#slot);
  }

  static #up(i: number): void {
    const d = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      if (p.#at <= d.#at) break;
      heap[i] = p;
      p.#slot = i;
      i = parent;
    }
    heap[i] = d;
    d.#slot = i;
  }

  static #down(i: number): void {
    const d = heap[i];
    const n = heap.length;
    while (true) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1].#at < heap[child].#at) child++;
      const c = heap[child];
      if (d.#at <= c.#at) break;
      heap[i] = c;
      c.#slot = i;
      i = child;
    }
    heap[i] = d;
    d.#slot = i;
  }

  /** Keeps the one timer armed for the earliest deadline (and none when there is none). */
  static #arm(): void {
    const at = heap.length ? heap[0].#at : Infinity;
    if (at === timerAt) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    timerAt = at;
    if (at === Infinity) return;
    timer = setTimeout(Deadline.#fire, Math.max(0, Math.ceil(at - performance.now())));
  }

  static #fire = (): void => {
    timer = undefined;
    timerAt = Infinity;
    const now = performance.now() + SLACK;
    const due: Deadline[] = [];
    while (heap.length && heap[0].#at <= now) {
      const d = heap[0];
      Deadline.#remove(0);
      due.push(d);
    }
    let failure: { error: unknown } | undefined;
    for (const d of due) {
      try {
        d.#fn();
      } catch (error) {
        failure ??= { error };
      }
    }
    Deadline.#arm();
    if (failure) throw failure.error; // after the others ran, as an uncaught timer error would
  };
}
