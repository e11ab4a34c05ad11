/**
 * The processes a benchmark runs: the fake OpenAI endpoint (`tests/fake_openai.ts`), the cotfit
 * CLI (`main.ts`) and the cotfit server (`server.ts`), each a separate `deno run` of the same
 * Deno binary, with only the permissions it needs.
 *
 * Requires `--allow-run` (the Deno binary, `curl`), `--allow-read` (`/proc`, outputs) and
 * `--allow-net=127.0.0.1`.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Memory, type Procfs, watchProcess } from "./procfs.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CHILD_PERMISSIONS = [
  "--no-prompt",
  ...taskV8Flags(),
  "--allow-read",
  "--allow-write",
  "--allow-net=127.0.0.1",
  "--allow-env",
];
const STARTUP_TIMEOUT_MS = 30_000;

/** The `--v8-flags=...` of `deno task start`, so the bench measures what users run. */
function taskV8Flags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json")));
  const flags = String(config.tasks?.start ?? "").match(/--v8-flags=\S+/);
  return flags ? [flags[0]] : [];
}

/** A process whose first output line has been read; the rest is collected until it exits. */
interface Started {
  readonly child: Deno.ChildProcess;
  readonly firstLine: string;
  /** Everything printed on the watched stream after the first line, once the process ends. */
  readonly rest: Promise<string>;
}

/**
 * Spawns `deno run ARGS` in the repository root and waits for a line matching `ready` on
 * `stream`; the other stream is discarded.
 */
async function spawnDeno(
  args: string[],
  stream: "stdout" | "stderr",
  ready: RegExp,
): Promise<Started> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: stream === "stdout" ? "piped" : "null",
    stderr: stream === "stderr" ? "piped" : "null",
  }).spawn();
  const lines = child[stream].pipeThrough(new TextDecoderStream()).pipeThrough(splitLines());
  const reader = lines.getReader();
  const timeout = setTimeout(() => child.kill("SIGKILL"), STARTUP_TIMEOUT_MS);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        const status = await child.status;
        throw new Error(`Cannot start deno run ${args.join(" ")}: exited with ${status.code}`);
      }
      if (ready.test(value)) {
        const rest = (async () => {
          let text = "";
          for (let next = await reader.read(); !next.done; next = await reader.read()) {
            text += next.value + "\n";
          }
          return text;
        })();
        return { child, firstLine: value, rest };
      }
    }
  } finally {
    clearTimeout(timeout);
  }
}

function splitLines(): TransformStream<string, string> {
  let pending = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (pending + chunk).split("\n");
      pending = parts.pop() ?? "";
      for (const line of parts) controller.enqueue(line);
    },
    flush(controller) {
      if (pending !== "") controller.enqueue(pending);
    },
  });
}

/** A running fake OpenAI endpoint in its own process. */
export interface FakeProcess extends AsyncDisposable {
  /** Base URL ending in `/v1`. */
  readonly url: string;
  readonly pid: number;
  /** Its CPU time so far, in milliseconds. */
  cpuMs(): Promise<number>;
  /** Stops it (SIGTERM) and returns the stats line it prints on the way out. */
  stop(): Promise<unknown>;
}

/**
 * Starts `tests/fake_openai.ts` in a separate process.
 *
 * @param procfs Reads its CPU time.
 * @param latencyMs Delay before each reply.
 * @returns The running fake; stop it (or `await using` it) when done.
 */
export async function startFake(procfs: Procfs, latencyMs: number): Promise<FakeProcess> {
  const { child, firstLine, rest } = await spawnDeno(
    [
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "tests/fake_openai.ts",
      "--port",
      "0",
      "--latency",
      String(latencyMs),
      "--seed",
      "1",
      // The fake shares the 2 cores with what it measures: its cheaper replies leave more to cotfit.
      "--lean",
    ],
    "stdout",
    /^listening /,
  );
  let stopping: Promise<unknown> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      child.kill("SIGTERM");
      await child.status;
      const text = (await rest).trim();
      return text === "" ? null : JSON.parse(text.split("\n").at(-1)!);
    })();
  return {
    url: firstLine.slice("listening ".length).trim(),
    pid: child.pid,
    cpuMs: async () => (await procfs.cpuTimes(child.pid))?.own ?? 0,
    stop,
    [Symbol.asyncDispose]: async () => void await stop(),
  };
}

/** Options of {@linkcode runCli}. */
export interface CliRun {
  input: string;
  /** Output directory; `usage.json` is read from it. */
  output: string;
  baseURL: string;
  concurrency: number;
  /** A cache file, or `null` for `--no-cache`. */
  cache: string | null;
}

/** What one CLI run measured. */
export interface CliResult {
  readonly exitCode: number;
  /** From spawning the process to its exit, start-up included. */
  readonly wallMs: number;
  /** User + system CPU of the CLI process alone, whole life, from its parent's `cutime`. */
  readonly cpuMs: number;
  /** Highest resident memory seen (VmHWM polled every 25 ms). */
  readonly peakRss: number;
  /** The run's `usage.json`. */
  readonly usage: CliUsage;
  /** Its stderr (quiet mode: errors only). */
  readonly stderr: string;
}

