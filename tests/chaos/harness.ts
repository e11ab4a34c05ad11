/**
 * Shared machinery of the chaos suite: a report each scenario fills with figures and failed
 * checks, the CLI run as a killable subprocess with a deadline, and JSONL file helpers.
 *
 * Requires `--allow-run` (the CLI subprocess, `cat` for RSS), `--allow-read` and `--allow-write`.
 *
 * @module
 */

import { join } from "node:path";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Permissions the CLI and the server get: what a careful user would grant them. */
const CLI_PERMISSIONS = [
  "--no-prompt",
  "--allow-read",
  "--allow-write",
  "--allow-net=127.0.0.1",
  "--allow-env",
] as const;

/**
 * What one scenario found: figures worth printing, and every check that failed. A scenario
 * keeps going after a failed check, so one run shows every loss at once.
 */
export class ScenarioReport {
  readonly figures: [string, string][] = [];
  readonly failures: string[] = [];

  constructor(readonly name: string, readonly log: (text: string) => void) {}

  /** Records a figure and prints it at once, so a slow scenario shows its progress. */
  figure(label: string, value: string | number): void {
    const text = typeof value === "number" ? formatNumber(value) : value;
    this.figures.push([label, text]);
    this.log(`  ${label.padEnd(44)} ${text}`);
  }

  /** Records a failure when `ok` is false; returns `ok`. */
  check(ok: boolean, what: string): boolean {
    if (!ok) {
      this.failures.push(what);
      this.log(`  FAIL ${what}`);
    }
    return ok;
  }

  /** Prints a line of commentary (what is being done now). */
  note(text: string): void {
    this.log(`  - ${text}`);
  }

  get passed(): boolean {
    return this.failures.length === 0;
  }
}

/** A number with thousands separators, decimals only when it has some. */
export function formatNumber(value: number): string {
  return Number.isInteger(value)
    ? value.toLocaleString("en-US")
    : value.toLocaleString("en-US", { maximumFractionDigits: 3 });
}

/** What a finished CLI (or server) process left behind. */
export interface ProcessResult {
  /** Exit code; 137 after SIGKILL. */
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** The process outlived its deadline and was killed. */
  timedOut: boolean;
  /** Wall time in milliseconds. */
  ms: number;
}

/** A CLI process still running. */
export interface RunningProcess {
  readonly pid: number;
  /** Everything written to stderr so far. */
  stderrSoFar(): string;
  /** Sends a signal; ignores a process that already ended. */
  kill(signal: Deno.Signal): void;
  /** Resolves once the process has ended and its output is read. */
  readonly done: Promise<ProcessResult>;
}

/** Options of {@linkcode spawnCli}. */
export interface SpawnOptions {
  /** Extra environment (NO_COLOR is always set). */
  env?: Record<string, string>;
  /**
   * Killed with SIGKILL past this; the result says `timedOut`. A hang is a failure, not a wait.
   * @default {180_000}
   */
  timeoutMs?: number;
  /** The module to run. @default {main.ts} */
  entry?: string;
  /** Deno flags before the module, e.g. `--v8-flags=...`. @default {[]} */
  denoFlags?: string[];
}

/**
 * Starts `main.ts` (or another entry point) in a subprocess, as a user would, reading its
 * output as it comes so a full pipe never stalls it.
 *
 * @param args CLI arguments.
 * @param options Environment, entry point, deadline.
 * @returns The running process.
 */
export function spawnCli(args: string[], options: SpawnOptions = {}): RunningProcess {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLI_PERMISSIONS, ...options.denoFlags ?? [], options.entry ?? MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
  }).spawn();
  let stderr = "";
  let exited = false;
  const readStderr = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(text) {
        stderr += text;
      },
    }),
  );
  const readStdout = new Response(child.stdout).text();
  let timedOut = false;
  const kill = (signal: Deno.Signal) => {
    if (exited) return;
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill("SIGKILL");
  }, options.timeoutMs ?? 180_000);
  const done = (async (): Promise<ProcessResult> => {
    const status = await child.status;
    exited = true;
    clearTimeout(timer);
    const [stdout] = await Promise.all([readStdout, readStderr]);
    return {
      code: status.code,
      signal: status.signal,
      stdout,
      stderr,
      timedOut,
      ms: performance.now() - started,
    };
  })();
  return { pid: child.pid, stderrSoFar: () => stderr, kill, done };
}

