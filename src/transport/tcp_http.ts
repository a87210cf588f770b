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

const ENCODER = new TextEncoder();
/** Largest plain-HTTP request body the fallback reads (it is not a web server). */
const MAX_BODY = 1 << 20;

function status(code: number, text: string): Uint8Array {
  return ENCODER.encode(
    `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${text.length}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/**
 * Answers one plain HTTP request on a socket the WebSocket server accepted, with `fetch`: the
 * request is built from the head (and a body of at most 1 MiB given with `Content-Length`), the
 * response written with `Content-Length` and `Connection: close`. One request per connection: it
 * is there so an app can serve its page on the WebSocket's port, not to be a web server. Returns
 * the bytes to write, or an error status when the request cannot be served.
 *
 * @example
 * ```ts ignore
 * import { answerHttp } from "./tcp_http.ts";
 * const bytes = await answerHttp(head, rest, stream, () => new Response("hi"), false);
 * await stream.write(bytes);
 * ```
 */
export async function answerHttp(
  head: RequestHead,
  rest: Uint8Array,
  stream: ByteStream,
  fetch: (request: Request) => Response | Promise<Response>,
  secure: boolean,
): Promise<Uint8Array> {
  if (head.headers.has("transfer-encoding")) return status(411, "Length Required");
  const length = Number(head.headers.get("content-length") ?? 0);
  if (!Number.isSafeInteger(length) || length < 0) return status(400, "Bad Request");
  if (length > MAX_BODY) return status(413, "Content Too Large");
  let body: Uint8Array<ArrayBuffer> | undefined;
  if (length > 0) {
    body = new Uint8Array(length);
    let got = Math.min(rest.length, length);
    body.set(rest.subarray(0, got));
    // Bounded: every turn reads at least one byte, or the stream ended.
    while (got < length) {
      const chunk = await readOnce(stream);
      if (chunk === null) return status(400, "Bad Request");
      const n = Math.min(chunk.length, length - got);
      body.set(chunk.subarray(0, n), got);
      got += n;
    }
  }
  const host = head.headers.get("host") ?? "localhost";
  let request: Request;
  try {
    request = new Request(`${secure ? "https" : "http"}://${host}${head.target}`, {
      method: head.method,
      headers: head.headers,
      body: body && head.method !== "GET" && head.method !== "HEAD" ? body : undefined,
    });
  } catch {
    return status(400, "Bad Request");
  }
  let response: Response;
  try {
    response = await fetch(request);
  } catch {
    return status(500, "Internal Server Error");
  }
  const payload = head.method === "HEAD"
    ? new Uint8Array(0)
    : new Uint8Array(await response.arrayBuffer());
  const lines = [`HTTP/1.1 ${response.status} ${response.statusText || "OK"}`];
  response.headers.forEach((v, k) => {
    if (k !== "content-length" && k !== "connection" && k !== "transfer-encoding") {
      lines.push(`${k}: ${v}`);
    }
  });
  lines.push(`Content-Length: ${payload.length}`, "Connection: close");
  const headBytes = ENCODER.encode(lines.join("\r\n") + "\r\n\r\n");
  const out = new Uint8Array(headBytes.length + payload.length);
  out.set(headBytes);
  out.set(payload, headBytes.length);
  return out;
}
