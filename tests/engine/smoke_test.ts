import assert from "node:assert/strict";
import { WebSocketEngine } from "../../src/engine/engine.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";
import { startEchoServer, until } from "./kit.ts";

for (const [name, adapter] of [["whatwg", whatwgAdapter()], ["ws", wsAdapter()]] as const) {
  Deno.test({
    name: `smoke ${name}`,
    sanitizeOps: true,
    sanitizeResources: true,
    async fn() {
      const server = startEchoServer();
      const log: string[] = [];
      const engine = new WebSocketEngine({
        url: server.url,
        adapter,
        reconnect: { baseDelayMs: 10 },
        client: {
          onOpen: (ctx) => {
            log.push(`open ${ctx.restarting}`);
            return ctx.send("hi");
          },
          onMessage: (m) => {
            log.push(`msg ${m.data}`);
          },
          onClose: (peer) => {
            log.push(`close ${peer?.code}`);
          },
          onCloseError: (e) => {
            log.push(`closeError ${e.message}`);
          },
          onRestartError: (e, n) => {
            log.push(`restartError ${n} ${e}`);
          },
        },
      });
      await engine.start();
      await until(() => log.includes("msg hi"));
      await server.kill();
      await until(() => log.includes("close 1006"), "close");
      await server.restart();
      await until(() => log.includes("open true"), "reopen");
      await engine.stop();
      await server.close();
      console.log(log);
      assert.equal(engine.isStarted, false);
    },
  });
}
