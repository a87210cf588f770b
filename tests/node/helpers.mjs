// Shared by the Node-side suite (Node 20, Node 22, Bun): it imports wse by its package name, as
// an application does, from the build in dist/npm (see run.ts).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@wse/engine/transport";

/** Every test's budget: a hang fails the test instead of the whole run. */
export const TIMEOUT = { timeout: 30_000 };

/** Waits (at most `ms`, polling every 5 ms) until `cond()` holds; throws naming `what`. */
export async function until(cond, what, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Opens a client with our own transport; `next()` resolves with the next text message (or
 * `bin:<length>`), bounded by 10 s.
 */
export async function client(url, options = {}) {
  const ws = await connect(url, options);
  return {
    ws,
    async next(ms = 10_000) {
      const end = Date.now() + ms;
      for (;;) {
        const m = ws.poll();
        if (m) return m.type === "text" ? m.data : `bin:${m.data.length}`;
        if (ws.isClosed) throw new Error("the connection closed before the next message");
        const left = end - Date.now();
        if (left <= 0) throw new Error(`no message within ${ms} ms`);
        let timer;
        await Promise.race([
          ws.readable(),
          new Promise((r) => (timer = setTimeout(r, left))),
        ]);
        clearTimeout(timer);
      }
    },
  };
}

/** A throwaway CA and a certificate for localhost/127.0.0.1 it signed, made with openssl. */
export function testCertificates() {
  const dir = mkdtempSync(join(tmpdir(), "wse-node-tls-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  try {
    writeFileSync(
      join(dir, "ext.cnf"),
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    );
    run(["req", "-x509", ...ec, "-days", "1", "-subj", "/CN=wse test CA"].concat(
      ["-keyout", "ca.key", "-out", "ca.pem"],
    ));
    run(["req", ...ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"]);
    run([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      "cert.pem",
      "-extfile",
      "ext.cnf",
    ]);
    const read = (f) => readFileSync(join(dir, f), "utf8");
    return { ca: read("ca.pem"), cert: read("cert.pem"), key: read("key.pem") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
