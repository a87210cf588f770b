/**
 * {@linkcode Broker} on Redis, through `npm:ioredis` (chosen by measurement under Deno; see
 * docs/cluster-broker.md).
 *
 * Two connections: one for commands (publishes, scripts) and one in subscriber mode. The broker is
 * `"up"` while both are ready and every channel with handlers is subscribed; a drop of either is
 * one `"down"` event, after which everything in flight rejects and new calls reject at once.
 * Reconnection (exponential delays) and resubscription are done here rather than by ioredis, so
 * `"up"` is reported only once the subscriptions are really back.
 *
 * Keys and channels are namespaced by `prefix` (default `"wse:"`); a history keeps a stream
 * `<prefix>h:{<channel>}:s` and a meta hash `<prefix>h:{<channel>}:m` (same hash tag, so both
 * live in one slot of a Redis Cluster, although this class talks to one Redis only).
 *
 * Wire format of a message on a channel: one byte 0x00 then the payload, or, for a message with
 * history, 0x01 `<offset>:<epoch>:` then the payload (written by the history Lua script).
 *
 * @example
 * ```ts ignore
 * import { RedisBroker } from "./redis_broker.ts";
 * const broker = await RedisBroker.connect({ url: "redis://127.0.0.1:6379" });
 * await broker.subscribe("greetings", (m) => console.log(new TextDecoder().decode(m.payload)));
 * await broker.publish("greetings", new TextEncoder().encode("hello"));
 * await broker.close();
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Redis, type RedisOptions } from "ioredis";
import { deferred } from "../../util/async.ts";
import {
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
} from "./broker.ts";

/**
 * Options of {@linkcode RedisBroker.connect}.
 *
 * @example
 * ```ts
 * import type { RedisBrokerOptions } from "./redis_broker.ts";
 * const options: RedisBrokerOptions = { url: "redis://127.0.0.1:6379/0", prefix: "chat:" };
 * ```
 */
export interface RedisBrokerOptions {
  /** `redis://[user:password@]host:port[/db]`; default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Prepended to every key and channel; default `"wse:"`. */
  prefix?: string;
  /** How long the first connection may take before `connect` rejects; default 5000 ms. */
  connectTimeoutMs?: number;
  /** First reconnection delay, doubled per failed attempt; default 50 ms. */
  reconnectMinDelayMs?: number;
  /** Longest reconnection delay; default 2000 ms. */
  reconnectMaxDelayMs?: number;
  /** Most commands in one pipelined write; a longer burst is split; default 1024. */
  maxBatch?: number;
  /**
   * How long a history's offset counter and epoch outlive its last publish; default 30 days.
   * Never shorter than the history's own `ttlMs`.
   */
  historyMetaTtlMs?: number;
  /** How long `close` waits for in-flight operations before cutting the connection; 2000 ms. */
  closeTimeoutMs?: number;
  /**
   * How long a command may wait for its reply before the connection counts as lost (a hung
   * Redis closes nothing); default 5000 ms. The connection is then reopened.
   */
  commandTimeoutMs?: number;
}

// Publish with history, after Centrifugo's broker_history_add_stream.lua. The offset counter
// ("s") and epoch ("e") live in the meta hash; an epoch is created when the hash is missing, and
// then any old stream is dropped (its offsets belong to the lost epoch).
// KEYS: stream, meta. ARGV: payload, size, ttlMs, metaTtlMs, epochCandidate, channel.
const HISTORY_PUBLISH_LUA = `
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
end
local offset = string.format('%d', redis.call('hincrby', KEYS[2], 's', 1))
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[2], offset, 'd', ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[4])
local receivers = redis.call('publish', ARGV[6], '\\1' .. offset .. ':' .. epoch .. ':' .. ARGV[1])
return {tonumber(offset), epoch, receivers}
`;

// Read a history after a position. Returns {epoch, top, status, entries}: status 1 = recovered
// (entries follow), 0 = epoch changed, -1 = the position left the window.
// KEYS: stream, meta. ARGV: sinceOffset (-1: whole window), sinceEpoch, limit, epochCandidate,
// metaTtlMs.
const HISTORY_READ_LUA = `
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('pexpire', KEYS[2], ARGV[5])
end
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
local since = tonumber(ARGV[1])
if since < 0 then
  return {epoch, top, 1, redis.call('xrange', KEYS[1], '-', '+', 'COUNT', ARGV[3])}
end
if ARGV[2] ~= epoch then return {epoch, top, 0, {}} end
if since == top then return {epoch, top, 1, {}} end
if since > top then return {epoch, top, -1, {}} end
local entries = redis.call('xrange', KEYS[1], string.format('%d', since + 1), '+', 'COUNT', ARGV[3])
if #entries == 0 or tonumber(string.match(entries[1][1], '^%d+')) ~= since + 1 then
  return {epoch, top, -1, {}}
end
return {epoch, top, 1, entries}
`;

