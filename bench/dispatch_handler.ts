/**
 * The benchmark's `onMessage` (a pool worker module, also used inline and by the postMessage
 * pool): a no-op or `cpu` ms of busy CPU, per the payload. On the final message it reports over a
 * BroadcastChannel (with handler start times when the payload asks for latency), and says "done"
 * on the connection where it has one.
 */
import type { WireMessage } from "../src/transport/types.ts";

let starts: number[] = [];
let seqs: number[] = [];

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}

// One channel for the module's life: closing one right after posting can drop the message, and
// a channel per report would have every open one receive every other's reports.
let channel: BroadcastChannel | undefined;

function report(done: boolean): void {
  // `at`: when the final message was handled (absolute ms), so the run's clock stops there and
  // not when the report happens to arrive.
  const at = performance.timeOrigin + performance.now();
  (channel ??= new BroadcastChannel("wse-bench-dispatch")).postMessage({ done, at, starts, seqs });
  starts = [];
  seqs = [];
}

/** Closes the report channel (the main thread's copy of this module, at the end of a run). */
export function closeReports(): void {
  channel?.close();
  channel = undefined;
}

/** Handles one benchmark payload; true for a connection's final message. */
export function handle(data: Uint8Array): boolean {
  if (data[6] === 1) {
    starts.push(performance.timeOrigin + performance.now());
    seqs.push((data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3]) >>> 0);
    if (starts.length >= 500) report(false);
  }
  if (data[5] > 0) busy(data[5]);
  if (data[4] !== 1) return false;
  report(true);
  return true;
}

/**
 * The worker entry: also says "done" on the connection after its final message. The runtime's
 * BroadcastChannel drops messages when a receiver lags behind a burst (a thousand connections
 * finishing at once), so the many-connection runs count these instead.
 */
export function onMessage(m: WireMessage, ctx?: { send(data: string): Promise<void> }): void {
  if (m.type === "binary" && handle(m.data)) void ctx?.send("done");
}
