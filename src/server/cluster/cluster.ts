/**
 * One address space across nodes (Ergo's network transparency, on a broker): a connection id
 * names its node, so a send to a remote id is one publish to that node's channel; a broadcast is
 * one publish every node hears; a topic publish reaches the nodes that have subscribers (each
 * subscribes to a topic once, however many local members it has). Nodes announce themselves with
 * heartbeats; one silent for two heartbeats is down, and a send to its ids rejects. Topics may
 * keep a history (offsets and an epoch, in the broker) from which a client that reconnects — to
 * any node — recovers what it missed, or is told it cannot.
 *
 * @module
 */

import type { OutgoingData } from "../../transport/types.ts";
import { TimeoutError, withResolvers } from "../../util/async.ts";
import type {
  Broker,
  BrokerMessage,
  HistoryOptions,
  MessageHandler,
  StreamPosition,
} from "./broker.ts";
import {
  decodeAcks,
  decodeControl,
  decodeData,
  encodeAcks,
  encodeBatch,
  encodeControl,
  encodeData,
  K,
  unpackBatch,
} from "./envelope.ts";
import {
  ATTR,
  contextOf,
  SpanKind,
  type Telemetry,
  type TraceCarrier,
} from "../../telemetry/telemetry.ts";
import { nodeOf } from "../ids.ts";
import { NodeUnavailableError } from "../errors.ts";
import type { HistoryEvent } from "../server.ts";

/**
 * The cluster part of the server's options.
 *
 * @example
 * ```ts ignore
 * import { createServer, RedisBroker } from "@wse/engine/server";
 * const broker = await RedisBroker.connect({ url: "redis://127.0.0.1:6379" });
 * const server = createServer({
 *   nodeId: "a",
 *   cluster: { broker, history: (topic) => topic.startsWith("room:") ? { size: 1000, ttlMs: 600_000 } : undefined },
 *   onMessage: (m, ctx) => void ctx.server.publish("room:1", m.type === "text" ? m.data : "?"),
 * });
 * ```
 */
export interface ClusterOptions {
  /** The broker every node of the cluster shares (`RedisBroker.connect({ url })`). */
  broker: Broker;
  /** Heartbeat period, in ms; a node silent for two is down. Default 1000. */
  heartbeatMs?: number;
  /** Budget of a request to another node (a send's ack, `inspect`, a count), in ms. Default 5000. */
  requestTimeoutMs?: number;
  /**
   * Which topics keep a history, and how much (by count and age): return the options for a
   * topic, or `undefined` for none (the default for every topic).
   */
  history?: (topic: string) => HistoryOptions | undefined;
  /**
   * How a topic-with-history event reaches a client (default `formatHistoryEvent`: JSON text with
   * the topic, offset, epoch and data, or the news that recovery is impossible).
   */
  format?: (event: HistoryEvent) => OutgoingData;
}

/** What a node's server gives the cluster: its local operations and events. */
export interface ClusterHost {
  readonly nodeId: string;
  /** A local operation by name (`send`, `close`, `terminate`, `subscribe`, `unsubscribe`, `inspect`). */
  local(op: string, args: unknown[]): unknown;
  /** Sends to the local inbound connections. */
  broadcastLocal(data: OutgoingData, except: ReadonlySet<string> | undefined): number;
  /** Sends to the local subscribers of a topic without history. */
  publishLocal(topic: string, data: OutgoingData, except: ReadonlySet<string> | undefined): number;
  /** Hands a topic's message with its place in the history to the local subscribers. */
  deliverHistory(topic: string, position: StreamPosition, data: OutgoingData): void;
  /** The history of a topic has gone (epoch changed): its local subscribers must be told. */
  historyLost(topic: string, position: StreamPosition): void;
  /** Local connections. */
  count(): number;
  /** Emits a server event. */
  emit(event: "nodeUp" | "nodeDown" | "error", payload: unknown): void;
  /** The server's telemetry (a send's trace continues on the node that delivers it). */
  readonly telemetry: Telemetry;
}

/**
 * A node as the cluster sees it.
 *
 * @example
 * ```ts
 * import type { NodeInfo } from "./cluster.ts";
 * const quiet = (n: NodeInfo) => Date.now() - n.lastSeen > 5000;
 * ```
 */
