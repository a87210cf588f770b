/**
 * The byte stream a {@linkcode WebSocketConnection} drives: one small interface over a Deno
 * TCP/TLS connection (`Deno.Conn`) and over a `node:net` socket (what `node:http`'s `'upgrade'`
 * event hands out), so the WebSocket layer never knows which one it has.
 *
 * Reads are pulled (`read(done)`), so not calling `read` is read back-pressure: the kernel buffer
 * fills and TCP stalls the peer. Writes are whole (`write()` resolves once every byte was handed
 * to the kernel, or to Node's socket buffer below its high watermark).
 *
 * @module
 */

import type { Socket } from "node:net";
import type { DenoAddr, DenoConn, RuntimeSocket } from "../platform/types.ts";
import { recycleBuffer, takeBuffer } from "./tcp_buffers.ts";

/**
 * A network address as the streams report it.
 *
 * @example
 * ```ts
 * import type { StreamAddr } from "@wse/engine/transport";
 * const addr: StreamAddr = { hostname: "127.0.0.1", port: 8080 };
 * console.log(`${addr.hostname}:${addr.port}`);
 * ```
 */
export interface StreamAddr {
  /** IP address or host name. */
  readonly hostname: string;
  /** TCP port. */
  readonly port: number;
}

/**
 * What the WebSocket layer needs from a socket.
 *
 * @example
 * ```ts
 * import { denoConnStream } from "./tcp_stream.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 8080 });
 * const stream = denoConnStream(conn);
 * await stream.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
 * stream.read((bytes) => {
 *   console.log(bytes);
 *   stream.close();
 * });
 * ```
 */
export interface ByteStream {
  /**
   * Reads once: calls `done` (never synchronously) with the next received bytes, or with `null`
   * at end of stream (EOF, reset, or after `close()`). One read at a time. The bytes are valid
   * until the next `read`: the stream may read into the same buffer again (copy what must
   * outlive it). A callback rather than a promise: an idle connection always has a read pending,
   * and this keeps it to the runtime's read and one reaction.
   */
  read(done: (bytes: Uint8Array | null) => void): void;
  /**
   * The caller keeps views of what the last `read()` returned: the stream will not read into that
   * memory again (it takes a new buffer instead).
   */
  retain(): void;
  /** Writes every byte; rejects when the socket is closed or broken. */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * True when the bytes given to `write()` may be reused once it resolved (the runtime is done
   * with them); false when the stream may still hold them (Node streams buffer the chunk).
   */
  readonly reusableAfterWrite: boolean;
  /** Closes the socket at once (idempotent). A pending `read` ends with `null`. */
  close(): void;
  /**
   * Half-closes (FIN) after what was written, discards what the peer still sends until it closes
   * or `timeoutMs` passes, then closes: an HTTP error answer is read by the client instead of
   * being lost to a reset. No read may be pending.
   */
  lingerClose(timeoutMs: number): Promise<void>;
  /** True once `close()` was called or the peer's end was seen and the socket was torn down. */
  readonly isClosed: boolean;
  /** Local address, when known. */
  readonly localAddr?: StreamAddr;
  /** Remote address, when known. */
  readonly remoteAddr?: StreamAddr;
}

/**
 * One `read` of `stream` as a promise (for loops that await, like reading an HTTP head).
 *
 * @example
 * ```ts
 * import { denoConnStream, readOnce } from "./tcp_stream.ts";
 * const stream = denoConnStream(await Deno.connect({ hostname: "127.0.0.1", port: 8080 }));
 * console.log(await readOnce(stream));
 * stream.close();
 * ```
 */
export function readOnce(stream: ByteStream): Promise<Uint8Array | null> {
  return new Promise((resolve) => stream.read(resolve));
}

/** The read buffer of a connection waiting for data: all an idle connection pins. */
const IDLE_READ = 512;

// Idle read buffers are slots cut from shared 64 KiB slabs: an idle connection has no ArrayBuffer
// of its own, only a view. A slot goes back to the free list once its stream is closed and no
// read into it is pending; a slab is freed once none of its slots is referenced.
const SLOT_SLAB = 64 * 1024;
const FREE_SLOTS_KEPT = 4096;
const freeSlots: Uint8Array[] = [];
let slotSlab = new Uint8Array(0);
let slotOffset = 0;

function takeSlot(): Uint8Array {
  const free = freeSlots.pop();
  if (free !== undefined) return free;
  if (slotOffset + IDLE_READ > slotSlab.length) {
    slotSlab = new Uint8Array(SLOT_SLAB);
    slotOffset = 0;
  }
  slotOffset += IDLE_READ;
  return slotSlab.subarray(slotOffset - IDLE_READ, slotOffset);
}
/** While data flows, reads go into a pooled buffer of this size, doubling while reads fill it. */
const FLOW_READ = 64 * 1024;
const MAX_READ = 256 * 1024;

