/**
 * The benchmark's `onMessage` (a pool worker module, also used inline and by the postMessage
 * pool): a no-op or `cpu` ms of busy CPU, per the payload. On the final message it reports over a
 * BroadcastChannel (with handler start times when the payload asks for latency).
 */
import type { WireMessage } from "../src/transport/types.ts";

let starts: number[] = [];
let seqs: number[] = [];

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
}

function report(done: boolean): void {
  const bc = new BroadcastChannel("wse-bench-dispatch");
  bc.postMessage({ done, starts, seqs });
  bc.close();
  starts = [];
  seqs = [];
}

/** Handles one benchmark payload. */
export function handle(data: Uint8Array): void {
  if (data[6] === 1) {
    starts.push(performance.timeOrigin + performance.now());
    seqs.push((data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3]) >>> 0);
    if (starts.length >= 500) report(false);
  }
  if (data[5] > 0) busy(data[5]);
  if (data[4] === 1) report(true);
}

export function onMessage(m: WireMessage): void {
  if (m.type === "binary") handle(m.data);
}