export interface NodeInfo {
  /** The node's name (the prefix of its connection ids). */
  readonly node: string;
  /** When it was last heard, ms since the epoch. */
  readonly lastSeen: number;
}

/**
 * The answer of a count across the cluster.
 *
 * @example
 * ```ts
 * import type { ClusterCount } from "./cluster.ts";
 * const show = (c: ClusterCount) =>
 *   `${c.total} connections${c.missing.length ? ` (${c.missing.join(", ")} did not answer)` : ""}`;
 * ```
 */
export interface ClusterCount {
  /** Connections on every node that answered. */
  readonly total: number;
  /** Per node that answered. */
  readonly byNode: Readonly<Record<string, number>>;
  /** Live nodes that did not answer in time: `total` is then partial. */
  readonly missing: readonly string[];
}

interface Pending {
  node: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** When it times out (performance.now): the cluster's one timer checks, no timer per send. */
  by: number;
}

type Control =
  | { t: "hb"; node: string }
  | { t: "leave"; node: string }
  | { t: "acks"; acks: [number, { name: string; message: string } | null, unknown?][] }
  | { t: "req"; from: string; id: number; op: string; args: unknown[] };

const CHANNEL = {
  node: (n: string) => `node.${n}`,
  all: "all",
  ctl: "ctl",
  topic: (t: string) => `topic.${t}`,
};

/** The cluster layer of one node. */
export class Cluster {
  readonly #host: ClusterHost;
  readonly #broker: Broker;
  readonly #hb: number;
  readonly #timeout: number;
  readonly #historyOf: (topic: string) => HistoryOptions | undefined;
  readonly #nodes = new Map<string, number>(); // live peers → last seen (performance.now)
  readonly #pending = new Map<number, Pending>();
  readonly #topics = new Map<string, MessageHandler>();
  /** Per history topic: the last position this node delivered (gaps are filled from it). */
  readonly #positions = new Map<string, StreamPosition>();
  #nextId = 1;
  #acks = new Map<string, Control & { t: "acks" }>();
  /** Sends delivered, per node to answer: their ids go back in one binary message a turn. */
  #delivered = new Map<string, number[]>();
  /** Sends made in this turn, per node: one broker message each at the end of the turn. */
  #outbox = new Map<string, { parts: Uint8Array[]; ns: number[]; ids: string[] }>();
  #flushQueued = false;
  #acksScheduled = false;
  #timer?: ReturnType<typeof setInterval>;
  #offBroker?: () => void;
  #stopped = false;
  readonly #handlers: { self: MessageHandler; all: MessageHandler; ctl: MessageHandler };

