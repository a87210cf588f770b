/**
 * Reading the opening handshake's HTTP head off a {@linkcode ByteStream} with the codec's
 * incremental `HttpHeadReader` (which enforces the size limit: 431 on the server side).
 *
 * @module
 */

import { HttpHeadReader, type RequestHead, type ResponseHead } from "../protocol/handshake.ts";
import { type ByteStream, readOnce } from "./tcp_stream.ts";

/**
 * Reads a request (`"request"`) or response (`"response"`) head. Resolves with the head and the
 * bytes received after it (the first frames may come in the same read), or `null` when the socket
 * ended first. Throws the codec's `HandshakeError` when the head is too large or malformed.
 * Timeouts are the caller's: closing the stream ends a pending read, which gives `null`.
 *
 * @example
 * ```ts
 * import { readHead } from "./tcp_http.ts";
 * import { denoConnStream } from "./tcp_stream.ts";
 * const stream = denoConnStream(await Deno.connect({ hostname: "127.0.0.1", port: 8080 }));
 * const r = await readHead(stream, "response", 16 * 1024);
 * console.log(r?.head.status);
 * stream.close();
 * ```
 */
export async function readHead<K extends "request" | "response">(
  stream: ByteStream,
  kind: K,
  maxBytes: number,
): Promise<
  { head: K extends "request" ? RequestHead : ResponseHead; rest: Uint8Array } | null
> {
  const reader = new HttpHeadReader(kind, maxBytes);
  while (true) {
    const chunk = await readOnce(stream);
    if (chunk === null) return null;
    const head = reader.push(chunk);
    if (head) return { head, rest: reader.rest };
  }
}
