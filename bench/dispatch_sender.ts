/**
 * The dispatch benchmark's sender, run as its own process: a raw TCP server that does the
 * WebSocket upgrade itself and writes prebuilt binary frames, many per write, so the sender is
 * never the bottleneck. Prints its port on stdout.
 *
 * Each connection's query says what to send: `n` messages of `size` bytes, handler hint `cpu`
 * (ms of CPU per message), `rate` (msg/s, 0 = as fast as possible), `wait=1` to wait for the
 * client's first message before sending (so a receiver can open many connections first). Payload:
 * `[seq u32 BE][final u8][cpu u8][latency u8]...`.
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function frameHeader(len: number): Uint8Array {
  if (len < 126) return Uint8Array.of(0x82, len);
  if (len < 65536) return Uint8Array.of(0x82, 126, len >> 8, len & 255);
  const h = new Uint8Array(10);
  h[0] = 0x82;
  h[1] = 127;
  new DataView(h.buffer).setBigUint64(2, BigInt(len));
  return h;
}

/** `count` frames of `size` bytes starting at `seq`, in one buffer. */
function frames(seq: number, count: number, size: number, cpu: number, lat: number, last: number) {
  const hdr = frameHeader(size);
  const one = hdr.length + size;
  const buf = new Uint8Array(one * count);
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < count; i++) {
    const at = i * one;
    buf.set(hdr, at);
    const p = at + hdr.length;
    dv.setUint32(p, seq + i);
    buf[p + 4] = seq + i === last ? 1 : 0;
    buf[p + 5] = cpu;
    buf[p + 6] = lat;
  }
  return buf;
}

async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  for (let off = 0; off < buf.length;) off += await conn.write(buf.subarray(off));
}

async function handle(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const buf = new Uint8Array(8192);
  let req = "";
  while (!req.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) return;
    req += new TextDecoder().decode(buf.subarray(0, n));
  }
  const key = /sec-websocket-key:\s*(\S+)/i.exec(req)?.[1] ?? "";
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + GUID));
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  await writeAll(
    conn,
    new TextEncoder().encode(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    ),
  );
  const q = new URL(`http://x${req.split(" ")[1]}`).searchParams;
  const n = Number(q.get("n")), size = Math.max(8, Number(q.get("size")));
  const cpu = Number(q.get("cpu") ?? 0), rate = Number(q.get("rate") ?? 0);
  const last = n - 1;
  let go!: () => void;
  const started = new Promise<void>((r) => (go = r));
  if (q.get("wait") !== "1") go();
  // drain what the client sends; answer its close frame and hang up
  let closed = false;
  const reading = (async () => {
    try {
      for (let n; (n = await conn.read(buf)) !== null;) {
        if (n > 0 && (buf[0] & 0x0f) !== 8) go();
        if (n > 0 && (buf[0] & 0x0f) === 8) {
          closed = true;
          await writeAll(conn, Uint8Array.of(0x88, 2, 0x03, 0xe8));
          conn.close();
          return;
        }
      }
    } catch { /* reset */ }
    closed = true;
    go();
  })();
  await started;
  try {
    if (rate === 0) {
      const per = Math.max(1, Math.min(1000, Math.floor((1 << 20) / (size + 10))));
      const full = frames(0, per, size, cpu, 0, -1); // reused: seq numbers do not matter here
      let sent = 0;
      while (n - sent > per && !closed) {
        await writeAll(conn, full);
        sent += per;
      }
      await writeAll(conn, frames(sent, n - sent, size, cpu, 0, last));
    } else {
      const t0 = performance.now();
      let sent = 0;
      for (let i = 0; i < 1e7 && sent < n && !closed; i++) {
        const due = Math.min(n, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
        if (due > sent) {
          await writeAll(conn, frames(sent, due - sent, size, cpu, 1, last));
          sent = due;
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  } catch { /* the client went away */ }
  await reading;
  try {
    conn.close();
  } catch { /* closed */ }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log((listener.addr as Deno.NetAddr).port);
for await (const conn of listener) handle(conn as Deno.TcpConn);
