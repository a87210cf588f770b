/**
 * Test helpers for the engine suites. The echo server itself is the public test kit in
 * `src/testing/echo_server.ts`.
 *
 * @module
 */

export { type EchoServer, startEchoServer } from "../../src/testing/echo_server.ts";

/** Waits until `predicate()` holds, polling every 5 ms, failing after `timeoutMs`. */
export async function until(
  predicate: () => boolean,
  what = "condition",
  timeoutMs = 5000,
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A port on 127.0.0.1 where nothing listens (connections are refused). */
export function refusedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}