  constructor(host: ClusterHost, options: ClusterOptions) {
    this.#host = host;
    this.#broker = options.broker;
    this.#hb = options.heartbeatMs ?? 1000;
    this.#timeout = options.requestTimeoutMs ?? 5000;
    this.#historyOf = options.history ?? (() => undefined);
    this.#handlers = {
      self: (m) => this.#guard(() => this.#onSelf(m)),
      all: (m) => this.#guard(() => this.#onAll(m)),
      ctl: (m) => this.#guard(() => this.#onControl(decodeControl(m.payload) as Control)),
    };
  }

  /** The live peers (this node excluded). */
  get nodes(): NodeInfo[] {
    const now = performance.now();
    return [...this.#nodes].map(([node, seen]) => ({ node, lastSeen: Date.now() - (now - seen) }));
  }

  /** Joins: subscribes to this node's channel, the broadcast and control channels; announces. */
  async start(): Promise<void> {
    const b = this.#broker;
    const me = this.#host.nodeId;
    await b.subscribe(CHANNEL.node(me), this.#handlers.self);
    await b.subscribe(CHANNEL.all, this.#handlers.all);
    await b.subscribe(CHANNEL.ctl, this.#handlers.ctl);
    this.#offBroker = b.on((e) => {
      if (e.type === "up") this.#onBrokerUp();
      else if (e.type === "down") this.#host.emit("error", { error: e.error });
    });
    for (const [node] of await b.listAlive("nodes")) {
      if (node !== me) this.#seen(node);
    }
    await this.#announce();
    // One timer for the whole cluster layer: heartbeats, the failure sweep, answers overdue.
    let tick = 0;
    const every = Math.max(10, this.#hb / 4);
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      // This process stalled (a long GC, a stopped process, a starved machine): the peers'
      // heartbeats may be waiting unread in our socket, so nobody is judged on our stall.
      if (now - last > every + this.#hb / 2) this.#refreshPeers(now);
      last = now;
      if (++tick % 4 === 0) void this.#announce();
      this.#sweep(now);
      this.#expire(now);
    }, every);
  }

  /** Leaves: says so, rejects what waits on other nodes, unsubscribes. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#offBroker?.();
    const me = this.#host.nodeId;
    const b = this.#broker;
    await Promise.allSettled([
      b.publish(CHANNEL.ctl, encodeControl({ t: "leave", node: me })),
      b.removeAlive("nodes", me),
    ]);
    for (const [id, p] of this.#pending) {
      p.reject(new NodeUnavailableError("", p.node, "this node left the cluster"));
      this.#pending.delete(id);
    }
    await Promise.allSettled([
      b.unsubscribe(CHANNEL.node(me), this.#handlers.self),
      b.unsubscribe(CHANNEL.all, this.#handlers.all),
      b.unsubscribe(CHANNEL.ctl, this.#handlers.ctl),
      ...[...this.#topics].map(([t, h]) => b.unsubscribe(CHANNEL.topic(t), h)),
    ]);
    this.#topics.clear();
  }

  /** True when `id` lives on another node of the cluster. */
  isRemote(id: string): boolean {
    const node = nodeOf(id);
    return node !== undefined && node !== this.#host.nodeId;
  }

  /** Sends to a connection on another node; resolves once that node's socket took it. */
  send(id: string, data: OutgoingData, trace?: TraceCarrier): Promise<void> {
    const node = this.#live(id);
    const n = this.#nextId++;
    const waiting = this.#wait(node, n) as Promise<void>;
    // The trace context rides in the envelope: the delivery on the other node joins the trace.
    const fields = [this.#host.nodeId, id];
    if (trace?.traceparent) fields.push(trace.traceparent, trace.tracestate ?? "");
    // Sends to one node in one turn of the event loop go out as one broker message.
    let box = this.#outbox.get(node);
    if (!box) this.#outbox.set(node, box = { parts: [], ns: [], ids: [] });
    box.parts.push(encodeData(K.SEND, fields, n, data));
    box.ns.push(n);
    box.ids.push(id);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flushOutbox());
    }
    return waiting;
  }

  #flushOutbox(): void {
    this.#flushQueued = false;
    const all = this.#outbox;
    this.#outbox = new Map();
    for (const [node, { parts, ns, ids }] of all) {
      const payload = parts.length === 1 ? parts[0] : encodeBatch(parts);
      this.#broker.publish(CHANNEL.node(node), payload).then(
        (receivers) => {
          if (receivers > 0) return;
          ns.forEach((n, i) =>
            this.#fail(n, new NodeUnavailableError(ids[i], node, "nobody listens"))
          );
        },
        (e) => ns.forEach((n) => this.#fail(n, e)),
      );
    }
  }

  /** Another node's operation on one of its connections, by name (`close`, `inspect`, ...). */
  request(id: string, op: string, args: unknown[]): Promise<unknown> {
    const node = this.#live(id);
    return this.#ask(node, op, args);
  }

  /** Sends to every other node's inbound connections (one publish); failures are reported. */
  broadcast(data: OutgoingData, except: ReadonlySet<string> | undefined): void {
    const payload = encodeData(K.BROADCAST, [this.#host.nodeId, ...(except ?? [])], 0, data);
    this.#broker.publish(CHANNEL.all, payload).catch((error) =>
      this.#host.emit("error", { error, op: "broadcast", data })
    );
  }

  /** True when `topic` keeps a history. */
  hasHistory(topic: string): boolean {
    return this.#historyOf(topic) !== undefined;
  }

  /**
   * Publishes to a topic across the cluster. Without history, the other nodes get it (this node
   * delivered it itself); with history, every node — this one too — gets it from the broker with
   * its offset, so all see one order. Resolves with the position when there is a history.
   */
  publish(
    topic: string,
    data: OutgoingData,
    except: ReadonlySet<string> | undefined,
  ): Promise<StreamPosition | undefined> {
    const history = this.#historyOf(topic);
    const fields = [this.#host.nodeId, topic, ...(except ?? [])];
    const payload = encodeData(K.PUBLISH, fields, 0, data);
    if (!history) {
      return this.#broker.publish(CHANNEL.topic(topic), payload).then(() => undefined);
    }
    return this.#broker.publishWithHistory(CHANNEL.topic(topic), payload, history).then((p) => ({
      offset: p.offset,
      epoch: p.epoch,
    }));
  }

  /** This node has local subscribers to `topic`: subscribe to its channel (once). */
  async join(topic: string): Promise<void> {
    if (this.#topics.has(topic)) return;
    const handler: MessageHandler = (m) => this.#guard(() => this.#onTopic(topic, m));
    this.#topics.set(topic, handler);
    try {
      await this.#broker.subscribe(CHANNEL.topic(topic), handler);
    } catch (e) {
      this.#topics.delete(topic);
      throw e;
    }
  }

  /** The last local subscriber of `topic` left: unsubscribe its channel. */
  leave(topic: string): void {
    const handler = this.#topics.get(topic);
    if (!handler) return;
    this.#topics.delete(topic);
    this.#positions.delete(topic);
    this.#broker.unsubscribe(CHANNEL.topic(topic), handler).catch(() => {});
  }

  /** A topic's history after `since` (all pages), or why it cannot be recovered. */
  async history(topic: string, since: StreamPosition | undefined) {
    const messages: { offset: number; data: OutgoingData }[] = [];
    let from = since;
    // Bounded: every page moves `from` forward; the broker's window is finite.
    for (let page = 0; page < 10_000; page++) {
      const r = await this.#broker.history(CHANNEL.topic(topic), { since: from, limit: 1000 });
      if (!r.recovered) {
        return { recovered: false as const, reason: r.reason, position: r.position };
      }
      for (const m of r.messages) {
        messages.push({ offset: m.offset, data: decodeData(m.payload).data });
      }
      if (!r.truncated || r.messages.length === 0) {
        return { recovered: true as const, messages, position: r.position };
      }
      from = { offset: r.messages[r.messages.length - 1].offset, epoch: r.position.epoch };
    }
    throw new RangeError(`the history of ${topic} did not end`);
  }

  /** Counts the connections of every live node (this one included), within the timeout. */
  async count(): Promise<ClusterCount> {
    const byNode: Record<string, number> = { [this.#host.nodeId]: this.#host.count() };
    const missing: string[] = [];
    await Promise.all([...this.#nodes.keys()].map((node) =>
      this.#ask(node, "count", []).then(
        (n) => void (byNode[node] = n as number),
        () => void missing.push(node),
      )
    ));
    const total = Object.values(byNode).reduce((a, b) => a + b, 0);
    return { total, byNode, missing };
  }

  // ---- internals ----

  #guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.#host.emit("error", { error });
    }
  }

  /** The node of a remote id, if it is alive; else a typed error naming both. */
  #live(id: string): string {
    const node = nodeOf(id);
    if (node === undefined) throw new NodeUnavailableError(id, "?", "not a connection id");
    if (!this.#nodes.has(node)) {
      throw new NodeUnavailableError(id, node, "the node is down or not in the cluster");
    }
    return node;
  }

  #wait(node: string, n: number): Promise<unknown> {
    const { promise, resolve, reject } = withResolvers<unknown>();
    this.#pending.set(n, { node, resolve, reject, by: performance.now() + this.#timeout });
    return promise;
  }

  /** Rejects what waited past the request timeout (oldest first: every wait has the same). */
  #expire(now: number): void {
    for (const [n, p] of this.#pending) {
      if (p.by > now) return;
      this.#pending.delete(n);
      p.reject(new TimeoutError(`an answer from node ${p.node}`, this.#timeout));
    }
  }

  /** An answer came: the wait for `id` resolves with `value`, or rejects with `error`. */
  #settle(id: number, error: { name: string; message: string } | null, value?: unknown): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (error === null) p.resolve(value);
    else p.reject(this.#restore(error));
  }

  #fail(n: number, error: unknown): void {
    const p = this.#pending.get(n);
    if (!p) return;
    this.#pending.delete(n);
    p.reject(error);
  }

  #ask(node: string, op: string, args: unknown[]): Promise<unknown> {
    const id = this.#nextId++;
    const waiting = this.#wait(node, id);
    const req: Control = { t: "req", from: this.#host.nodeId, id, op, args };
    this.#broker.publish(CHANNEL.node(node), encodeControl(req)).then(
      (receivers) => {
        if (receivers === 0) this.#fail(id, new NodeUnavailableError("", node, "nobody listens"));
      },
      (e) => this.#fail(id, e),
    );
    return waiting;
  }

  /** Queues an answer to `node`; answers to one node in one turn go out in one message. */
  #answer(node: string, id: number, error: unknown, value?: unknown): void {
    if (error === null && value === undefined) {
      // a delivered send: its id alone, in binary
      const ids = this.#delivered.get(node);
      if (ids) ids.push(id);
      else this.#delivered.set(node, [id]);
    } else {
      let batch = this.#acks.get(node);
      if (!batch) this.#acks.set(node, batch = { t: "acks", acks: [] });
      batch.acks.push([
        id,
        error === null
          ? null
          : error instanceof Error
          ? { name: error.name, message: error.message }
          : { name: "Error", message: String(error) },
        value,
      ]);
    }
    if (this.#acksScheduled) return;
    this.#acksScheduled = true;
    queueMicrotask(() => {
      this.#acksScheduled = false;
      const answers: [string, Uint8Array][] = [];
      for (const [to, ids] of this.#delivered) answers.push([to, encodeAcks(ids)]);
      for (const [to, msg] of this.#acks) answers.push([to, encodeControl(msg)]);
      this.#delivered = new Map();
      this.#acks = new Map();
      for (const [to, payload] of answers) {
        this.#broker.publish(CHANNEL.node(to), payload).catch((error) =>
          this.#host.emit("error", { error, op: "answer", node: to })
        );
      }
    });
  }

  #onSelf(m: BrokerMessage): void {
    const kind = m.payload[0];
    if (kind === K.CONTROL) return this.#onControl(decodeControl(m.payload) as Control);
    if (kind === K.ACKS) {
      for (const id of decodeAcks(m.payload)) this.#settle(id, null);
      return;
    }
    if (kind === K.BATCH) {
      for (const part of unpackBatch(m.payload)) this.#onSend(part);
      return;
    }
    if (kind === K.SEND) this.#onSend(m.payload);
  }

  #onSend(payload: Uint8Array): void {
    const e = decodeData(payload);
    const [from, id, traceparent, tracestate] = e.fields;
    const deliver = () => Promise.resolve(this.#host.local("send", [id, e.data]));
    let sent: Promise<unknown>;
    try {
      const tel = this.#host.telemetry;
      const parent = contextOf({ traceparent, tracestate: tracestate || undefined });
      sent = parent && tel.tracing
        ? tel.run(
          `deliver ${id}`,
          SpanKind.CONSUMER,
          {
            [ATTR.SYSTEM]: "websocket",
            [ATTR.OPERATION_NAME]: "deliver",
            [ATTR.OPERATION_TYPE]: "process",
            [ATTR.CLIENT_ID]: id,
            [ATTR.NODE]: this.#host.nodeId,
          },
          deliver,
          parent,
        )
        : deliver();
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.then(() => this.#answer(from, e.n, null), (error) => this.#answer(from, e.n, error));
  }

  #onAll(m: BrokerMessage): void {
    const e = decodeData(m.payload);
    const [origin, ...except] = e.fields;
    if (origin === this.#host.nodeId) return; // delivered here already
    this.#host.broadcastLocal(e.data, except.length ? new Set(except) : undefined);
  }

  #onTopic(topic: string, m: BrokerMessage): void {
    const e = decodeData(m.payload);
    const [origin, , ...except] = e.fields;
    const pos = m.position;
    if (!pos) {
      if (origin !== this.#host.nodeId) {
        this.#host.publishLocal(topic, e.data, except.length ? new Set(except) : undefined);
      }
      return;
    }
    const last = this.#positions.get(topic);
    if (last && last.epoch === pos.epoch && pos.offset > last.offset + 1) {
      // pub/sub lost something (the broker's connection dropped): fill the gap from the history
      void this.#fill(topic, last, pos);
      return;
    }
    this.#deliver(topic, pos, e.data);
  }

  #deliver(topic: string, pos: StreamPosition, data: OutgoingData): void {
    const last = this.#positions.get(topic);
    if (last && last.epoch !== pos.epoch) this.#host.historyLost(topic, pos);
    else if (last && pos.offset <= last.offset) return; // already delivered (a gap fill)
    this.#positions.set(topic, pos);
    this.#host.deliverHistory(topic, pos, data);
  }

  /** Delivers what pub/sub lost between `last` and (including) `upTo`, from the history. */
  async #fill(topic: string, last: StreamPosition, upTo: StreamPosition): Promise<void> {
    try {
      const r = await this.history(topic, last);
      if (!r.recovered) {
        this.#host.historyLost(topic, r.position);
        this.#positions.set(topic, r.position);
        return;
      }
      for (const msg of r.messages) {
        if (msg.offset > upTo.offset) break;
        this.#deliver(topic, { offset: msg.offset, epoch: r.position.epoch }, msg.data);
      }
    } catch (error) {
      this.#host.emit("error", { error, op: "history", topic });
    }
  }

  #onControl(c: Control): void {
    switch (c.t) {
      case "hb":
        if (c.node !== this.#host.nodeId) this.#seen(c.node);
        return;
      case "leave":
        this.#down(c.node, "left");
        return;
      case "acks":
        for (const [id, error, value] of c.acks) this.#settle(id, error, value);
        return;
      case "req": {
        let result: Promise<unknown>;
        try {
          result = Promise.resolve(
            c.op === "count" ? this.#host.count() : this.#host.local(c.op, c.args),
          );
        } catch (error) {
          result = Promise.reject(error);
        }
        result.then(
          (value) => this.#answer(c.from, c.id, null, value ?? null),
          (error) => this.#answer(c.from, c.id, error),
        );
        return;
      }
    }
  }

  #restore(e: { name: string; message: string }): Error {
    const error = new Error(e.message);
    error.name = e.name;
    return error;
  }

  #seen(node: string): void {
    const known = this.#nodes.has(node);
    this.#nodes.set(node, performance.now());
    if (!known) this.#host.emit("nodeUp", { node });
  }

  #down(node: string, why: string): void {
    if (!this.#nodes.delete(node)) return;
    for (const [id, p] of this.#pending) {
      if (p.node !== node) continue;
      this.#pending.delete(id);
      p.reject(new NodeUnavailableError("", node, `the node is down (${why})`));
    }
    this.#host.emit("nodeDown", { node, reason: why });
  }

  async #announce(): Promise<void> {
    const me = this.#host.nodeId;
    try {
      await Promise.all([
        this.#broker.publish(CHANNEL.ctl, encodeControl({ t: "hb", node: me })),
        this.#broker.setAlive("nodes", me, "", this.#hb * 3),
      ]);
    } catch {
      // the broker is down: its "down" event was reported; heartbeats resume when it is back
    }
  }

  /**
   * Peers silent for 1¾ heartbeats are down: with a sweep every ¼ heartbeat, a dead node is
   * known within two heartbeats of its last one, and a live one may be ¾ of a heartbeat late
   * before it is wrongly judged. Not while our own broker link is down.
   */
  #sweep(now: number): void {
    if (this.#broker.state !== "up") return;
    for (const [node, seen] of this.#nodes) {
      if (now - seen > 1.75 * this.#hb) this.#down(node, "silent for two heartbeats");
    }
  }

  #refreshPeers(now: number): void {
    for (const node of this.#nodes.keys()) this.#nodes.set(node, now);
  }

  /** Our broker link is back: nobody is judged on our outage; histories are checked for gaps. */
  #onBrokerUp(): void {
    this.#refreshPeers(performance.now());
    void this.#announce();
    for (const [topic, last] of this.#positions) {
      void this.#fill(topic, last, { offset: Number.MAX_SAFE_INTEGER, epoch: last.epoch });
    }
  }
}
