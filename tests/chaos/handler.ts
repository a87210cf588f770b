// Worker module of the chaos suite: reports every `s:<n>` it handles, with its session, to the
// main thread (a BroadcastChannel: the pool's workers have no other way to the test).
import type { MessageContext } from "../../src/engine/context.ts";
import type { WireMessage } from "../../src/transport/types.ts";

const channel = new BroadcastChannel("wse-chaos");

export function onMessage(m: WireMessage, ctx: MessageContext): void {
  if (m.type === "text" && m.data.startsWith("s:")) {
    channel.postMessage({ sid: ctx.sessionId, n: Number(m.data.slice(2)) });
  }
}
