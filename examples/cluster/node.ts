/**
 * One node of the cluster example: the chat of `examples/chat/` with the cluster on, on a free
 * loopback port. `main.ts` starts two of these.
 *
 * Usage: `deno run -A node.ts <nodeId> <redis url>`. It prints one line per event —
 * `listening <page url>`, `nodeUp <node>`, `nodeDown <node> <reason>` — and stops cleanly (its
 * tabs are told 1001, its broker closed) when its stdin closes.
 *
 * @module
 */

import { RedisBroker } from "@wse/engine/server";
import { startChat } from "../chat/chat.ts";

const [nodeId, url] = Deno.args;
const broker = await RedisBroker.connect({ url });
const chat = await startChat({ port: 0, nodeId, cluster: { broker } });
console.log(`listening ${chat.url}`);
// Nodes already there when this one joined were found while it started.
for (const { node } of chat.server.nodes) console.log(`nodeUp ${node}`);
chat.server.on("nodeUp", (e) => console.log(`nodeUp ${e.node}`));
chat.server.on("nodeDown", (e) => console.log(`nodeDown ${e.node} ${e.reason}`));

// Runs until main.ts closes our stdin (or kills us).
for await (const _ of Deno.stdin.readable) { /* ignore */ }
await chat.stop();
await broker.close();