// Liveness: a sorted set (member -> expiry on the Redis clock) and a hash (member -> value). A
// listing costs O(log n + members) where SCAN over keys would walk the whole keyspace.
// KEYS: zset, hash. ARGV: member, value, ttlMs.
const ALIVE_SET_LUA = `
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('zadd', KEYS[1], now + ttl, ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
for _, k in ipairs(KEYS) do
  if redis.call('pttl', k) < ttl then redis.call('pexpire', k, ttl) end
end
return 1
`;

// KEYS: zset, hash. Drops expired members, returns {member, value, ttlMs, ...}.
const ALIVE_LIST_LUA = `
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('zrangebyscore', KEYS[1], '-inf', now)
for _, m in ipairs(dead) do redis.call('hdel', KEYS[2], m) end
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local live = redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = redis.call('hget', KEYS[2], live[i]) or ''
  out[#out + 1] = tonumber(live[i + 1]) - now
end
return out
`;

// KEYS: zset, hash. ARGV: member.
const ALIVE_REMOVE_LUA = `
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
`;

type Reply = unknown;
/** The commands `defineCommand` adds (on the client and on its pipelines). */
interface Scripts {
  wseHistoryPublish(...args: (string | Buffer | number)[]): Promise<Reply>;
  wseHistoryReadBuffer(...args: (string | number)[]): Promise<Reply>;
  wseAliveSet(...args: (string | number)[]): Promise<Reply>;
  wseAliveList(...args: string[]): Promise<Reply>;
  wseAliveRemove(...args: string[]): Promise<Reply>;
}
type Pipe = ReturnType<Redis["pipeline"]> & Scripts;

/**
 * A command waiting for the next write. `send` issues it on a pipeline, or, alone in its batch,
 * on the client itself (same methods; there each returns the reply's promise), which skips the
 * pipeline's own bookkeeping on the round-trip path.
 */
interface Queued {
  send(target: Pipe): unknown;
  resolve(reply: Reply): void;
  reject(error: BrokerError): void;
}

/** Commands written together; settled once, by their replies or by a lost connection. */
interface Batch {
  readonly items: Queued[];
  /** The connection it was written to. */
  readonly client: Redis;
  /** `performance.now()` when it was written. */
  readonly sentAt: number;
  settled: boolean;
  /** Resolves when the batch is settled either way (for a graceful close). */
  readonly done: Promise<void>;
}

interface ChannelEntry {
  readonly handlers: Set<MessageHandler>;
  /** True while the broker holds the subscription on the current connection. */
  subscribed: boolean;
  /** Serializes this channel's SUBSCRIBE/UNSUBSCRIBE, so the refcount matches the broker. */
  chain: Promise<void>;
}

const HISTORY_LIMIT = 1000;
const RESUBSCRIBE_CHUNK = 1000;

function isReplyError(e: unknown): e is Error {
  return e instanceof Error && e.name === "ReplyError";
}

/** Maps a client error to ours: Redis answering with an error is a BrokerError; the rest is the
 * connection (LOADING/BUSY/MASTERDOWN mean Redis is not ready to serve either). */
function brokerError(e: unknown): BrokerError {
  if (e instanceof BrokerError) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (isReplyError(e) && !/^(LOADING|BUSY|MASTERDOWN|TRYAGAIN)\b/.test(message)) {
    return new BrokerError(message, { cause: e });
  }
  return new BrokerUnavailableError(`redis: ${message}`, { cause: e });
}

function parseInt10(b: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + (b[i] - 48);
  return n;
}

/**
 * The Redis {@linkcode Broker}. Create it with {@linkcode RedisBroker.connect}.
 *
 * @example
 * ```ts ignore
 * import { RedisBroker } from "./redis_broker.ts";
 * const broker = await RedisBroker.connect({ url: "redis://127.0.0.1:6379" });
 * const p = await broker.publishWithHistory("news", new Uint8Array([1]), {
 *   size: 100,
 *   ttlMs: 60_000,
 * });
 * const r = await broker.history("news", { since: { offset: p.offset - 1, epoch: p.epoch } });
 * console.log(r.recovered && r.messages.length); // 1
 * await broker.close();
 * ```
 */