/** The fields of `usage.json` the benchmarks use. */
export interface CliUsage {
  readonly calls: number;
  readonly cacheHits: number;
  readonly conversations: number;
  readonly written: number;
  readonly rejected: number;
  readonly wallSeconds: number;
  readonly conversationsPerSecond: number;
}

/**
 * Runs `main.ts INPUT -o OUTPUT --base-url URL --model bench --concurrency N -q` to the end.
 *
 * CPU is the exact total of the child, read as the growth of this process's `cutime + cstime`
 * across the child's life; no other child of this process may exit meanwhile (the fake keeps
 * running until the caller stops it).
 *
 * @param procfs Reads CPU and memory.
 * @param run Input, output, endpoint, concurrency and cache.
 * @returns Timings, CPU, memory and usage.
 */
export async function runCli(procfs: Procfs, run: CliRun): Promise<CliResult> {
  const args = [
    ...CHILD_PERMISSIONS,
    "main.ts",
    run.input,
    "-o",
    run.output,
    "--base-url",
    run.baseURL,
    "--model",
    "bench",
    "--concurrency",
    String(run.concurrency),
    "-q",
    ...(run.cache === null ? ["--no-cache"] : ["--cache", run.cache]),
  ];
  const childrenCpu = async () => (await procfs.cpuTimes(Deno.pid))?.children ?? NaN;
  const before = await childrenCpu();
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const watch = watchProcess(procfs, child.pid);
  const stderr = new Response(child.stderr).text();
  const status = await child.status;
  const wallMs = performance.now() - started;
  const cpuMs = await childrenCpu() - before;
  const watched = await watch.stop();
  const usage = JSON.parse(await Deno.readTextFile(join(run.output, "usage.json"))) as CliUsage;
  return {
    exitCode: status.code,
    wallMs,
    cpuMs,
    peakRss: watched.peakRss,
    usage,
    stderr: await stderr,
  };
}

/** Options of {@linkcode runReferenceClient}. */
export interface ReferenceRun {
  baseURL: string;
  concurrency: number;
  count: number;
  /** About how large each request body is. */
  bodyBytes: number;
}

/** What one run of the HTTP-only reference client measured. */
export interface ReferenceResult {
  /** From its first request to its last reply, start-up excluded. */
  readonly wallMs: number;
  /** User + system CPU of the client process, whole life. */
  readonly cpuMs: number;
}

/**
 * Runs `bench/reference_client.ts` (HTTP only, through `src/http1.ts`) to the end, in its own
 * process as the CLI runs. The same rule as {@linkcode runCli} holds for CPU: no other child of
 * this process may exit meanwhile.
 *
 * @param procfs Reads CPU.
 * @param run Endpoint, concurrency, count and body size.
 * @returns Its timing and CPU.
 */
export async function runReferenceClient(
  procfs: Procfs,
  run: ReferenceRun,
): Promise<ReferenceResult> {
  const childrenCpu = async () => (await procfs.cpuTimes(Deno.pid))?.children ?? NaN;
  const before = await childrenCpu();
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "bench/reference_client.ts",
      "--url",
      run.baseURL,
      "--concurrency",
      String(run.concurrency),
      "--count",
      String(run.count),
      "--body-bytes",
      String(run.bodyBytes),
    ],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const cpuMs = await childrenCpu() - before;
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(`The reference client failed: ${text.decode(output.stderr)}`);
  }
  const { wallMs } = JSON.parse(text.decode(output.stdout)) as { wallMs: number };
  return { wallMs, cpuMs };
}

/** A running cotfit server in its own process. */
export interface ServerProcess extends AsyncDisposable {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly pid: number;
  /** Its CPU time so far, in milliseconds. */
  cpuMs(): Promise<number>;
  /** Its memory now (peak included), or `null` once it is gone. */
  memory(): Promise<Memory | null>;
  /** Stops it (SIGTERM) and waits for its exit. */
  stop(): Promise<void>;
}

/**
 * Starts `server.ts` with no auth on 127.0.0.1 and an in-memory cache.
 *
 * @param procfs Reads its CPU and memory.
 * @param baseURL The LLM endpoint.
 * @param concurrency LLM calls in flight, overall and per request.
 * @returns The running server; stop it (or `await using` it) when done.
 */
export async function startServer(
  procfs: Procfs,
  baseURL: string,
  concurrency: number,
): Promise<ServerProcess> {
  const { child, firstLine } = await spawnDeno(
    [
      ...CHILD_PERMISSIONS,
      "server.ts",
      "--port",
      "0",
      "--base-url",
      baseURL,
      "--model",
      "bench",
      "--insecure-no-auth",
      "--concurrency",
      String(concurrency),
      "--request-concurrency",
      String(concurrency),
    ],
    "stderr",
    /listening on http:/,
  );
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      child.kill("SIGTERM");
      await child.status;
    })();
  return {
    url: firstLine.slice(firstLine.indexOf("http://")).trim(),
    pid: child.pid,
    cpuMs: async () => (await procfs.cpuTimes(child.pid))?.own ?? 0,
    memory: () => procfs.memory(child.pid),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
