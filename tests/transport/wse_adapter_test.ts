import { engineSuite } from "../engine/suite.ts";
import { wseAdapter } from "../../src/transport/tcp_adapter.ts";

// The same behavioural suite the WHATWG and npm:ws adapters pass, on our own RFC 6455 client.
engineSuite({
  name: "wse",
  adapter: () => wseAdapter(),
  caps: { ping: true, anyCloseCode: true, responseHeaders: true },
});
