/**
 * `deno task example:chat`: a chat room in the browser. Open the printed address in two tabs and
 * talk; `?room=kitchen` picks another room, `&name=ada` your name. Ctrl-C stops it cleanly.
 * `PORT=9000` listens elsewhere.
 *
 * @module
 */

import { startChat } from "./chat.ts";

const chat = await startChat({ port: Number(Deno.env.get("PORT") ?? 8000) });
console.log(`chat: open ${chat.url} in two tabs (Ctrl-C stops)`);

const interrupted = Promise.withResolvers<void>();
Deno.addSignalListener("SIGINT", interrupted.resolve);
await interrupted.promise;
Deno.removeSignalListener("SIGINT", interrupted.resolve);

console.log('\nchat: stopping (every tab is told 1001 "server shutting down")');
await chat.stop();