function netAddr(addr: DenoAddr): StreamAddr | undefined {
  return addr.transport === "tcp" ? { hostname: addr.hostname!, port: addr.port! } : undefined;
}

/**
 * Wraps a socket the runtime gave (`runtime.dialTcp`, `runtime.listenTcp`): a Deno connection or
 * a `node:net` socket.
 *
 * @example
 * ```ts
 * import { runtime } from "../platform/runtime.ts";
 * import { socketStream } from "./tcp_stream.ts";
 * const stream = socketStream(await runtime.dialTcp({ hostname: "127.0.0.1", port: 8080 }));
 * stream.close();
 * ```
 */
export function socketStream(socket: RuntimeSocket): ByteStream {
  return socket.kind === "deno"
    ? new DenoConnStream(socket.conn)
    : new NodeSocketStream(socket.socket);
}

/**
 * Wraps a Deno TCP or TLS connection. Sets `TCP_NODELAY` (Nagle off) where the connection
 * supports it. Reads go straight into a buffer the stream reuses (no copy): a 512-byte slot of a
 * shared slab while the socket is quiet, so an idle connection pins little memory, and once a
 * read fills it (data flows) a pooled buffer from 64 KiB, doubling while reads fill it (up to
 * 256 KiB), given back to the pool as soon as a read comes back short.
 *
 * @example
 * ```ts
 * import { denoConnStream } from "./tcp_stream.ts";
 * const stream = denoConnStream(await Deno.connect({ hostname: "127.0.0.1", port: 8080 }));
 * stream.close();
 * ```
 */
export function denoConnStream(conn: DenoConn): ByteStream {
  return new DenoConnStream(conn);
}

class DenoConnStream implements ByteStream {
  readonly reusableAfterWrite = true;
  readonly #conn: DenoConn;
  #idleBuf: Uint8Array | undefined;
  #flowBuf: Uint8Array | undefined;
  // A pooled buffer the last read returned a view of: back to the pool at the next read.
  #spent: Uint8Array | undefined;
  #flowing = false;
  #flowSize = FLOW_READ;
  // The buffer the last read went into, and whether that read is still pending (then `#done`).
  #last: Uint8Array | undefined;
  #reading = false;
  #done: ((bytes: Uint8Array | null) => void) | undefined;
  // Made here, not in read(): a closure made there would keep that call's `done` alive.
  readonly #afterReadFn = (n: number | null) => this.#afterRead(n);
  // A failed read (reset, or closed under us) ends the stream.
  readonly #failedFn = () => this.#afterRead(null);
  #closed = false;

  constructor(conn: DenoConn) {
    this.#conn = conn;
    const nd = (conn as { setNoDelay?: (on?: boolean) => void }).setNoDelay;
    if (typeof nd === "function") {
      try {
        nd.call(conn, true);
      } catch { /* not a TCP socket underneath */ }
    }
  }

