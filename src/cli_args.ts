/**
 * Splits cotfit's command line into the command, flags and positionals, with `node:util`'s
 * `parseArgs`. Values stay text here: `resolveOptions` (`./config.ts`) checks them, so
 * its errors can name the flag.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError, firstLine } from "./config_error.ts";

/** What cotfit was asked to do: the first positional `serve` or `demo`, else `run`. */
export type Command = "run" | "serve" | "demo";

const CLI_OPTIONS = {
  output: { type: "string", short: "o" },
  rejects: { type: "string" },
  "max-line-bytes": { type: "string" },
  "base-url": { type: "string" },
  model: { type: "string" },
  "api-key-env": { type: "string" },
  temperature: { type: "string" },
  "top-p": { type: "string" },
  "max-tokens": { type: "string" },
  "extra-body": { type: "string" },
  timeout: { type: "string" },
  retries: { type: "string" },
  concurrency: { type: "string" },
  "history-tokens": { type: "string" },
  "max-thought-tokens": { type: "string" },
  "cot-preface": { type: "string" },
  "cot-suffix": { type: "string" },
  prompt: { type: "string" },
  cache: { type: "string" },
  "no-cache": { type: "boolean" },
  "dry-run": { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  limit: { type: "string" },
  sample: { type: "string" },
  seed: { type: "string" },
  "debug-log": { type: "string" },
  "price-input": { type: "string" },
  "price-output": { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  token: { type: "string" },
  "insecure-no-auth": { type: "boolean" },
  "max-requests": { type: "string" },
  "request-concurrency": { type: "string" },
  config: { type: "string", short: "c" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

export type FlagName = Exclude<keyof typeof CLI_OPTIONS, "config" | "help" | "version">;

/**
 * Flag values as typed, keyed by long flag name. Numbers stay text until
 * `resolveOptions` checks them, so its errors can name the flag.
 */
export type CliFlags = {
  readonly [K in FlagName]?: (typeof CLI_OPTIONS)[K]["type"] extends "string" ? string : boolean;
};

/** The command line, split but not yet checked against the environment and config. */
export interface ParsedArgs {
  /** `serve` or `demo` when the first positional says so, else `run`. */
  readonly command: Command;
  /** `-h`/`--help` was given. */
  readonly help: boolean;
  /** `--version` was given. */
  readonly version: boolean;
  /** `-c`/`--config FILE`, for the caller to read. */
  readonly configPath: string | undefined;
  /** Every other flag. */
  readonly flags: CliFlags;
  /** Positionals as given, the command word included; `-` is stdin. */
  readonly positionals: readonly string[];
}

/**
 * Splits a command line into the command, `--help`/`--version`, the config path, flags and
 * positionals. Values are checked later, by `resolveOptions`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCliArgs } from "./cli_args.ts";
 *
 * const parsed = parseCliArgs(["serve", "--port", "9000", "-c", "cotfit.yaml"]);
 * assert.equal(parsed.command, "serve");
 * assert.equal(parsed.configPath, "cotfit.yaml");
 * assert.deepEqual(parsed.flags, { port: "9000" });
 * ```
 *
 * @param args The arguments, without the program name.
 * @returns The parsed command line.
 * @throws {ConfigError} On an unknown flag or a flag without its value.
 */
export function parseCliArgs(args: readonly string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: CLI_OPTIONS,
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw toConfigError(error);
  }
  const { config, help, version, ...flags } = parsed.values;
  return {
    command: commandOf(parsed.positionals),
    help: help ?? false,
    version: version ?? false,
    configPath: config,
    flags,
    positionals: parsed.positionals,
  };
}

/**
 * The command a command line asks for: the first positional `serve` or `demo`, else `run`.
 *
 * @param positionals The positionals, the command word included.
 * @returns The command.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { commandOf } from "./cli_args.ts";
 *
 * assert.equal(commandOf(["serve"]), "serve");
 * assert.equal(commandOf(["data.jsonl", "serve"]), "run");
 * assert.equal(commandOf([]), "run");
 * ```
 */
export function commandOf(positionals: readonly string[]): Command {
  const first = positionals[0];
  return first === "serve" || first === "demo" ? first : "run";
}

function toConfigError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS_")) return error;
  const message = (error as Error).message;
  // node:util quotes the option as '--name', '-o, --name <value>' or '-x'.
  const option = /'(?:-\w, )?(--?[^' ]+)/.exec(message)?.[1];
  if (option === undefined) return new ConfigError(`Cannot parse arguments: ${firstLine(message)}`);
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return new ConfigError(`unknown option ${option}, see --help`, option);
  }
  if (message.includes("argument missing")) {
    return new ConfigError(`${option} needs a value`, option);
  }
  if (message.includes("does not take an argument")) {
    return new ConfigError(`${option} takes no value`, option);
  }
  if (message.includes("ambiguous")) {
    return new ConfigError(
      `${option} needs a value; write ${option}=VALUE when it starts with -`,
      option,
    );
  }
  return new ConfigError(`${option}: ${firstLine(message)}`, option);
}
