/**
 * Our own RFC 6455 client and server on raw TCP (`Deno.connect`/`Deno.listen`, and `node:http`'s
 * `upgrade` event), with no WebSocket library underneath: {@linkcode connect},
 * {@linkcode serve}, {@linkcode handleNodeUpgrade} and the connection they give,
 * {@linkcode WebSocketConnection}.
 *
 * @example
 * ```ts
 * import { connect, serve } from "./mod.ts";
 * const server = serve({
 *   port: 0,
 *   onConnection: async (ws) => {
 *     for await (const m of ws) await ws.send(m.data);
 *   },
 * });
 * const ws = await connect(`ws://127.0.0.1:${server.port}/`);
 * await ws.send("echo me");
 * for await (const m of ws) {
 *   console.log(m.data); // "echo me"
 *   break;
 * }
 * await ws.close(1000);
 * await server.close();
 * ```
 *
 * @module
 */

export { connect, type ConnectOptions } from "./tcp_client.ts";
export {
  type ConnectionState,
  type ConnectionStats,
  WebSocketConnection,
  type WebSocketConnectionOptions,
} from "./tcp_connection.ts";
export {
  handleNodeUpgrade,
  serve,
  type ServeOptions,
  type UpgradeOptions,
  type UpgradeRequest,
  type WebSocketServer,
} from "./tcp_server.ts";
export type { StreamAddr } from "./tcp_stream.ts";
export type { DeflateOptions } from "../protocol/deflate.ts";
export {
  type CloseInfo,
  ConnectionClosedError,
  DialError,
  type HandshakeInfo,
  type MessageSink,
  type OutgoingData,
  type OverflowPolicy,
  ReadOverflowError,
  type WireMessage,
} from "./types.ts";
export { TimeoutError } from "../util/async.ts";
