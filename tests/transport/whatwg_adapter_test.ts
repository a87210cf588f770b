import { engineSuite } from "../engine/suite.ts";
import { whatwgAdapter } from "../../src/transport/whatwg_adapter.ts";

engineSuite({
  name: "whatwg",
  adapter: () => whatwgAdapter(),
  caps: { ping: false, anyCloseCode: false, responseHeaders: false },
});
