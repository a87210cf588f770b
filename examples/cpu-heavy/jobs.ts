/**
 * The example's `onMessage`, used inline and as the pool's worker module: each message names a
 * limit; the handler counts the primes below it (a few ms of CPU) and sends the count back.
 *
 * @module
 */

import type { MessageContext } from "../../mod.ts";
import type { WireMessage } from "../../mod.ts";

/** Counts the primes below `limit` by trial division (deliberately CPU-bound). */
export function countPrimes(limit: number): number {
  let count = 0;
  for (let n = 2; n < limit; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

/** Handles one job: `"primes <limit>"` → sends back `"<limit> <count>"`. */
export async function onMessage(message: WireMessage, ctx: MessageContext): Promise<void> {
  if (message.type !== "text") return;
  const limit = Number(message.data.split(" ")[1]);
  await ctx.send(`${limit} ${countPrimes(limit)}`);
}
