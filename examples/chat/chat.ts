/**
 * The chat server: one port serves the page (the `fetch` option) and the WebSocket. A room is a
 * topic; the handlers run in a pool of workers (`room.ts`).
 *
 * @module
 */

import { createServer } from "@wse/engine/server";

const PAGE = await Deno.readTextFile(new URL("./page.html", import.meta.url));

/** A running chat. */
export interface Chat {
  /** The page's address, e.g. `http://127.0.0.1:8000/`. */
  url: string;
  /** Says goodbye to every tab (1001) and stops the workers. */
  stop(): Promise<void>;
}

/** Starts the chat on `hostname:port` (port 0: any free one). */
export async function startChat(
  { port = 8000, hostname = "127.0.0.1" }: { port?: number; hostname?: string } = {},
): Promise<Chat> {
  const server = createServer({
    workers: { module: new URL("./room.ts", import.meta.url), count: 2 },
    fetch: (request) =>
      new URL(request.url).pathname === "/"
        ? new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } })
        : new Response("not found", { status: 404 }),
  });
  try {
    const bound = await server.listen({ port, hostname });
    await server.ready; // the workers are up: until then upgrades get 503
    return { url: `http://${bound.hostname}:${bound.port}/`, stop: () => server.stop() };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