/** Runs the CLI to its end (or its deadline). */
export function runCli(args: string[], options: SpawnOptions = {}): Promise<ProcessResult> {
  return spawnCli(args, options).done;
}

/** Waits until `ready()` holds, polling every `everyMs`; false when `timeoutMs` passes first. */
export async function waitFor(
  ready: () => boolean,
  options: { timeoutMs: number; everyMs?: number },
): Promise<boolean> {
  const deadline = performance.now() + options.timeoutMs;
  while (!ready()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 5));
  }
  return true;
}

/** Parses JSONL text; a line that is not JSON is returned as a {@linkcode BrokenLine}. */
export function parseJsonl(text: string): unknown[] {
  const values: unknown[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === "") continue;
    try {
      values.push(JSON.parse(lines[i]));
    } catch {
      values.push(new BrokenLine(i + 1, lines[i]));
    }
  }
  return values;
}

/** An output line that is not JSON: itself a loss, so scenarios count it as one. */
export class BrokenLine {
  constructor(readonly line: number, readonly text: string) {}
}

/** The text of a file, or `null` when it does not exist. */
export async function readIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The bytes of a file, or `null` when it does not exist. */
export async function readBytesIfExists(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Whether two byte arrays are equal. */
export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The reject lines cotfit writes. */
export interface RejectLine {
  file: string;
  line: number;
  reason: string;
  raw: string;
}

/** Parses a rejects file (missing = none); malformed lines become failures of the report. */
export async function readRejects(path: string, report: ScenarioReport): Promise<RejectLine[]> {
  const text = await readIfExists(path);
  if (text === null) return [];
  const rejects: RejectLine[] = [];
  for (const value of parseJsonl(text)) {
    if (
      isRecord(value) && typeof value.line === "number" && typeof value.reason === "string" &&
      value.reason !== "" && typeof value.raw === "string"
    ) {
      rejects.push(value as unknown as RejectLine);
    } else {
      report.check(false, `rejects line without line/reason/raw: ${preview(value)}`);
    }
  }
  return rejects;
}

/** A plain object, not an array. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value cut to one short line, for failure messages. */
export function preview(value: unknown, max = 160): string {
  const text = value instanceof BrokenLine ? value.text : JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** The summary line cotfit prints: `records   W written, R rejected, S skipped (blank)`. */
export function summaryCounts(
  stderr: string,
): { written: number; rejected: number; skipped: number } | null {
  const match = stderr.match(/([\d,]+) written, ([\d,]+) rejected, ([\d,]+) skipped/);
  if (!match) return null;
  const number = (text: string) => Number(text.replaceAll(",", ""));
  return { written: number(match[1]), rejected: number(match[2]), skipped: number(match[3]) };
}

/** The last `lines` lines of a text, for failure messages about a process. */
export function tail(text: string, lines = 8): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Makes a fresh directory for one scenario under the suite's root. */
export async function scenarioDir(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Resident memory of a process in KiB (Linux `/proc/PID/status` VmRSS), or null. Read through
 * `cat`: Deno asks for `--allow-all` to read `/proc` itself, `--allow-run` is enough for this.
 */
export async function rssKiB(pid: number): Promise<number | null> {
  try {
    const { success, stdout } = await new Deno.Command("cat", {
      args: [`/proc/${pid}/status`],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!success) return null;
    const match = new TextDecoder().decode(stdout).match(/^VmRSS:\s+(\d+)\s+kB/m);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
