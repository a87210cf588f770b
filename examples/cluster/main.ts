/**
 * `deno task example:cluster`: the chat of `examples/chat/` on two nodes that share their rooms
 * through Redis. It starts a throwaway redis-server on a free loopback port and two chat nodes,
 * `a` and `b`, as child processes on two ports (`node.ts`); opens a tab on each (two WebSocket
 * clients, the page's protocol); shows a line typed on node a arriving at the tab on node b; then
 * kills node b (SIGKILL) and waits for node a to report it down. It ends by itself in a few
 * seconds and stops everything it started, also on Ctrl-C. Needs `redis-server` (Debian package
 * redis-server).
 *
 * @module
 */

import { startRedisServer } from "@wse/engine/testing";

/** How long any one step may take before the story fails. */
const STEP_MS = 15_000;
const ROOT = new URL("../../", import.meta.url).pathname;

/** A chat node in a child process, with the lines it printed so far. */
interface NodeProcess {
  readonly id: string;
  readonly child: Deno.ChildProcess;
  /** Resolves with the first line (printed or to come) that matches, or rejects after `ms`. */
  line(pattern: RegExp, ms?: number): Promise<string>;
  /** Settles once its stdout has ended. */
  readonly done: Promise<void>;
}

/** A chat tab: a WebSocket on the page's endpoint and the room's events as the page shows them. */
interface Tab {
  readonly socket: WebSocket;
  /** Resolves once the tab shows `text`, or rejects after `ms`. */
  shows(text: string, ms?: number): Promise<void>;
  /** Resolves once the socket is closed, telling whether the close handshake happened. */
  readonly closed: Promise<boolean>;
}

/** Rejects after `ms` with a message naming what did not happen. */
function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Waits until `check()` holds, re-checking whenever `wake` is called. */
function watcher() {
  const waiting = new Set<() => void>();
  return {
    wake: () => waiting.forEach((f) => f()),
    until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
      let recheck!: () => void;
      const found = new Promise<T>((resolve) => {
        recheck = () => {
          const value = check();
          if (value !== undefined) resolve(value);
        };
        waiting.add(recheck);
        recheck();
      });
      return deadline(found, ms, what).finally(() => waiting.delete(recheck));
    },
  };
}

function spawnNode(id: string, redisUrl: string, print: (line: string) => void): NodeProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./node.ts", import.meta.url).pathname, id, redisUrl],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const w = watcher();
  const done = (async () => {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        lines.push(line);
        print(`  [node ${id}] ${line}`);
        w.wake();
      }
    }
  })();
  return {
    id,
    child,
    done,
    line: (pattern, ms = STEP_MS) =>
      w.until(() => lines.find((l) => pattern.test(l)), ms, `"${pattern.source}" from node ${id}`),
  };
}

/** Closes a node's stdin (it stops cleanly) and waits for it; SIGKILL after `ms`. */
async function stopNode(node: NodeProcess, ms = 10_000): Promise<void> {
  await node.child.stdin.close().catch(() => {});
  await deadline(node.child.status, ms, `exit of node ${node.id}`).catch(() => {
    try {
      node.child.kill("SIGKILL");
    } catch { /* exited meanwhile */ }
  });
  await node.child.status;
  await node.done;
}

/** Opens a tab of the chat at `pageUrl` as `name`, in `room`. */
function openTab(pageUrl: string, room: string, name: string): Tab {
  const url = new URL(`ws?${new URLSearchParams({ room, name })}`, pageUrl);
  url.protocol = "ws:";
  const socket = new WebSocket(url);
  const log: string[] = [];
  const w = watcher();
  socket.onmessage = (e) => {
    // The page's rendering: "ada joined", "ada: hello", "ada left".
    const m = JSON.parse(e.data);
    log.push(m.kind === "message" ? `${m.name}: ${m.text}` : `${m.name} ${m.kind}ed`);
    w.wake();
  };
  const closed = new Promise<boolean>((resolve) => {
    socket.onclose = (e) => resolve(e.wasClean);
  });
  return {
    socket,
    closed,
    shows: (text, ms = STEP_MS) =>
      w.until(() => (log.includes(text) ? true : undefined), ms, `"${text}" in ${name}'s tab`)
        .then(() => {}),
  };
}

/**
 * Runs the story, printing it line by line with `print`; resolves once everything it started is
 * stopped. Ctrl-C (SIGINT) meanwhile stops everything too and rejects.
 */
export async function main(
  { print = console.log }: { print?: (line: string) => void } = {},
): Promise<void> {
  const t0 = performance.now();
  const say = (line: string) =>
    print(`${((performance.now() - t0) / 1000).toFixed(2).padStart(6)}s ${line}`);
  const interrupted = Promise.withResolvers<never>();
  interrupted.promise.catch(() => {}); // awaited only in races
  const onSigint = () => interrupted.reject(new Error("interrupted (Ctrl-C)"));
  Deno.addSignalListener("SIGINT", onSigint);
  const step = <T>(p: Promise<T>) => Promise.race([p, interrupted.promise]);

  const redis = await startRedisServer();
  const nodes: NodeProcess[] = [];
  const tabs: Tab[] = [];
  try {
    say(`redis-server listening on ${redis.url}`);
    const a = spawnNode("a", redis.url, print);
    nodes.push(a);
    const pageA = (await step(a.line(/^listening /))).slice("listening ".length);
    const b = spawnNode("b", redis.url, print);
    nodes.push(b);
    const pageB = (await step(b.line(/^listening /))).slice("listening ".length);
    await step(Promise.all([a.line(/^nodeUp b$/), b.line(/^nodeUp a$/)]));
    say(`node a serves ${pageA} and node b ${pageB}; they see each other`);

    const ada = openTab(pageA, "lobby", "ada");
    tabs.push(ada);
    await step(ada.shows("ada joined"));
    const bob = openTab(pageB, "lobby", "bob");
    tabs.push(bob);
    await step(bob.shows("bob joined"));
    say("ada opened the chat on node a, bob on node b, both in the room lobby");
    await step(ada.shows("bob joined"));
    say(`ada's tab (node a) shows "bob joined": node b published it, node a delivered it`);

    ada.socket.send("hello from node a");
    say(`ada types "hello from node a" on node a`);
    await step(bob.shows("ada: hello from node a"));
    say(`bob's tab (node b) shows "ada: hello from node a"`);

    const killedAt = performance.now();
    b.child.kill("SIGKILL");
    say("node b killed (SIGKILL): no goodbye to anyone");
    const clean = await step(deadline(bob.closed, STEP_MS, "close of bob's tab"));
    say(`bob's tab lost its connection (${clean ? "clean close" : "no close handshake"})`);
    const down = await step(a.line(/^nodeDown b /));
    say(
      `node a: ${down} — ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
    for (const tab of tabs) {
      if (tab.socket.readyState !== WebSocket.CLOSED) tab.socket.close();
    }
    for (const tab of tabs) await deadline(tab.closed, 5000, "a tab's close").catch(() => {});
    for (const node of nodes) await stopNode(node);
    await redis.stop();
    say(`stopped: ${nodes.map((n) => `node ${n.id}`).join(", ")}, the tabs and redis-server`);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    console.error(`cluster example: ${message}`);
    Deno.exit(message.startsWith("interrupted") ? 130 : 1);
  }
}
