import assert from "node:assert/strict";
import fc from "fast-check";
import type { WireMessage } from "../../src/transport/types.ts";
import { PoolDispatcher } from "../../src/dispatch/pool.ts";
import { ECHO, pushAll, RecordingHost, SAN, waitFor } from "./helpers.ts";

// A message: [seq u32][key u8][pattern...] as bytes, or "t:<seq>:<key>:<padding>" as text.
function build(seq: number, key: number, len: number, asText: boolean): WireMessage {
  if (asText) return { type: "text", data: `t:${seq}:${key}:${"é".repeat(len >> 1)}` };
  const b = new Uint8Array(5 + len);
  new DataView(b.buffer).setUint32(0, seq);
  b[4] = key;
  for (let k = 5; k < b.length; k++) b[k] = (seq * 31 + k) & 255;
  return { type: "binary", data: b };
}

function parse(d: string | Uint8Array): { seq: number; key: number; ok: boolean } {
  if (typeof d === "string") {
    const [, seq, key, rest] = d.split("|")[0].split(":");
    return { seq: +seq, key: +key, ok: /^é*$/.test(rest) };
  }
  const seq = new DataView(d.buffer, d.byteOffset).getUint32(0);
  let ok = true;
  for (let k = 5; k < d.length; k++) if (d[k] !== ((seq * 31 + k) & 255)) ok = false;
  return { seq, key: d[4], ok };
}

const keyOf = (m: WireMessage): number =>
  m.type === "binary" ? m.data[4] : Number(m.data.split(":")[2]);

Deno.test({
  name:
    "ring property: exactly once, bytes intact, per-key and per-connection order, wrap-around, oversize",
  ...SAN,
  fn: async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ringBytes: fc.integer({ min: 512, max: 8192 }),
          workers: fc.integer({ min: 1, max: 3 }),
          connections: fc.integer({ min: 1, max: 4 }),
          order: fc.constantFrom("key", "connection", "none", "sticky"),
          messages: fc.array(
            fc.record({
              key: fc.integer({ min: 0, max: 5 }),
              // mostly small, some bigger than half the smallest ring (the side channel)
              len: fc.oneof(
                { weight: 8, arbitrary: fc.integer({ min: 0, max: 200 }) },
                { weight: 1, arbitrary: fc.integer({ min: 300, max: 20_000 }) },
              ),
              text: fc.boolean(),
            }),
            { minLength: 1, maxLength: 400 },
          ),
        }),
        async ({ ringBytes, workers, connections, order, messages }) => {
          const pool = new PoolDispatcher({
            module: ECHO,
            count: workers,
            ringBytes,
            assign: order === "sticky" ? "sticky" : "shared",
            orderingKey: order === "key" ? keyOf : undefined,
          }, { order: order === "none" ? "none" : "connection" });
          try {
            await pool.init();
            const hosts = Array.from({ length: connections }, () => new RecordingHost());
            const arrivals: (string | Uint8Array)[] = []; // in the order sends reached the hosts
            for (const h of hosts) {
              const send = h.send.bind(h);
              h.send = (d) => (arrivals.push(d), send(d));
            }
            const conns = hosts.map((h) => pool.open(h));
            for (let i = 0; i < messages.length; i++) {
              const m = messages[i];
              await pushAll(conns[i % connections], [build(i, m.key, m.len, m.text)]);
            }
            const replies = () => hosts.reduce((n, h) => n + h.sent.length, 0);
            await waitFor(() => replies() >= messages.length, "all replies", 30_000);
            const seen = new Map<number, number>();
            const lastByKey = new Map<number, number>();
            hosts.forEach((host, c) => {
              let last = -1;
              for (const d of host.sent) {
                const { seq, key, ok } = parse(d);
                assert.ok(ok, `bytes of ${seq} intact`);
                assert.equal(key, messages[seq].key);
                assert.equal(seq % connections, c, `${seq} answered on its own connection`);
                seen.set(seq, (seen.get(seq) ?? 0) + 1);
                if (order === "connection" || order === "sticky") {
                  assert.ok(last < seq, `connection ${c}: ${seq} after ${last}`);
                  last = seq;
                }
              }
              assert.equal(host.errors.length, 0);
            });
            if (order === "key") {
              for (const d of arrivals) {
                const { seq, key } = parse(d);
                assert.ok((lastByKey.get(key) ?? -1) < seq, `key ${key}: ${seq} after a later one`);
                lastByKey.set(key, seq);
              }
            }
            assert.equal(seen.size, messages.length);
            for (const n of seen.values()) assert.equal(n, 1);
            await waitFor(() => pool.usedBytes === 0, "every record released");
          } finally {
            await pool.close(1000);
          }
        },
      ),
      {
        numRuns: 25,
        examples: [[{
          // regression: an oversize message, then ring-full pushes, once spun in writable()
          ringBytes: 512,
          workers: 2,
          connections: 1,
          order: "none",
          messages: [
            { key: 0, len: 0, text: false },
            { key: 0, len: 91, text: false },
            { key: 0, len: 4547, text: false },
            { key: 0, len: 155, text: true },
            { key: 0, len: 128, text: true },
          ],
        }]],
      },
    );
  },
});

