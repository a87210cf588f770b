/** (e): a worker fed by one postMessage per message, running the same handler. */
/// <reference lib="deno.worker" />
import { handle } from "./dispatch_handler.ts";
self.onmessage = (e: MessageEvent) => handle(new Uint8Array(e.data));
