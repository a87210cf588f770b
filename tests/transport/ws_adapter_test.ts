import { engineSuite } from "../engine/suite.ts";
import { wsAdapter } from "../../src/transport/ws_adapter.ts";

engineSuite({
  name: "ws",
  adapter: () => wsAdapter(),
  caps: { ping: true, anyCloseCode: true, responseHeaders: true },
});