  get localAddr(): StreamAddr | undefined {
    return netAddr(this.#conn.localAddr);
  }

  get remoteAddr(): StreamAddr | undefined {
    return netAddr(this.#conn.remoteAddr);
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  read(done: (bytes: Uint8Array | null) => void): void {
    if (this.#spent !== undefined) {
      recycleBuffer(this.#spent); // the caller is done with the last read
      this.#spent = undefined;
    }
    if (this.#closed) {
      queueMicrotask(() => done(null));
      return;
    }
    const buf = this.#flowing
      ? this.#flowBuf ??= takeBuffer(this.#flowSize)
      : this.#idleBuf ??= takeSlot();
    this.#last = buf;
    this.#reading = true;
    this.#done = done;
    void this.#conn.read(buf).then(this.#afterReadFn, this.#failedFn);
  }

  #afterRead(n: number | null): void {
    this.#reading = false;
    const done = this.#done!;
    this.#done = undefined;
    if (this.#closed) {
      this.#freeSlot();
      return done(null);
    }
    if (n === null) return done(null);
    const buf = this.#last!;
    this.#flowing = n === buf.length;
    if (buf === this.#flowBuf) {
      if (this.#flowing && buf.length < MAX_READ) {
        this.#spent = buf; // grow: the next read goes into a buffer twice this size
        this.#flowBuf = undefined;
        this.#flowSize = buf.length * 2;
      } else if (!this.#flowing) {
        // Drained: back to the pool (a quiet socket waits on its slot), but the size is kept for
        // the next burst, and halved when reads are much smaller than the buffer.
        this.#spent = buf;
        this.#flowBuf = undefined;
        if (n < buf.length >> 2) this.#flowSize = Math.max(FLOW_READ, buf.length >> 1);
      }
    }
    done(buf.subarray(0, n));
  }

  retain(): void {
    const last = this.#last;
    if (last === this.#spent) this.#spent = undefined;
    else if (last === this.#flowBuf) this.#flowBuf = undefined;
    else if (last === this.#idleBuf) this.#idleBuf = undefined;
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the socket is closed"));
    // Most writes complete whole: the rest of a partial one is written by an async loop.
    return this.#conn.write(bytes).then((n) =>
      n < bytes.length ? this.#writeRest(bytes, n) : undefined
    );
  }

  async #writeRest(bytes: Uint8Array, off: number): Promise<void> {
    while (off < bytes.length) {
      if (this.#closed) throw new Deno.errors.BadResource("the socket is closed");
      off += await this.#conn.write(bytes.subarray(off));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    if (!this.#reading) this.#freeSlot(); // else once that read settled
  }

  #freeSlot(): void {
    const slot = this.#idleBuf;
    this.#idleBuf = undefined;
    if (slot !== undefined && freeSlots.length < FREE_SLOTS_KEPT) freeSlots.push(slot);
  }

  async lingerClose(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      await this.#conn.closeWrite();
      while ((await readOnce(this)) !== null) { /* discard */ }
    } catch {
      /* reset: nothing to wait for */
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }
}

/**
 * Wraps a `node:net` socket (e.g. from `http.Server`'s `'upgrade'` event). `head` holds bytes
 * that were read past the HTTP request and must be delivered first. The socket is paused while
 * more than 64 KiB are buffered unread, so not reading still back-pressures TCP.
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { nodeSocketStream } from "./tcp_stream.ts";
 * const server = createServer();
 * server.on("upgrade", (_req, socket, head) => {
 *   const stream = nodeSocketStream(socket as import("node:net").Socket, head);
 *   stream.close();
 * });
 * ```
 */
export function nodeSocketStream(socket: Socket, head?: Uint8Array): ByteStream {
  return new NodeSocketStream(socket, head);
}

class NodeSocketStream implements ByteStream {
  readonly reusableAfterWrite = false;
  readonly #socket: Socket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #closed = false;
  #wake?: () => void;
  #paused = false;
  readonly localAddr?: StreamAddr;
  readonly remoteAddr?: StreamAddr;

  constructor(socket: Socket, head?: Uint8Array) {
    this.#socket = socket;
    socket.setNoDelay(true);
    if (head && head.length) this.#chunks.push(new Uint8Array(head));
    this.#buffered = head?.length ?? 0;
    if (socket.localAddress && socket.localPort) {
      this.localAddr = { hostname: socket.localAddress, port: socket.localPort };
    }
    if (socket.remoteAddress && socket.remotePort) {
      this.remoteAddr = { hostname: socket.remoteAddress, port: socket.remotePort };
    }
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#buffered += chunk.byteLength;
      if (!this.#paused && this.#buffered > 64 * 1024) {
        this.#paused = true;
        socket.pause();
      }
      this.#notify();
    });
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("end", end);
    socket.on("close", () => {
      this.#closed = true;
      end();
    });
    socket.on("error", end); // reported as end of stream; the WebSocket layer says 1006
    if (socket.destroyed) end();
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  retain(): void {
    // Every chunk is a fresh buffer from the socket: nothing is reused.
  }

  read(done: (bytes: Uint8Array | null) => void): void {
    if (this.#chunks.length) {
      const c = this.#chunks.shift()!;
      this.#buffered -= c.length;
      if (this.#paused && this.#buffered <= 16 * 1024 && !this.#closed) {
        this.#paused = false;
        this.#socket.resume();
      }
      queueMicrotask(() => done(c));
    } else if (this.#ended || this.#closed) {
      queueMicrotask(() => done(null));
    } else {
      this.#wake = () => this.read(done);
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#closed || this.#socket.destroyed) {
      return Promise.reject(new Error("the socket is closed"));
    }
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: unknown) => {
        if (done) return;
        done = true;
        this.#socket.off("drain", onDrain);
        this.#socket.off("close", onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => finish();
      const onClose = () => finish(new Error("the socket closed before the write completed"));
      const ok = this.#socket.write(bytes, (err) => {
        if (err) finish(err);
      });
      if (ok) finish();
      else {
        this.#socket.on("drain", onDrain);
        this.#socket.on("close", onClose);
      }
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#notify();
  }

  async lingerClose(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      this.#socket.end();
      while ((await readOnce(this)) !== null) { /* discard */ }
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }
}
