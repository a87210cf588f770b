/**
 * The server's typed errors.
 *
 * @module
 */

/**
 * An operation named a connection id that is not open on this server (never was, or has
 * closed). The id is in the message and in {@linkcode UnknownConnectionError.id}.
 *
 * @example
 * ```ts
 * import { UnknownConnectionError } from "./errors.ts";
 * const e = new UnknownConnectionError("n1.AAAAAAAAAAAAAAAA");
 * console.log(e.message); // no open connection with id "n1.AAAAAAAAAAAAAAAA"
 * ```
 */
export class UnknownConnectionError extends Error {
  /** Always `"UnknownConnectionError"`. */
  override name = "UnknownConnectionError";
  /** The id that was asked for. */
  readonly id: string;
  /** `id` is the connection id that is not open. */
  constructor(id: string, detail = "") {
    super(`no open connection with id "${id}"${detail ? `: ${detail}` : ""}`);
    this.id = id;
  }
}

/**
 * A send would take a connection's unwritten bytes past `sendBuffer.limit`: the peer does not
 * read fast enough. With policy `"close"` the connection is also closed (1008).
 *
 * @example
 * ```ts
 * import { SendBufferError } from "./errors.ts";
 * const e = new SendBufferError("n1.x", 2 << 20, 1 << 20, "drop");
 * console.log(e.policy, e.buffered > e.limit); // "drop" true
 * ```
 */
export class SendBufferError extends Error {
  /** Always `"SendBufferError"`. */
  override name = "SendBufferError";
  /** The slow connection. */
  readonly id: string;
  /** Bytes that would have been buffered. */
  readonly buffered: number;
  /** The limit. */
  readonly limit: number;
  /** What was done: the message dropped, or the connection closed. */
  readonly policy: "close" | "drop";
  /** The connection, the bytes it would buffer, the limit and the policy applied. */
  constructor(id: string, buffered: number, limit: number, policy: "close" | "drop") {
    super(
      `connection "${id}" would buffer ${buffered} bytes, over sendBuffer.limit (${limit}): ${
        policy === "close" ? "closed with 1008" : "message dropped"
      }`,
    );
    this.id = id;
    this.buffered = buffered;
    this.limit = limit;
    this.policy = policy;
  }
}

/**
 * An option failed validation. `field` is the option's path, `rule` what it must be.
 *
 * @example
 * ```ts
 * import { ServerOptionError } from "./errors.ts";
 * const e = new ServerOptionError("keepAlive.intervalMs", "must be a number > 0", -1);
 * console.log(e.message); // invalid option keepAlive.intervalMs: must be a number > 0 (got -1)
 * ```
 */
export class ServerOptionError extends TypeError {
  /** Always `"ServerOptionError"`. */
  override name = "ServerOptionError";
  /** The option's path, dotted for nested options. */
  readonly field: string;
  /** The rule the value broke. */
  readonly rule: string;
  /** `field` broke `rule` with `value`. */
  constructor(field: string, rule: string, value: unknown) {
    let shown: string;
    try {
      shown = typeof value === "function" ? "a function" : JSON.stringify(value) ?? String(value);
    } catch {
      shown = String(value);
    }
    super(`invalid option ${field}: ${rule} (got ${shown})`);
    this.field = field;
    this.rule = rule;
  }
}

/**
 * A connection id names a node that is down or not in the cluster: the operation cannot reach
 * it. A kind of {@linkcode UnknownConnectionError}; `node` names the node.
 *
 * @example
 * ```ts
 * import { NodeUnavailableError, UnknownConnectionError } from "./errors.ts";
 * const e = new NodeUnavailableError("b.AAAAAAAAAAAAAAAA", "b", "the node is down");
 * console.log(e instanceof UnknownConnectionError, e.node); // true "b"
 * ```
 */
export class NodeUnavailableError extends UnknownConnectionError {
  /** Always `"NodeUnavailableError"`. */
  override name = "NodeUnavailableError";
  /** The node the id names. */
  readonly node: string;
  /** `id` (may be "" for a request to the node itself), its `node`, and why. */
  constructor(id: string, node: string, why: string) {
    super(id, `node "${node}": ${why}`);
    this.node = node;
  }
}
