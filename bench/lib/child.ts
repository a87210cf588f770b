/**
 * Child processes of a benchmark: spawned with piped stdin/stdout, read line by line with a
 * timeout on every wait, and killed when the benchmark ends — normally, on an error or on Ctrl-C
 * ({@linkcode withChildren}). A child that watches its stdin also ends when this process dies.
 */

const live = new Set<Deno.ChildProcess>();

/** A child process that answers in lines on stdout. */
export interface LineProcess {
  /** Its process id. */
  readonly pid: number;
  /** Settles when it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /** The next stdout line; rejects after `timeoutMs`, or once stdout has ended. */
  line(timeoutMs: number): Promise<string>;
  /** Writes `text` and a newline to its stdin. */
  write(text: string): Promise<void>;
  /** Closes its stdin, waits up to `graceMs` for it to exit, then SIGKILLs it. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILLs it at once and waits for the exit. */
  kill(): Promise<void>;
}

/** `p`'s value, or `undefined` when it has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms))),
  ]).finally(() => clearTimeout(timer));
}

function sigkill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch { /* already exited */ }
}

/** Spawns `command` with piped stdin/stdout (stderr shows on ours); `label` names it in errors. */
export function spawnLines(
  command: string,
  args: string[],
  options: { label: string; env?: Record<string, string>; cwd?: string },
): LineProcess {
  const { label } = options;
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  live.add(child);
  const status = child.status.finally(() => live.delete(child));
  const lines: string[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const pump = (async () => {
    let buf = "";
    try {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
        wake?.();
      }
    } catch { /* stdout broke: the child is gone */ }
    ended = true;
    wake?.();
  })();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  let stdinOpen = true;
  const closeStdin = async () => {
    if (!stdinOpen) return;
    stdinOpen = false;
    await writer.close().catch(() => {});
  };
  return {
    pid: child.pid,
    status,
    line(timeoutMs) {
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          wake = undefined;
          reject(new Error(`${label}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = () => {
          wake = undefined;
          if (lines.length) {
            clearTimeout(timer);
            resolve(lines.shift()!);
          } else if (ended) {
            clearTimeout(timer);
            reject(new Error(`${label} exited (its stdout ended)`));
          } else wake = check;
        };
        check();
      });
    },
    async write(text) {
      if (!stdinOpen) throw new Error(`${label}: stdin already closed`);
      await writer.write(encoder.encode(text + "\n"));
    },
    async stop(graceMs = 2000) {
      await within(closeStdin(), graceMs);
      if (!(await within(status, graceMs))) sigkill(child);
      await status;
      await within(pump, 2000); // a grandchild could hold stdout open
    },
    async kill() {
      sigkill(child);
      await status;
      await within(closeStdin(), 1000);
      await within(pump, 2000); // a grandchild could hold stdout open
    },
  };
}

/** Runs a command to completion; kills it after `timeoutMs`. */
export async function runCommand(
  command: string,
  args: string[],
  options: { timeoutMs: number; env?: Record<string, string>; cwd?: string },
): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  live.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    sigkill(child);
  }, options.timeoutMs);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/** SIGKILLs every child still running and waits for them to exit. */
export async function killAll(): Promise<void> {
  const children = [...live];
  for (const c of children) sigkill(c);
  await Promise.all(children.map((c) => c.status.catch(() => {})));
}

/**
 * Runs `fn`; afterwards, whether it returned or threw, kills every child still running and runs
 * `cleanup` (e.g. removes a temp dir). Ctrl-C (SIGINT) or SIGTERM meanwhile does the same and
 * exits with 130.
 */
export async function withChildren<T>(fn: () => Promise<T>, cleanup = () => {}): Promise<T> {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const onSignal = () => {
    for (const c of live) sigkill(c);
    cleanup();
    console.error("\ninterrupted: child processes killed");
    Deno.exit(130);
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    return await fn();
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await killAll();
    cleanup();
  }
}
