/**
 * The chat server: one port serves the page (the `fetch` option) and the WebSocket. A room is a
 * topic; the handlers run in a pool of workers (`room.ts`). With `cluster`, several chat servers
 * share their rooms through a broker (see `examples/cluster/`).
 *
 * @module
 */

import { type ClusterOptions, createServer, type Server } from "@wse/engine/server";

const PAGE = await Deno.readTextFile(new URL("./page.html", import.meta.url));

/** A running chat. */
export interface Chat {
  /** The page's address, e.g. `http://127.0.0.1:8000/`. */
  url: string;
  /** The server underneath: its events (`nodeUp`, `nodeDown`...) and operations. */
  server: Server;
  /** Says goodbye to every tab (1001) and stops the workers (not the cluster's broker). */
  stop(): Promise<void>;
}

/**
 * Starts the chat on `hostname:port` (port 0: any free one). With `cluster` (and a `nodeId` of
 * its own), it is one node of a chat whose rooms span every node on the same broker.
 */
export async function startChat(
  { port = 8000, hostname = "127.0.0.1", nodeId, cluster }: {
    port?: number;
    hostname?: string;
    nodeId?: string;
    cluster?: ClusterOptions;
  } = {},
): Promise<Chat> {
  const server = createServer({
    nodeId,
    cluster,
    workers: { module: new URL("./room.ts", import.meta.url), count: 2 },
    fetch: (request) =>
      new URL(request.url).pathname === "/"
        ? new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } })
        : new Response("not found", { status: 404 }),
  });
  try {
    const bound = await server.listen({ port, hostname });
    await server.ready; // the workers are up: until then upgrades get 503
    return { url: `http://${bound.hostname}:${bound.port}/`, server, stop: () => server.stop() };
  } catch (error) {
    await server.stop();
    throw error;
  }
}
