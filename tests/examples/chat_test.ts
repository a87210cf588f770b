// The chat example in headless Chromium: tabs in one room see each other's lines and the join
// and leave notices, a tab in another room sees none of them, and stopping says goodbye to all.
import assert from "node:assert/strict";
import { startChat } from "../../examples/chat/chat.ts";
import { type Browser, chromiumMissing, launchChromium, type Page } from "../browser.ts";
import { skipIfMissing } from "../interop/helpers.ts";

const missing = skipIfMissing("chromium", chromiumMissing);

const LOG = `document.getElementById("log").textContent`;
const STATUS = `document.getElementById("status").textContent`;

function logShows(page: Page, text: string): Promise<void> {
  return page.waitFor(`${LOG}.includes(${JSON.stringify(text)})`, `"${text}" in the log`);
}

Deno.test({
  name: "example chat: two Chromium tabs talk in a room; joins, leaves, rooms kept apart",
  ignore: missing,
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const chat = await startChat({ port: 0 });
    let browser: Browser | undefined;
    let stopped = false;
    try {
      browser = await launchChromium();
      const ada = await browser.newPage(`${chat.url}?room=tea&name=ada`);
      await ada.waitFor(`${STATUS} === "connected as ada"`, "ada connected");
      const bob = await browser.newPage(`${chat.url}?room=tea&name=bob`);
      const eve = await browser.newPage(`${chat.url}?room=garden&name=eve`);
      await logShows(ada, "bob joined");
      await logShows(eve, "eve joined");

      // ada types a line and presses Send
      await ada.evaluate(`
        document.getElementById("text").value = "hello from ada";
        document.getElementById("send").click();
      `);
      await logShows(bob, "ada: hello from ada");
      await logShows(ada, "ada: hello from ada");
      assert.equal(
        await ada.evaluate(`document.getElementById("text").value`),
        "",
        "input cleared",
      );

      await bob.close();
      await logShows(ada, "bob left");
      const eveSaw = await eve.evaluate<string>(LOG);
      assert.ok(!/ada|bob/.test(eveSaw), `another room stays apart, eve saw: ${eveSaw}`);

      await chat.stop();
      stopped = true;
      await ada.waitFor(`${STATUS}.startsWith("disconnected (1001")`, "ada told of the stop");
    } finally {
      await browser?.close();
      if (!stopped) await chat.stop();
    }
  },
});
