import assert from "node:assert/strict";
import { connect } from "../../src/transport/tcp_client.ts";
import { serve, type ServeOptions } from "../../src/transport/tcp_server.ts";
import { DialError } from "../../src/transport/types.ts";

Deno.test("serve() without onConnection is refused before it listens", () => {
  assert.throws(() => serve({ port: 0 } as ServeOptions), /onConnection .* is required/);
  assert.throws(() => serve(undefined as unknown as ServeOptions), TypeError);
});

Deno.test("connect() refuses every scheme but ws: and wss:", async () => {
  for (const url of ["http://127.0.0.1:1/", "https://127.0.0.1:1/", "ftp://127.0.0.1/"]) {
    await assert.rejects(connect(url), (e: unknown) => {
      assert.ok(e instanceof DialError);
      assert.match(e.message, /use ws: or wss:/);
      return true;
    });
  }
});
