/**
 * How much the rest of a shared machine got in the way of a benchmark step (Linux only): the CPU
 * that processes outside this process's tree used meanwhile, the CPU the hypervisor stole, and
 * how late a 20 ms timer of this process fired at worst. A benchmark whose measured processes
 * are all its descendants can then tell quiet rounds from disturbed ones.
 */

/** What got in the way during one step, from {@linkcode InterferenceMeter.take}. */
export interface Interference {
  /** CPU used by processes outside our tree, in cores (1 = one core busy the whole step). */
  others_cores: number;
  /** CPU stolen by the hypervisor, in cores. */
  steal_cores: number;
  /** How late this process's 20 ms timer fired at worst, in ms: the machine did not run us. */
  stall_ms: number;
}

/** Measures {@linkcode Interference} step by step. */
export interface InterferenceMeter {
  /** Starts a step: forgets what came before. */
  reset(): void;
  /** What got in the way since the last `reset` (or `take`). */
  take(): Interference;
  /** Stops the timer. */
  stop(): void;
}

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux port in use). */
const HZ = 100;

/** CPU ms used since boot: busy by everyone, stolen, and by this process and its descendants. */
function snapshot(): { busy: number; steal: number; ours: number } {
  const first = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0];
  // cpu user nice system idle iowait irq softirq steal ...
  const f = first.trim().split(/\s+/).slice(1).map(Number);
  const busy = ((f[0] + f[1] + f[2] + f[5] + f[6]) * 1000) / HZ;
  const steal = (f[7] * 1000) / HZ;
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // exited meanwhile
    }
    // After "(comm)": state ppid ... utime (the 12th) stime (the 13th)
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const pid = Number(entry.name);
    parent.set(pid, Number(rest[1]));
    cpu.set(pid, ((Number(rest[11]) + Number(rest[12])) * 1000) / HZ);
  }
  let ours = 0;
  for (const [pid, ms] of cpu) {
    // Bounded walk up to init: is `pid` this process or one of its descendants?
    for (let p: number | undefined = pid, depth = 0; p && depth < 64; p = parent.get(p), depth++) {
      if (p === Deno.pid) {
        ours += ms;
        break;
      }
    }
  }
  return { busy, steal, ours };
}

/** Starts measuring (a 20 ms timer runs until `stop`). */
export function interferenceMeter(): InterferenceMeter {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 20);
    last = now;
  }, 20);
  let start = { at: performance.now(), ...snapshot() };
  const reset = () => {
    worst = 0;
    start = { at: performance.now(), ...snapshot() };
  };
  return {
    reset,
    take() {
      const end = { at: performance.now(), ...snapshot() };
      const ms = Math.max(1, end.at - start.at);
      const others = end.busy - start.busy - (end.ours - start.ours);
      const result = {
        // /proc's ticks are coarse (10 ms): a short step can show slightly below zero
        others_cores: Math.max(0, others) / ms,
        steal_cores: (end.steal - start.steal) / ms,
        stall_ms: worst,
      };
      reset();
      return result;
    },
    stop: () => clearInterval(timer),
  };
}
