/**
 * A test kit for users' own tests: a restartable, fault-injecting echo server on 127.0.0.1
 * ({@linkcode startEchoServer}).
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
