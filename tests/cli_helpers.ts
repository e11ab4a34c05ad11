/**
 * Helpers for end-to-end tests: run the real CLI as a subprocess with narrow permissions, or its
 * conversion in-process; build requests; compute the thought the offline endpoint writes.
 *
 * @module
 */

import { join } from "node:path";
import { resolveOptions } from "../src/config.ts";
import { offlineThought } from "../src/offline_thought.ts";
import { runConversion } from "../src/run.ts";
import { extractThought } from "../src/thought.ts";
import type { ThoughtRequest } from "../src/types.ts";

export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** What a CLI run left behind. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `main.ts` with the given arguments in a subprocess, as a user would.
 *
 * @param args CLI arguments.
 * @param options Text (or bytes) for stdin, or a file to give as stdin, extra environment.
 * @returns Exit code, stdout and stderr.
 */
export async function runCli(
  args: string[],
  options: { stdin?: string | Uint8Array; stdinFile?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const command = cliCommand(args, { ...options, stdin: options.stdin !== undefined });
  const child = command.spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    const { stdin } = options;
    await writer.write(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/**
 * The `deno run main.ts ...` command with the narrow permissions a user would give.
 *
 * @param args CLI arguments.
 * @param options Whether stdin is piped, or a file to give as stdin (`< FILE`, through `sh`),
 * extra environment.
 * @returns The command, not yet spawned; stdout and stderr are piped.
 */
export function cliCommand(
  args: string[],
  options: { stdin?: boolean; stdinFile?: string; env?: Record<string, string> } = {},
): Deno.Command {
  const deno = cliArgv(args);
  // Deno.Command pipes stdin or gives none; a shell redirect gives the file itself.
  const [program, ...rest] = options.stdinFile === undefined
    ? deno
    : ["sh", "-c", 'file=$1; shift; exec "$@" < "$file"', "sh", options.stdinFile, ...deno];
  return new Deno.Command(program, {
    args: rest,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
  });
}

/**
 * The program and arguments of `deno run main.ts ...`, with the narrow permissions a user would
 * give.
 *
 * @param args CLI arguments.
 * @returns The command line, program first.
 */
export function cliArgv(args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--no-prompt",
    "--allow-read",
    "--allow-write",
    "--allow-net=127.0.0.1",
    "--allow-env",
    MAIN,
    ...args,
  ];
}

/** Arguments of a file conversion against a test endpoint with model `m`. */
export function convertArgs(input: string, output: string, baseURL: string): string[] {
  return [input, "-o", output, "--base-url", baseURL, "--model", "m"];
}

/**
 * Converts `input` into `output` in this process, quietly, with model `m` at `baseURL`.
 *
 * @returns The exit code.
 */
export function convertInProcess(input: string, output: string, baseURL: string): Promise<number> {
  const options = resolveOptions({
    flags: { model: "m", "base-url": baseURL, output, quiet: true },
    positionals: [input],
    env: {},
  });
  return runConversion(options, {
    stdin: ReadableStream.from<Uint8Array>([]),
    stdout: new WritableStream(),
    stderr: () => {},
    stderrIsTTY: false,
    stop: new AbortController().signal,
    now: () => performance.now(),
  });
}

/** A request for the first answer of a conversation with no system prompt. */
export function singleTurnRequest(question: string, answer: string): ThoughtRequest {
  return {
    turnIndex: 1,
    system: null,
    history: [],
    droppedTurns: 0,
    request: { index: 0, role: "user", name: "human", text: question },
    between: [],
    answer,
  };
}

/** Makes a temporary directory holding the given files. */
export async function tempTree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "cotfit-e2e-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

/** Parses a JSONL text into values. */
export function parseJsonl(text: string): unknown[] {
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

/** The answer section of a rendered prompt. */
export function answerOf(prompt: string): string {
  const match = prompt.match(/<answer>\n([^]*)\n<\/answer>/);
  if (!match) throw new Error(`no <answer> section in prompt: ${prompt.slice(0, 200)}`);
  return match[1];
}

/** The thought cotfit keeps from the offline endpoint's reply to this prompt. */
export function expectedThought(prompt: string): string {
  const result = extractThought({ content: offlineThought(prompt), finishReason: "stop" });
  if (!result.ok) throw new Error(`offline thought rejected: ${result.reason}`);
  return result.thought;
}

/** The last message of a recorded chat request body. */
export function lastPrompt(body: { messages: readonly { content: unknown }[] }): string {
  const last = body.messages.at(-1);
  if (typeof last?.content !== "string") throw new Error("last message has no text");
  return last.content;
}
