import assert from "node:assert/strict";
import { denoConnStream, readOnce } from "../../src/transport/tcp_stream.ts";
import { SANITIZE } from "./tcp_helpers.ts";

Deno.test({
  name: "denoConnStream: a quiet socket is read with a small buffer, a busy one with a big one",
  ...SANITIZE,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const dial = Deno.connect({
      hostname: "127.0.0.1",
      port: (listener.addr as Deno.NetAddr).port,
    });
    const accepted = await listener.accept();
    const peer = await dial;
    listener.close();
    const stream = denoConnStream(accepted);
    const data = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 255);
    const writing = (async () => {
      for (let off = 0; off < data.length;) off += await peer.write(data.subarray(off));
    })();
    const sizes: number[] = [];
    let at = 0;
    while (at < data.length) {
      const chunk = await readOnce(stream);
      assert.ok(chunk);
      sizes.push(chunk.length);
      assert.deepEqual(chunk, data.subarray(at, at + chunk.length), `bytes at ${at}`);
      at += chunk.length;
    }
    await writing;
    assert.ok(sizes[0] <= 512, `first read ${sizes[0]}`);
    assert.ok(sizes.every((n) => n <= 256 * 1024));
    assert.ok(Math.max(...sizes) > 512, "reads grew while data flowed");
    // Quiet again: one small message, read whole.
    await peer.write(new Uint8Array([1, 2, 3]));
    assert.deepEqual(await readOnce(stream), new Uint8Array([1, 2, 3]));
    peer.close();
    assert.equal(await readOnce(stream), null);
    stream.close();
  },
});
