/**
 * The server (Ergo's WebSocket handler): every connection is an address with an unguessable id;
 * its messages go to handlers, inline or in a pool of workers that each own their connections;
 * anything in the application pushes to any connection at any time — `send`, `broadcast`
 * (framed once), topics (`subscribe`/`publish`), `close`, `terminate`, `inspect`.
 *
 * @example
 * ```ts
 * import { createServer } from "./mod.ts";
 * const server = createServer({
 *   onConnect: async (ctx) => {
 *     await ctx.subscribe("chat");
 *     await ctx.server.publish("chat", `${ctx.id} joined`, { except: ctx.id });
 *   },
 *   onMessage: async (m, ctx) => {
 *     if (m.type === "text") await ctx.server.publish("chat", m.data);
 *   },
 * });
 * const { port } = await server.listen({ port: 0 });
 * console.log(`listening on ws://127.0.0.1:${port}/`);
 * await server.stop();
 * ```
 *
 * @module
 */

export {
  createServer,
  formatHistoryEvent,
  type HistoryEvent,
  type RecoveryResult,
  Server,
  type ServerEvents,
  type ServerState,
} from "./server.ts";
export type { ClusterCount, ClusterOptions, NodeInfo } from "./cluster/cluster.ts";
export {
  type AliveEntry,
  type Broker,
  BrokerClosedError,
  BrokerError,
  type BrokerEvent,
  type BrokerMessage,
  type BrokerState,
  BrokerUnavailableError,
  type HistoryMessage,
  type HistoryOptions,
  type HistoryPublish,
  type HistoryQuery,
  type HistoryResult,
  type MessageHandler,
  type StreamPosition,
} from "./cluster/broker.ts";
export { RedisBroker, type RedisBrokerOptions } from "./cluster/redis_broker.ts";
export type { ServerOptions } from "./options.ts";
export type {
  ConnectInfo,
  ConnectionInfo,
  DisconnectInfo,
  ServerContext,
  ServerHandle,
  ServerHandlers,
} from "./context.ts";
export {
  NodeUnavailableError,
  SendBufferError,
  ServerOptionError,
  UnknownConnectionError,
} from "./errors.ts";
export type { PoolOptions } from "../dispatch/pool.ts";
export type { TelemetryOptions } from "../telemetry/telemetry.ts";
export { LeaseResumedError, type PauseLease, type TraceCarrier } from "../dispatch/types.ts";
export type { DeflateOptions } from "../protocol/deflate.ts";
export type { UpgradeRequest } from "../transport/tcp_server.ts";
export type { StreamAddr } from "../transport/tcp_stream.ts";
export type { OutgoingData, WireMessage } from "../transport/types.ts";
