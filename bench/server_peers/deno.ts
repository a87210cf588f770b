/**
 * Server benchmark peer: `Deno.serve` + `Deno.upgradeWebSocket`. Broadcast loops over the open
 * sockets; the topic is a `Set` of members. The peer protocol is described in `bench/server.ts`.
 */

const all = new Set<WebSocket>();
const topic = new Set<WebSocket>();
const encoder = new TextEncoder();

const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onopen = () => all.add(socket);
  socket.onclose = () => {
    all.delete(socket);
    topic.delete(socket);
  };
  socket.onmessage = (e) => {
    if (typeof e.data !== "string") return;
    if (e.data === "join") {
      topic.add(socket);
      socket.send("joined");
    } else if (e.data.startsWith("broadcast")) {
      const bytes = encoder.encode(e.data);
      for (const s of all) if (s.readyState === WebSocket.OPEN) s.send(bytes);
    } else if (e.data.startsWith("publish")) {
      const bytes = encoder.encode(e.data);
      for (const s of topic) if (s.readyState === WebSocket.OPEN) s.send(bytes);
    }
  };
  return response;
});
console.log(`PORT ${server.addr.port}`);
// Runs until the benchmark closes our stdin (or dies).
for await (const _ of Deno.stdin.readable) { /* ignore */ }
Deno.exit(0);