Deno.test({
  name: "ring: back-pressure keeps memory bounded while a slow pool takes 128 MiB",
  ...SAN,
  fn: async () => {
    // In its own process, so tests running in parallel do not move the RSS it measures.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./fixtures/memory_probe.ts", import.meta.url).pathname],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(out.success, "the probe ran");
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    console.log(
      `  128 MiB through a 64 KiB ring: ${r.fulls} full pushes, max ring use ${r.maxUsed} B, ` +
        `RSS growth ${(r.grew / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.equal(r.replies, r.total, "every message handled");
    assert.equal(r.bytes, r.total * 4096, "every byte");
    assert.ok(r.fulls > 0, "the ring filled up (back-pressure happened)");
    assert.ok(r.maxUsed <= r.ringBytes, `ring use ${r.maxUsed} ≤ ${r.ringBytes}`);
    assert.equal(r.sideBytes, 0);
    assert.ok(r.grew < 32 * 2 ** 20, `RSS grew ${r.grew} bytes: far less than the 128 MiB pushed`);
  },
});

Deno.test({
  name: "ring property: leases take their connection's messages out of order; nothing lost",
  ...SAN,
  fn: async () => {
    let taken = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ringBytes: fc.integer({ min: 512, max: 4096 }),
          sticky: fc.boolean(),
          connections: fc.integer({ min: 2, max: 4 }),
          // each step: push one message on a connection, or take a pause on one and read some
          steps: fc.array(
            fc.oneof(
              {
                weight: 6,
                arbitrary: fc.record({
                  push: fc.nat(3),
                  len: fc.nat(120),
                  burst: fc.integer({ min: 1, max: 8 }),
                }),
              },
              { weight: 2, arbitrary: fc.record({ pause: fc.nat(3), reads: fc.nat(8) }) },
            ),
            { minLength: 1, maxLength: 150 },
          ),
        }),
        async ({ ringBytes, sticky, connections, steps }) => {
          const pool = new PoolDispatcher({
            module: ECHO,
            count: 2,
            ringBytes,
            assign: sticky ? "sticky" : "shared",
          });
          try {
            await pool.init();
            const hosts = Array.from({ length: connections }, () => new RecordingHost());
            const conns = hosts.map((h) => pool.open(h));
            const pushed: number[][] = hosts.map(() => []);
            const leaseRead = new Set<number>();
            let seq = 0;
            for (const step of steps) {
              if ("push" in step) {
                const c = step.push % connections;
                for (let b = 0; b < step.burst; b++) {
                  pushed[c].push(seq);
                  await pushAll(conns[c], [build(seq++, c, step.len, false)]);
                }
                continue;
              }
              const c = step.pause % connections;
              const lease = await conns[c].pause();
              let last = -1;
              for (let r = 0; r < step.reads; r++) {
                const m = await lease.read({ timeoutMs: 20 }).catch(() => undefined);
                if (!m) break; // nothing of this connection left unhandled
                const { seq: s, key } = parse(m.data as Uint8Array);
                assert.equal(key, c, "a lease reads its own connection only");
                assert.ok(s > last, `lease on ${c}: ${s} after ${last}`);
                last = s;
                leaseRead.add(s);
                taken++;
              }
              lease.resume();
            }
            const handled = () => hosts.reduce((n, h) => n + h.sent.length, 0);
            await waitFor(() => handled() + leaseRead.size >= seq, "every message", 30_000);
            const seen = new Map<number, number>();
            for (const s of leaseRead) seen.set(s, 1);
            hosts.forEach((h, c) => {
              for (const d of h.sent) {
                const p = parse(d);
                assert.ok(p.ok);
                assert.equal(p.key, c);
                seen.set(p.seq, (seen.get(p.seq) ?? 0) + 1);
              }
            });
            assert.equal(seen.size, seq, "every message handled or read");
            for (const [s, n] of seen) assert.equal(n, 1, `message ${s} seen ${n} times`);
            await waitFor(() => pool.usedBytes === 0, "every record reclaimed");
          } finally {
            await pool.close(1000);
          }
        },
      ),
      { numRuns: 20 },
    );
    console.log(`  leases took ${taken} messages out of order`);
    assert.ok(taken > 0, "the property never exercised a lease read");
  },
});
