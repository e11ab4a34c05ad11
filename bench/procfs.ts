/**
 * CPU time and memory of processes, read from Linux's `/proc`: what the benchmarks measure of
 * cotfit's own process, apart from the fake LLM it talks to.
 *
 * Deno reads `/proc` only under `--allow-all`, so the reads go through a small helper process
 * (`proc_reader.ts`) started once per suite; everything else keeps narrow permissions.
 *
 * Requires `--allow-run` (the Deno binary).
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux). */
const TICKS_PER_SECOND = 100;
const READER = fileURLToPath(new URL("./proc_reader.ts", import.meta.url));

/** CPU time of a process, in milliseconds. */
export interface CpuTimes {
  /** User plus system time of the process itself. */
  readonly own: number;
  /** User plus system time of its children that it has waited for (Linux `cutime + cstime`). */
  readonly children: number;
}

/** Resident memory of a process, in bytes. */
export interface Memory {
  /** Resident set size now (`VmRSS`). */
  readonly rss: number;
  /** Highest resident set size so far (`VmHWM`). */
  readonly peak: number;
}

/** Reads `/proc` through the helper process; {@linkcode openProcfs} makes one. */
export interface Procfs extends AsyncDisposable {
  /**
   * CPU times from `/proc/PID/stat`, or `null` once the process is gone.
   *
   * Once a child has exited and been waited for, its whole CPU time shows in its parent's
   * `children`: reading it for this process before and after a child runs gives that child's
   * exact total, even the last milliseconds a poll would miss.
   */
  cpuTimes(pid: number): Promise<CpuTimes | null>;
  /** `VmRSS` and `VmHWM` from `/proc/PID/status`, or `null` once the process is gone. */
  memory(pid: number): Promise<Memory | null>;
  /** The text of any `/proc` file, or `null`. */
  read(path: string): Promise<string | null>;
  /** Ends the helper. */
  close(): Promise<void>;
}

/**
 * Starts the `/proc` reader helper.
 *
 * @returns The reader; close it (or `await using` it) when done.
 */
export function openProcfs(): Procfs {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-all", READER],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  // Replies come back in request order.
  const waiting: ((text: string | null) => void)[] = [];
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (pending + chunk).split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) waiting.shift()?.(JSON.parse(line) as string | null);
    }
    for (const resolve of waiting.splice(0)) resolve(null);
  })();

  function read(path: string): Promise<string | null> {
    const { promise, resolve } = Promise.withResolvers<string | null>();
    waiting.push(resolve);
    writer.write(encoder.encode(path + "\n")).catch(() => resolve(null));
    return promise;
  }
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await writer.close().catch(() => {});
      await reading;
      await child.status;
    })();

  return {
    read,
    async cpuTimes(pid) {
      const text = await read(`/proc/${pid}/stat`);
      return text === null ? null : parseStat(text);
    },
    async memory(pid) {
      const text = await read(`/proc/${pid}/status`);
      return text === null
        ? null
        : { rss: kibField(text, "VmRSS:"), peak: kibField(text, "VmHWM:") };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Parses the CPU times out of a `/proc/PID/stat` line.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseStat } from "./procfs.ts";
 *
 * const line = "42 (deno run) S 1 42 42 0 -1 0 0 0 0 0 150 50 30 10 20 0 9 0 1 1 1";
 * assert.deepEqual(parseStat(line), { own: 2000, children: 400 });
 * ```
 *
 * @param text The file's text.
 * @returns Own and waited-for children's CPU, in milliseconds.
 */
export function parseStat(text: string): CpuTimes {
  // Fields after the command, which sits in parentheses and may itself hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const ticks = (index: number) => Number(fields[index]);
  const toMs = 1000 / TICKS_PER_SECOND;
  return {
    own: (ticks(11) + ticks(12)) * toMs,
    children: (ticks(13) + ticks(14)) * toMs,
  };
}

/** What a {@linkcode watchProcess} saw until it stopped. */
export interface Watched {
  /** The highest resident memory seen: the last `VmHWM`, or a polled `VmRSS` if higher. */
  readonly peakRss: number;
  /** The last CPU time read (misses the final poll interval; see {@linkcode Procfs.cpuTimes}). */
  readonly cpuMs: number;
}

/** A running poll of one process; {@linkcode watchProcess} makes it. */
export interface ProcessWatch {
  /** Stops polling and returns what was seen; later calls return the same. */
  stop(): Promise<Watched>;
}

/**
 * Polls a process's memory and CPU every `intervalMs` until stopped, so its peak is known even
 * after it exits (its `/proc` entry goes with it).
 *
 * @param procfs The reader.
 * @param pid The process to watch.
 * @param intervalMs Poll period.
 * @returns The watch; call `stop()` after the process ends.
 */
export function watchProcess(procfs: Procfs, pid: number, intervalMs = 25): ProcessWatch {
  let peakRss = 0;
  let cpuMs = 0;
  let stopped = false;
  const polling = (async () => {
    while (!stopped) {
      const [seen, times] = await Promise.all([procfs.memory(pid), procfs.cpuTimes(pid)]);
      if (seen) peakRss = Math.max(peakRss, seen.peak, seen.rss);
      if (times) cpuMs = times.own;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await polling;
      return { peakRss, cpuMs };
    },
  };
}

function kibField(text: string, name: string): number {
  const start = text.indexOf(name);
  if (start === -1) return 0;
  const end = text.indexOf("\n", start);
  return Number.parseInt(text.slice(start + name.length, end).trim(), 10) * 1024;
}
