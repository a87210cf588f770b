/**
 * The public test kit: servers to run users' own tests against, on 127.0.0.1.
 *
 * - {@linkcode startEchoServer}: a restartable, fault-injecting WebSocket echo server.
 * - {@linkcode startRedisServer}: a throwaway `redis-server` (Debian package redis-server) that
 *   can crash and come back on the same port.
 *
 * @example
 * ```ts
 * import { startEchoServer } from "./mod.ts";
 * const server = startEchoServer();
 * server.rejectStatus = 503; // handshakes fail until set back to 0
 * await server.close();
 * ```
 *
 * @module
 */

export { type EchoServer, startEchoServer } from "./echo_server.ts";
export {
  type RedisServer,
  redisServerInstalled,
  RedisServerNotInstalledError,
  type RedisServerOptions,
  startRedisServer,
} from "./redis_server.ts";