export class RedisBroker implements Broker {
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #maxBatch: number;
  readonly #metaTtlMs: number;
  readonly #closeTimeoutMs: number;
  readonly #commandTimeoutMs: number;
  #watchdog: ReturnType<typeof setTimeout> | undefined;
  #state: BrokerState | "connecting" = "connecting";
  #cmdReady = false;
  #subReady = false;
  /** Counts subscriber connections, so work for an old one is dropped. */
  #subGeneration = 0;
  /** True once every channel with handlers is subscribed on the current subscriber connection. */
  #subSynced = false;
  /** How many channels the last resubscription restored. */
  #resubscribed = 0;
  #lastError: Error = new BrokerUnavailableError("redis connection lost");
  #queue: Queued[] = [];
  #flushScheduled = false;
  readonly #inFlight = new Set<Batch>();
  readonly #channels = new Map<string, ChannelEntry>();
  readonly #listeners = new Set<(event: BrokerEvent) => void>();
  #lastChannelBytes: Buffer | undefined;
  #lastChannel = "";
  readonly #epochBase = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  #epochCounter = 0;

  private constructor(options: RedisBrokerOptions) {
    this.#prefix = options.prefix ?? "wse:";
    this.#maxBatch = Math.max(1, options.maxBatch ?? 1024);
    this.#metaTtlMs = options.historyMetaTtlMs ?? 30 * 24 * 3600_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.#commandTimeoutMs = Math.max(1, options.commandTimeoutMs ?? 5000);
    const min = options.reconnectMinDelayMs ?? 50;
    const max = options.reconnectMaxDelayMs ?? 2000;
    const clientOptions: RedisOptions = {
      lazyConnect: true,
      connectTimeout: options.connectTimeoutMs ?? 5000,
      // Fail fast instead of queueing while down: a publish must reject, not wait unseen.
      enableOfflineQueue: false,
      // In-flight commands are rejected by us on a drop; a resend could deliver twice.
      autoResendUnfulfilledCommands: false,
      // We resubscribe ourselves, to know when it is done.
      autoResubscribe: false,
      maxRetriesPerRequest: null,
      retryStrategy: (attempt) => Math.min(max, min * 2 ** Math.min(attempt - 1, 16)),
    };
    const url = options.url ?? "redis://127.0.0.1:6379";
    this.#cmd = new Redis(url, clientOptions);
    this.#sub = new Redis(url, clientOptions);
    this.#cmd.defineCommand("wseHistoryPublish", { numberOfKeys: 2, lua: HISTORY_PUBLISH_LUA });
    this.#cmd.defineCommand("wseHistoryRead", { numberOfKeys: 2, lua: HISTORY_READ_LUA });
    this.#cmd.defineCommand("wseAliveSet", { numberOfKeys: 2, lua: ALIVE_SET_LUA });
    this.#cmd.defineCommand("wseAliveList", { numberOfKeys: 2, lua: ALIVE_LIST_LUA });
    this.#cmd.defineCommand("wseAliveRemove", { numberOfKeys: 2, lua: ALIVE_REMOVE_LUA });
    for (const client of [this.#cmd, this.#sub]) {
      client.on("error", (e: Error) => (this.#lastError = e));
      client.on("close", () => this.#onClose(client));
    }
    this.#cmd.on("ready", () => {
      this.#cmdReady = true;
      this.#maybeUp();
    });
    this.#sub.on("ready", () => {
      this.#subReady = true;
      this.#subSynced = false;
      void this.#resubscribe(++this.#subGeneration);
    });
    this.#sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
      this.#deliver(channel, message);
    });
  }

  /**
   * Connects to Redis and resolves once both connections are ready. Rejects with
   * {@linkcode BrokerUnavailableError} when the first attempt fails (there is no retry before the
   * broker was ever up) or the connections are not ready within `connectTimeoutMs`; nothing is
   * left running then.
   *
   * @example
   * ```ts ignore
   * import { RedisBroker } from "./redis_broker.ts";
   * const broker = await RedisBroker.connect({ url: "redis://127.0.0.1:6379", prefix: "app:" });
   * await broker.close();
   * ```
   */
  static async connect(options: RedisBrokerOptions = {}): Promise<RedisBroker> {
    const broker = new RedisBroker(options);
    try {
      await Promise.all([broker.#cmd.connect(), broker.#sub.connect()]);
      const up = deferred();
      const timer = setTimeout(
        () => up.reject(new BrokerUnavailableError("redis: not ready in time")),
        options.connectTimeoutMs ?? 5000,
      );
      const stop = broker.on((e) => e.type === "up" && up.resolve());
      if (broker.#state === "up") up.resolve();
      await up.promise.finally(() => {
        clearTimeout(timer);
        stop();
      });
      return broker;
    } catch (e) {
      await broker.close();
      throw brokerError(e);
    }
  }

  /** The current state. */
  get state(): BrokerState {
    return this.#state === "connecting" ? "down" : this.#state;
  }

  // ------------------------------------------------------------------ connection state

  #emit(event: BrokerEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch { /* a listener's failure is its own */ }
    }
  }

  #onClose(client: Redis): void {
    if (client === this.#cmd) this.#cmdReady = false;
    else {
      this.#subReady = false;
      this.#subSynced = false;
      for (const entry of this.#channels.values()) entry.subscribed = false;
    }
    if (this.#state !== "up") return;
    this.#state = "down";
    const error = new BrokerUnavailableError(`redis connection lost: ${this.#lastError.message}`, {
      cause: this.#lastError,
    });
    this.#failPending(error);
    this.#emit({ type: "down", error });
  }

  /** Rejects everything queued or in flight (their fate at the broker is unknown). */
  #failPending(error: BrokerUnavailableError): void {
    const queued = this.#queue;
    this.#queue = [];
    for (const q of queued) q.reject(error);
    for (const batch of this.#inFlight) this.#settle(batch, error);
    this.#inFlight.clear();
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
  }

  async #resubscribe(generation: number): Promise<void> {
    const wanted = [...this.#channels.entries()].filter(([, e]) => e.handlers.size > 0);
    let restored = wanted.length;
    try {
      for (let i = 0; i < wanted.length; i += RESUBSCRIBE_CHUNK) {
        const chunk = wanted.slice(i, i + RESUBSCRIBE_CHUNK);
        await this.#sub.subscribe(...chunk.map(([ch]) => this.#prefix + ch));
        if (generation !== this.#subGeneration) return;
        for (const [, e] of chunk) e.subscribed = true;
      }
      // Handlers removed while this ran leave subscriptions nobody wants: drop them before "up".
      const stale = wanted.filter(([, e]) => e.handlers.size === 0);
      if (stale.length) {
        await this.#sub.unsubscribe(...stale.map(([ch]) => this.#prefix + ch));
        if (generation !== this.#subGeneration) return;
        restored -= stale.length;
        for (const [ch, e] of stale) {
          e.subscribed = false;
          if (this.#channels.get(ch) === e && e.handlers.size === 0) this.#channels.delete(ch);
        }
      }
    } catch (e) {
      if (generation !== this.#subGeneration || this.#state === "closed") return;
      this.#lastError = e instanceof Error ? e : new Error(String(e));
      // Start over on a fresh connection (still ours: the generation did not change).
      this.#sub.disconnect(true);
      return;
    }
    this.#subSynced = true;
    this.#resubscribed = restored;
    this.#maybeUp();
  }

  #maybeUp(): void {
    if (!this.#cmdReady || !this.#subReady || !this.#subSynced) return;
    if (this.#state !== "down" && this.#state !== "connecting") return;
    this.#state = "up";
    this.#emit({ type: "up", resubscribed: this.#resubscribed });
  }

  /** Listens to state changes and errors; returns the function that stops listening. */
  on(listener: (event: BrokerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #unavailable(): BrokerUnavailableError {
    return this.#state === "closed"
      ? new BrokerClosedError("the broker is closed")
      : new BrokerUnavailableError(`redis is unavailable: ${this.#lastError.message}`, {
        cause: this.#lastError,
      });
  }

  // ------------------------------------------------------------------ batched commands

  /** Queues a command for the next pipelined write (this turn of the event loop). */
  #enqueue(send: (target: Pipe) => unknown): Promise<Reply> {
    if (this.#state !== "up") return Promise.reject(this.#unavailable());
    return new Promise<Reply>((resolve, reject) => {
      this.#queue.push({ send, resolve, reject });
      if (this.#queue.length >= this.#maxBatch) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(() => {
          this.#flushScheduled = false;
          this.#flush();
        });
      }
    });
  }

  #flush(): void {
    const items = this.#queue;
    if (items.length === 0) return;
    this.#queue = [];
    if (items.length === 1) {
      const reply = items[0].send(this.#cmd as unknown as Pipe) as Promise<unknown>;
      this.#track(this.#cmd, items, reply.then((r) => [[null, r]], (e) => [[e, undefined]]));
      return;
    }
    const pipe = this.#cmd.pipeline() as Pipe;
    for (const q of items) q.send(pipe);
    this.#track(this.#cmd, items, pipe.exec());
  }

  /** Runs one command outside the batches (subscriptions), rejected like them on a drop. */
  #run(command: () => Promise<unknown>): Promise<Reply> {
    if (this.#state !== "up") return Promise.reject(this.#unavailable());
    return new Promise<Reply>((resolve, reject) => {
      this.#track(
        this.#sub,
        [{ send() {}, resolve, reject }],
        command().then((reply) => [[null, reply]], (e) => [[e, undefined]]),
      );
    });
  }

  /** Settles `items` with the replies of `exec`, unless a lost connection settled them first. */
  #track(
    client: Redis,
    items: Queued[],
    exec: Promise<[Error | null, unknown][] | null>,
  ): void {
    let markDone!: () => void;
    const batch: Batch = {
      items,
      client,
      sentAt: performance.now(),
      settled: false,
      done: new Promise((r) => (markDone = r)),
    };
    this.#inFlight.add(batch);
    if (this.#watchdog === undefined) this.#armWatchdog(this.#commandTimeoutMs);
    exec.then(
      (results) => {
        if (batch.settled) return;
        batch.settled = true;
        this.#inFlight.delete(batch);
        for (let i = 0; i < items.length; i++) {
          const [err, value] = results?.[i] ?? [new Error("no reply"), undefined];
          if (err) items[i].reject(brokerError(err));
          else items[i].resolve(value);
        }
      },
      (e) => this.#settle(batch, brokerError(e)),
    ).finally(markDone);
  }

  /**
   * A Redis that hangs (stopped, overloaded, a dead peer behind a silent network) closes nothing:
   * without this, its replies would be awaited forever. When the oldest batch in flight has
   * waited `commandTimeoutMs`, its connection is dropped and reopened, which is a `"down"`.
   * One timer for all batches, armed only while something is in flight.
   */
  #armWatchdog(ms: number): void {
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined;
      const oldest = this.#inFlight.values().next().value;
      if (!oldest) return;
      const waited = performance.now() - oldest.sentAt;
      if (waited < this.#commandTimeoutMs) {
        this.#armWatchdog(this.#commandTimeoutMs - waited);
        return;
      }
      this.#lastError = new BrokerUnavailableError(
        `redis did not answer within ${this.#commandTimeoutMs} ms`,
      );
      // Destroyed, not ended: a hung peer would never answer a FIN. The close that follows fails
      // everything in flight, and ioredis reconnects.
      oldest.client.stream?.destroy();
      if (this.#inFlight.size) this.#armWatchdog(this.#commandTimeoutMs);
    }, Math.max(1, ms));
  }

  #settle(batch: Batch, error: BrokerError): void {
    if (batch.settled) return;
    batch.settled = true;
    this.#inFlight.delete(batch);
    for (const q of batch.items) q.reject(error);
  }

  // ------------------------------------------------------------------ pub/sub

  /** Publishes `payload` on `channel`; resolves with the receiver count (see {@linkcode Broker}). */
  publish(channel: string, payload: Uint8Array): Promise<number> {
    const framed = Buffer.allocUnsafe(payload.byteLength + 1);
    framed[0] = 0;
    framed.set(payload, 1);
    const key = this.#prefix + channel;
    return this.#enqueue((pipe) => pipe.publish(key, framed)) as Promise<number>;
  }

  /** Publishes with history in one atomic script (see {@linkcode Broker.publishWithHistory}). */
  async publishWithHistory(
    channel: string,
    payload: Uint8Array,
    options: HistoryOptions,
  ): Promise<HistoryPublish> {
    const size = Math.floor(options.size);
    const ttlMs = Math.ceil(options.ttlMs);
    if (!(size >= 1) || !(ttlMs >= 1)) {
      throw new RangeError("history size and ttlMs must be at least 1");
    }
    const [stream, meta] = this.#historyKeys(channel);
    const args = [
      stream,
      meta,
      Buffer.from(payload), // a copy: the caller may reuse its bytes before the write
      size,
      ttlMs,
      Math.max(ttlMs, this.#metaTtlMs),
      this.#epochCandidate(),
      this.#prefix + channel,
    ];
    const [offset, epoch, receivers] = await this.#enqueue((pipe) =>
      pipe.wseHistoryPublish(...args)
    ) as [number, string, number];
    return { offset, epoch, receivers };
  }

  /** Reads the history after a position (see {@linkcode Broker.history}). */
  async history(channel: string, query: HistoryQuery = {}): Promise<HistoryResult> {
    const limit = Math.max(1, Math.floor(query.limit ?? HISTORY_LIMIT));
    const [stream, meta] = this.#historyKeys(channel);
    const reply = await this.#enqueue((pipe) =>
      pipe.wseHistoryReadBuffer(
        stream,
        meta,
        query.since ? query.since.offset : -1,
        query.since ? query.since.epoch : "",
        limit,
        this.#epochCandidate(),
        this.#metaTtlMs,
      )
    ) as [Buffer, number, number, [Buffer, Buffer[]][]];
    const [epochBytes, top, status, entries] = reply;
    const position: StreamPosition = { offset: top, epoch: epochBytes.toString("latin1") };
    if (status === 0) return { recovered: false, reason: "epoch", position };
    if (status < 0) return { recovered: false, reason: "window", position };
    const messages: HistoryMessage[] = entries.map(([id, fields]) => {
      const dash = id.indexOf(45);
      const payload = fields[1];
      return {
        offset: parseInt10(id, 0, dash < 0 ? id.length : dash),
        payload: new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength),
      };
    });
    const last = messages.length ? messages[messages.length - 1].offset : query.since?.offset ?? 0;
    return { recovered: true, messages, truncated: last < top, position };
  }

  #historyKeys(channel: string): [string, string] {
    const base = `${this.#prefix}h:{${channel}}`;
    return [`${base}:s`, `${base}:m`];
  }

  /** A fresh epoch for the script to use if the history has none (a new one per call, so an
   * epoch is never reused after a history was lost). */
  #epochCandidate(): string {
    return `${this.#epochBase}${(this.#epochCounter++).toString(36)}`;
  }

  /** Adds a handler; the first one of a channel subscribes (see {@linkcode Broker.subscribe}). */
  async subscribe(channel: string, handler: MessageHandler): Promise<void> {
    if (this.#state !== "up") throw this.#unavailable();
    let entry = this.#channels.get(channel);
    if (!entry) {
      entry = { handlers: new Set(), subscribed: false, chain: Promise.resolve() };
      this.#channels.set(channel, entry);
    }
    const had = entry.handlers.has(handler);
    entry.handlers.add(handler);
    try {
      await this.#reconcile(channel, entry);
    } catch (e) {
      if (!had) {
        entry.handlers.delete(handler);
        this.#reconcile(channel, entry).catch(() => {});
      }
      throw e;
    }
  }

  /** Removes a handler; the last one of a channel unsubscribes. */
  async unsubscribe(channel: string, handler: MessageHandler): Promise<void> {
    const entry = this.#channels.get(channel);
    if (!entry || !entry.handlers.delete(handler)) return;
    // A lost connection took the subscription with it; resubscription skips empty channels.
    await this.#reconcile(channel, entry).catch((e) => {
      if (!(e instanceof BrokerUnavailableError)) throw e;
    });
  }

  /** Brings the broker subscription of `channel` in line with its handler count, one at a time. */
  #reconcile(channel: string, entry: ChannelEntry): Promise<void> {
    const step = entry.chain.then(async () => {
      const want = entry.handlers.size > 0;
      if (want && !entry.subscribed) {
        await this.#run(() => this.#sub.subscribe(this.#prefix + channel));
        entry.subscribed = true;
      } else if (!want && entry.subscribed) {
        await this.#run(() => this.#sub.unsubscribe(this.#prefix + channel));
        entry.subscribed = false;
      }
    }).finally(() => {
      if (entry.handlers.size === 0 && !entry.subscribed && entry.chain === settled) {
        this.#channels.delete(channel);
      }
    });
    const settled: Promise<void> = step.catch(() => {});
    entry.chain = settled;
    return step;
  }

  #deliver(channelBytes: Buffer, message: Buffer): void {
    // Messages come in runs on one channel: compare bytes rather than decode the name each time.
    if (!this.#lastChannelBytes?.equals(channelBytes)) {
      const name = channelBytes.toString("utf8");
      if (!name.startsWith(this.#prefix)) return;
      this.#lastChannelBytes = channelBytes;
      this.#lastChannel = name.slice(this.#prefix.length);
    }
    const channel = this.#lastChannel;
    const entry = this.#channels.get(channel);
    if (!entry || entry.handlers.size === 0) return;
    let msg: BrokerMessage;
    if (message[0] === 0) {
      msg = { channel, payload: this.#view(message, 1) };
    } else if (message[0] === 1) {
      const colon1 = message.indexOf(58, 1);
      const colon2 = colon1 < 0 ? -1 : message.indexOf(58, colon1 + 1);
      if (colon2 < 0) return this.#reportForeign(channel);
      msg = {
        channel,
        payload: this.#view(message, colon2 + 1),
        position: {
          offset: parseInt10(message, 1, colon1),
          epoch: message.toString("latin1", colon1 + 1, colon2),
        },
      };
    } else {
      return this.#reportForeign(channel);
    }
    for (const handler of entry.handlers) {
      try {
        handler(msg);
      } catch (e) {
        this.#emit({ type: "error", error: e instanceof Error ? e : new Error(String(e)) });
      }
    }
  }

  #view(b: Buffer, from: number): Uint8Array {
    return new Uint8Array(b.buffer, b.byteOffset + from, b.byteLength - from);
  }

  #reportForeign(channel: string): void {
    this.#emit({
      type: "error",
      error: new BrokerError(`a message on "${channel}" is not in the broker's format`),
    });
  }

  // ------------------------------------------------------------------ liveness

  #aliveKeys(group: string): [string, string] {
    const base = `${this.#prefix}alive:{${group}}`;
    return [`${base}:z`, `${base}:h`];
  }

  /** Marks a member alive for `ttlMs` (see {@linkcode Broker.setAlive}). */
  async setAlive(group: string, member: string, value: string, ttlMs: number): Promise<void> {
    const ttl = Math.ceil(ttlMs);
    if (!(ttl >= 1)) throw new RangeError("ttlMs must be at least 1");
    const [z, h] = this.#aliveKeys(group);
    await this.#enqueue((pipe) => pipe.wseAliveSet(z, h, member, value, ttl));
  }

  /** Removes a member (see {@linkcode Broker.removeAlive}). */
  async removeAlive(group: string, member: string): Promise<void> {
    const [z, h] = this.#aliveKeys(group);
    await this.#enqueue((pipe) => pipe.wseAliveRemove(z, h, member));
  }

  /** The live members of a group (see {@linkcode Broker.listAlive}). */
  async listAlive(group: string): Promise<Map<string, AliveEntry>> {
    const [z, h] = this.#aliveKeys(group);
    const flat = await this.#enqueue((pipe) => pipe.wseAliveList(z, h)) as (string | number)[];
    const out = new Map<string, AliveEntry>();
    for (let i = 0; i + 2 < flat.length; i += 3) {
      out.set(String(flat[i]), { value: String(flat[i + 1]), ttlMs: Number(flat[i + 2]) });
    }
    return out;
  }

  // ------------------------------------------------------------------ close

  /** Closes both connections; nothing is left running once it resolves. */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    const wasUp = this.#state === "up";
    if (wasUp) this.#flush();
    this.#state = "closed";
    this.#channels.clear();
    // Let what was already written finish, within a bound, then cut.
    if (wasUp && this.#inFlight.size) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all([...this.#inFlight].map((b) => b.done)),
        new Promise((r) => (timer = setTimeout(r, this.#closeTimeoutMs))),
      ]);
      clearTimeout(timer);
    }
    this.#failPending(new BrokerClosedError("the broker is closed"));
    await Promise.all([this.#cmd, this.#sub].map((client) => this.#end(client)));
    this.#listeners.clear();
  }

  /** Disconnects `client` for good and waits for its socket to be gone. */
  async #end(client: Redis): Promise<void> {
    if (client.status === "end") return;
    // Between a drop and the next attempt there is no socket: disconnecting only clears the
    // retry timer, and no "end" follows.
    if (client.status === "reconnecting" || client.status === "close") {
      client.disconnect();
      return;
    }
    const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
    client.disconnect();
    await ended;
  }
}
