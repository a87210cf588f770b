/**
 * Reconnect delays: exponential backoff with full jitter (AWS "Exponential Backoff And Jitter").
 * Pure: the randomness is a parameter, so tests can pin it.
 *
 * @module
 */

/** The knobs of {@linkcode fullJitterDelay}. */
export interface BackoffPolicy {
  /** The ceiling of the first attempt's delay, in ms. */
  readonly baseDelayMs: number;
  /** The ceiling no delay exceeds, in ms. */
  readonly maxDelayMs: number;
}

/**
 * The upper bound of attempt `attempt`'s delay: `min(maxDelayMs, baseDelayMs · 2^attempt)`.
 *
 * @example
 * ```ts
 * import { backoffCeiling } from "./backoff.ts";
 * console.log(backoffCeiling(3, { baseDelayMs: 500, maxDelayMs: 30_000 })); // 4000
 * ```
 */
export function backoffCeiling(attempt: number, policy: BackoffPolicy): number {
  // 2^attempt overflows to Infinity for large attempts; min() handles it.
  const exp = policy.baseDelayMs * Math.pow(2, Math.max(0, attempt));
  return Math.min(policy.maxDelayMs, exp);
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first attempt of a restart cycle):
 * uniformly random in `[0, min(maxDelayMs, baseDelayMs · 2^attempt))` — full jitter on every
 * attempt, the first one included, so a fleet of clients dropped at once does not reconnect at
 * once.
 *
 * @example
 * ```ts
 * import { fullJitterDelay } from "./backoff.ts";
 * const policy = { baseDelayMs: 500, maxDelayMs: 30_000 };
 * console.log(fullJitterDelay(0, policy, () => 0.5)); // 250
 * console.log(fullJitterDelay(10, policy, () => 0.5)); // 15000
 * ```
 */
export function fullJitterDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const r = random();
  const unit = r >= 0 && r < 1 ? r : 0; // a broken random source must not stretch the delay
  return Math.floor(unit * backoffCeiling(attempt, policy));
}
