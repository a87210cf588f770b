/**
 * `deno task example:cpu`: a local server pushes CPU-heavy jobs (count the primes below a limit);
 * the client engine handles them on the main thread, then in a pool of 1, 2, … N Web Workers
 * (`workers: { module, count }`), and prints messages/s for each. Ends by itself in ~15 s.
 *
 * @module
 */

import { WebSocketEngine } from "../../mod.ts";
import { onMessage } from "./jobs.ts";

const JOBS = Number(Deno.env.get("JOBS") ?? 1500);
const LIMIT = 60_000; // ~1-3 ms of CPU per job

/** A server that pushes JOBS jobs to each client and measures how fast the answers come back. */
function startServer(): { port: number; results: () => Promise<number>; close(): Promise<void> } {
  let finished: ((rate: number) => void) | undefined;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    let answers = 0;
    let t0 = 0;
    socket.onopen = () => {
      t0 = performance.now();
      for (let i = 0; i < JOBS; i++) socket.send(`primes ${LIMIT + (i % 7)}`);
    };
    socket.onmessage = () => {
      if (++answers === JOBS) finished?.(JOBS / ((performance.now() - t0) / 1000));
    };
    return response;
  });
  return {
    port: server.addr.port,
    results: () => new Promise<number>((r) => finished = r),
    close: () => server.shutdown(),
  };
}

const server = startServer();
const url = `ws://127.0.0.1:${server.port}/`;
const cores = navigator.hardwareConcurrency;
console.log(`${JOBS} jobs of "count the primes below ${LIMIT}", ${cores} cores`);

const runs: { label: string; workers?: number }[] = [{ label: "inline (main thread)" }];
for (const n of [...new Set([1, 2, cores])]) runs.push({ label: `${n} worker(s)`, workers: n });

let inlineRate = 0;
for (const run of runs) {
  const done = server.results();
  const engine = new WebSocketEngine({
    url,
    reconnect: false,
    client: run.workers ? {} : { onMessage },
    // The worker module is resolved relative to this file: pass a URL.
    workers: run.workers
      ? { module: new URL("./jobs.ts", import.meta.url), count: run.workers }
      : undefined,
  });
  await engine.start();
  const rate = await done;
  await engine.stop();
  if (!run.workers) inlineRate = rate;
  console.log(
    `${run.label.padEnd(22)} ${Math.round(rate).toLocaleString("en-US").padStart(7)} msg/s` +
      (run.workers ? `  (${(rate / inlineRate).toFixed(2)}× inline)` : ""),
  );
}
await server.close();
