/**
 * Turns command-line flags, environment variables and a YAML config file into one typed,
 * validated {@linkcode Options}. Precedence: flags > environment > config file > defaults.
 *
 * The config file is cotfit's own schema (see `config.example.yaml`) or an Augmentoolkit
 * `generic_data_rephrase` `config.yaml` as is. {@linkcode resolveOptions} is pure: the caller
 * reads the file and the environment, so this module needs no permissions.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { parseDocument } from "yaml";
import { poolSuits } from "./http1.ts";

/**
 * A bad flag, environment variable or config value. The message is one line and never holds
 * the API key or the server token.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, parseCliArgs } from "./config.ts";
 *
 * assert.throws(
 *   () => parseCliArgs(["--colour"]),
 *   (error) => error instanceof ConfigError && error.path === "--colour",
 * );
 * ```
 */
export class ConfigError extends TypeError {
  /** What was wrong: a flag (`--concurrency`), an env var or a config key (`system.foo`). */
  readonly path?: string;

  /**
   * @param message One line, no final period.
   * @param path The flag, environment variable or dotted config key at fault.
   */
  constructor(message: string, path?: string) {
    super(message);
    this.name = "ConfigError";
    this.path = path;
  }
}

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

type FlagName = Exclude<keyof typeof CLI_OPTIONS, "config" | "help" | "version">;

/**
 * Flag values as typed, keyed by long flag name. Numbers stay text until
 * {@linkcode resolveOptions} checks them, so its errors can name the flag.
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

/** Token prices for the cost report. */
export interface Prices {
  /** USD per million input (prompt) tokens. */
  readonly inputPerMillion: number;
  /** USD per million output (completion) tokens. */
  readonly outputPerMillion: number;
}

/**
 * Everything a cotfit run or server needs, checked and with defaults applied.
 *
 * `apiKey` and `token` are secrets: `JSON.stringify(options)`, `console.log(options)` and
 * `Deno.inspect(options)` show them as `***`. A copy made with `{ ...options }` keeps them
 * but not that protection: print copies through {@linkcode redactOptions}.
 */
export interface Options {
  /** What to do. @default {"run"} */
  readonly command: Command;
  /**
   * Files or directories to read; `-` is stdin. The positionals, or `input.paths` /
   * `path.input_dir` from the config (relative to the config file). Empty for `serve`, `demo`.
   * @default {[]}
   */
  readonly inputs: readonly string[];
  /** `-o`/`--output` directory, or `output.dir` / `path.output_dir`. @default {null} */
  readonly output: string | null;
  /** `--rejects FILE`: where rejected records go when reading stdin. @default {null} */
  readonly rejects: string | null;
  /** `--max-line-bytes`: longer input lines are rejected. @default {16777216} */
  readonly maxLineBytes: number;

  /** `--base-url`, env `OPENAI_BASE_URL`. @default {"https://api.openai.com/v1"} */
  readonly baseURL: string;
  /**
   * `--model`, env `COTFIT_MODEL`; required except for `demo`, where it defaults to
   * `cotfit-offline-demo`.
   */
  readonly model: string;
  /** `--api-key-env`: the environment variable holding the API key. @default {"OPENAI_API_KEY"} */
  readonly apiKeyEnv: string;
  /**
   * Secret: the environment variable named by `apiKeyEnv`, else the config's `llm.api_key`
   * or `api.large_api_key`. Never taken from a flag.
   * @default {undefined}
   */
  readonly apiKey: string | undefined;
  /** `--temperature`, 0 to 2. @default {0.7} */
  readonly temperature: number;
  /** `--top-p`, 0 to 1; `undefined` leaves it to the server. @default {undefined} */
  readonly topP: number | undefined;
  /** `--max-tokens`: completion token cap per call. @default {1024} */
  readonly maxTokens: number;
  /**
   * `--extra-body JSON` or `generation.extra_body`: more fields for every request, for what a
   * server offers beyond the common ones (`reasoning_effort`, vLLM's `chat_template_kwargs`...).
   * Part of the cache key. @default {null}
   */
  readonly extraBody: Readonly<Record<string, unknown>> | null;
  /** `--timeout SECONDS`, as milliseconds: per-call timeout. @default {120000} */
  readonly timeoutMs: number;
  /** `--retries`: further attempts after a failed call. @default {7} */
  readonly retries: number;
  /**
   * Env `COTFIT_RETRY_BASE_MS` or `llm.retry_base_ms`: first backoff after a transient error;
   * it doubles per attempt up to 30 s. A server's `retry-after` wins. @default {1000}
   */
  readonly retryBaseMs: number;
  /**
   * Env `COTFIT_TRANSPORT` or `llm.transport` (`auto`, `pooled`, `fetch`): how LLM requests
   * travel. `auto` picks cotfit's pooled HTTP/1.1 client (a third of `fetch`'s CPU per call) for
   * an `http:` base URL on an IP address or localhost when no `HTTP_PROXY`/`ALL_PROXY` is set,
   * else `fetch`.
   * @default {"pooled" or "fetch", as auto picks}
   */
  readonly transport: "pooled" | "fetch";
  /** `--concurrency`: LLM calls in flight, 1 to 4096. @default {32} */
  readonly concurrency: number;
  /** `--history-tokens`: budget for the earlier turns shown to the LLM. @default {3000} */
  readonly historyTokens: number;
  /** `--max-thought-tokens`: longer thoughts are rejected. @default {1024} */
  readonly maxThoughtTokens: number;

  /** `--cot-preface`: written before the thought. @default {"Thought Process:"} */
  readonly cotPreface: string;
  /** `--cot-suffix`: written after the thought, before the answer. @default {"\nAnswer:"} */
  readonly cotSuffix: string;
  /** `--prompt FILE`: a prompt YAML instead of the built-in one. @default {null} */
  readonly promptPath: string | null;

  /** `--cache PATH`: the generation cache; `null` puts it beside the outputs. @default {null} */
  readonly cache: string | null;
  /** `--no-cache`: neither read nor write a cache. @default {false} */
  readonly noCache: boolean;
  /** `--dry-run`: count and estimate, call no LLM. @default {false} */
  readonly dryRun: boolean;
  /** `-q`/`--quiet`: no progress display. @default {false} */
  readonly quiet: boolean;
  /** `--limit N`: only the first N records (Augmentoolkit's `use_subset`). @default {null} */
  readonly limit: number | null;
  /** `--sample N`: a seeded random N records. @default {null} */
  readonly sample: number | null;
  /** `--seed S`: seed of `sample`. @default {0} */
  readonly seed: number;
  /** `--debug-log FILE`: where raw generations are logged. @default {null} */
  readonly debugLog: string | null;
  /** `--price-input` and `--price-output` together, USD per million tokens. @default {null} */
  readonly prices: Prices | null;

  /** `--host`: interface `serve` listens on. @default {"127.0.0.1"} */
  readonly host: string;
  /** `--port`: port `serve` listens on; 0 picks a free one. @default {8787} */
  readonly port: number;
  /**
   * Secret: `--token`, env `COTFIT_TOKEN`: the bearer token `serve` requires; needed on a
   * non-loopback `host` unless `insecureNoAuth`.
   * @default {undefined}
   */
  readonly token: string | undefined;
  /** `--insecure-no-auth`: `serve` on a non-loopback host without a token. @default {false} */
  readonly insecureNoAuth: boolean;
  /** `--max-requests`: requests `serve` handles at once. @default {64} */
  readonly maxRequests: number;
  /** `--request-concurrency`: LLM calls in flight per request. @default {16} */
  readonly requestConcurrency: number;

  /** Config keys that were accepted but do not apply (Augmentoolkit's), for one warning. */
  readonly ignoredKeys: readonly string[];
}

/** {@linkcode Options} safe to print: secrets are `"***"` when set, `null` when not. */
export type RedactedOptions = Omit<Options, "apiKey" | "token"> & {
  readonly apiKey: "***" | null;
  readonly token: "***" | null;
};

/** What {@linkcode resolveOptions} reads. */
export interface ResolveInput {
  /** Flags from {@linkcode parseCliArgs}. */
  readonly flags: CliFlags;
  /** Positionals from {@linkcode parseCliArgs}, the command word included. */
  readonly positionals: readonly string[];
  /** The config file's text, when there is one. */
  readonly configText?: string;
  /** The config file's path, named in errors; relative paths in the file start from its folder. */
  readonly configPath?: string;
  /** The environment, e.g. `Deno.env.toObject()`. */
  readonly env: Readonly<Record<string, string>>;
}

/**
 * Help for `cotfit --help`: examples first, then every option with its default.
 */
export const HELP_TEXT =
  `cotfit: add a synthetic "thought process" before every assistant answer of a
ShareGPT, OpenAI, Alpaca, Dolly or OpenOrca JSONL dataset, written by any
OpenAI-compatible LLM.
Each answer becomes PREFACE\\nTHOUGHT\\nSUFFIX\\nANSWER; the answer itself is never changed.

"cotfit" below stands for "deno task start", or in full:
  deno run --allow-read --allow-write --allow-net --allow-env main.ts

To add thoughts to a file or to every .jsonl/.json(.gz) file under a folder, writing out/NAME.jsonl:
  export OPENAI_API_KEY=sk-...
  cotfit data/ -o out/ --model gpt-4o-mini

To filter a stream, with rejected records going to a file:
  cotfit - --model gpt-4o-mini --rejects rejects.jsonl < in.jsonl > out.jsonl

To try the first 20 records, and to estimate a whole run's cost without calling the LLM:
  cotfit data.jsonl -o out/ --model gpt-4o-mini --limit 20
  cotfit data.jsonl -o out/ --model gpt-4o-mini --dry-run --price-input 0.15 --price-output 0.6

To use a local server (Ollama, vLLM, llama.cpp...), or an Augmentoolkit config as is:
  cotfit data/ -o out/ --base-url http://127.0.0.1:11434/v1 --model llama3.1
  cotfit -c generic_data_rephrase/config.yaml

To serve it over HTTP to clients sending "Authorization: Bearer $COTFIT_TOKEN":
  COTFIT_TOKEN=$(openssl rand -hex 24) cotfit serve --model gpt-4o-mini

To see it work offline, against a built-in stand-in for the LLM (no key, no network):
  cotfit demo

USAGE:
  cotfit [OPTIONS] INPUT... -o OUT_DIR     files or folders; each output keeps its input's name
  cotfit [OPTIONS] - < in.jsonl > out.jsonl
  cotfit serve [OPTIONS]
  cotfit demo [OPTIONS]
  (An input file named "serve" or "demo" is written ./serve.)

INPUT AND OUTPUT:
  -o, --output=DIR            Write each input NAME to DIR/NAME, and its rejected records to
                              DIR/NAME.rejects.jsonl
      --rejects=FILE          Where rejected records go when reading - (default: stderr)
      --max-line-bytes=N      Longer input lines are rejected (default 16777216, 16 MiB)

LLM:
      --model=NAME            Model to ask; required (env COTFIT_MODEL)
      --base-url=URL          OpenAI-compatible endpoint (default https://api.openai.com/v1;
                              env OPENAI_BASE_URL)
      --api-key-env=NAME      Environment variable holding the API key (default OPENAI_API_KEY);
                              the key is never taken from a flag
      --concurrency=N         LLM calls in flight, 1 to 4096 (default 32)
      --timeout=SECONDS       Per-call timeout (default 120)
      --retries=N             Further attempts after a failed call or a bad thought (default 7)
      --temperature=T         Sampling temperature, 0 to 2 (default 0.7)
      --top-p=P               Nucleus sampling, 0 to 1 (default: the server's)
      --max-tokens=N          Completion token cap per call (default 1024)
      --extra-body=JSON       More request fields, e.g. '{"reasoning_effort": "low"}' or
                              '{"chat_template_kwargs": {"enable_thinking": false}}'
      --max-thought-tokens=N  Longer thoughts are rejected and retried (default 1024)
      --history-tokens=N      Tokens of earlier turns shown; the oldest go first (default 3000)

OUTPUT FORMAT:
      --cot-preface=TEXT      Written before the thought (default "Thought Process:")
      --cot-suffix=TEXT       Written after it, before the answer (default "\\nAnswer:");
                              in both, \\n is a newline and \\t a tab
      --prompt=FILE           Prompt YAML to use instead of prompts/thought_process.yaml

LONG RUNS:
      --cache=PATH            Generation cache: a rerun resumes and re-pays nothing
                              (default: OUT_DIR/.cotfit-cache.sqlite)
      --no-cache              Neither read nor write a cache
      --dry-run               Read and count everything, call no LLM
      --limit=N               Only the first N records
      --sample=N              A random N records, the same for the same --seed
      --seed=S                Seed of --sample (default 0)
      --price-input=USD       USD per million input tokens, for the cost report
      --price-output=USD      USD per million output tokens (give both prices or neither)
      --debug-log=FILE        Log every raw generation to FILE as JSONL
  -q, --quiet                 No progress display

SERVER (cotfit serve):
      --host=HOST             Interface to listen on (default 127.0.0.1)
      --port=PORT             Port to listen on; 0 picks a free one (default 8787)
      --token=TOKEN           Bearer token clients must send; required on a non-loopback --host
                              unless --insecure-no-auth (env COTFIT_TOKEN, better: flags show in
                              the process list)
      --insecure-no-auth      Accept requests without a token
      --max-requests=N        Requests handled at once (default 64)
      --request-concurrency=N LLM calls in flight per request (default 16)

GENERAL:
  -c, --config=FILE           YAML config: cotfit's own (see config.example.yaml) or an
                              Augmentoolkit generic_data_rephrase config.yaml as is. Paths in it
                              are relative to its folder. Flags > env > config > defaults.
  -h, --help                  Show this help
      --version               Show the version

ENVIRONMENT:
  OPENAI_API_KEY   API key (or the variable named by --api-key-env)
  OPENAI_BASE_URL  Default of --base-url
  COTFIT_MODEL     Default of --model
  COTFIT_RETRY_BASE_MS  First backoff after a transient error, doubling up to 30 s (default 1000)
  COTFIT_TRANSPORT auto (default), pooled or fetch: auto sends http:// endpoints on an IP address
                   or localhost through cotfit's keep-alive HTTP/1.1 pool unless HTTP_PROXY or
                   ALL_PROXY is set, the rest through fetch
  COTFIT_TOKEN     Default of --token

EXIT CODES:
  0    every record was written
  1    some records were rejected (see the rejects files)
  2    bad usage, flag or config, an output or cache that cannot be created, or the LLM
       endpoint refused the run (bad key or model)
  130  interrupted; run the same command again to resume from the cache

PERMISSIONS:
  --allow-read   inputs, config, prompt, cache
  --allow-write  outputs, rejects, cache, debug log
  --allow-net    the LLM endpoint (narrow it: --allow-net=api.openai.com); serve: its port
  --allow-env    the API key, OPENAI_BASE_URL, COTFIT_*, HTTP_PROXY, ALL_PROXY`;

/**
 * Splits a command line into the command, `--help`/`--version`, the config path, flags and
 * positionals. Values are checked later, by {@linkcode resolveOptions}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCliArgs } from "./config.ts";
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
 * Builds the {@linkcode Options} of a run from flags, environment and config text, each
 * checked. Pure: reads no file and no environment of its own.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCliArgs, resolveOptions } from "./config.ts";
 *
 * const { flags, positionals } = parseCliArgs(["data.jsonl", "-o", "out", "--concurrency", "8"]);
 * const options = resolveOptions({
 *   flags,
 *   positionals,
 *   configText: "llm:\n  model: from-config\n  concurrency: 64\n",
 *   configPath: "conf/cotfit.yaml",
 *   env: { COTFIT_MODEL: "from-env", OPENAI_API_KEY: "sk-secret" },
 * });
 * assert.equal(options.concurrency, 8); // flag beats config
 * assert.equal(options.model, "from-env"); // env beats config
 * assert.equal(options.apiKey, "sk-secret");
 * assert.ok(!JSON.stringify(options).includes("sk-secret"));
 * ```
 *
 * @param input Flags and positionals from {@linkcode parseCliArgs}, the config text and path,
 *   and the environment.
 * @returns Frozen options.
 * @throws {ConfigError} Naming the flag, environment variable or config key at fault.
 */
export function resolveOptions(input: ResolveInput): Options {
  const command = commandOf(input.positionals);
  const operands = command === "run" ? input.positionals : input.positionals.slice(1);
  if (command !== "run" && operands.length > 0) {
    throw new ConfigError(`cotfit ${command} takes no INPUT, got "${operands[0]}"`, "INPUT");
  }
  const config = readConfig(input.configText, input.configPath);
  // Check every config value, also those that a flag or env var overrides: a wrong file is wrong.
  readSettings(new SettingReader({}, {}, config, { placeholders: "unset" }), []);
  const settings = readSettings(
    new SettingReader(input.flags, input.env, config, { placeholders: "reject" }),
    command === "run" ? operands : null,
  );
  const { model, configApiKey, token, priceInput, priceOutput, transport, ...rest } = settings;
  const baseURL = new URL(rest.baseURL);
  if (transport === "pooled" && baseURL.protocol !== "http:") {
    throw new ConfigError(
      `transport pooled needs an http: base URL, got ${new URL(rest.baseURL).protocol}; use fetch`,
      "COTFIT_TRANSPORT",
    );
  }

  if (model === undefined && command !== "demo") {
    throw new ConfigError(
      "no model: pass --model NAME, set COTFIT_MODEL, or set llm.model in the config",
      "--model",
    );
  }
  if (
    command === "serve" && token === undefined && !rest.insecureNoAuth &&
    !isLoopbackHost(rest.host)
  ) {
    throw new ConfigError(
      `no token for serve on non-loopback host ${rest.host}: set COTFIT_TOKEN (or --token), ` +
        "or pass --insecure-no-auth",
      "--token",
    );
  }
  if (command === "serve" && token !== undefined && !isBearerToken(token)) {
    throw new ConfigError(
      "the serve token must be letters, digits and . _ ~ + / - (then = padding), as " +
        "bearer tokens are; try: openssl rand -hex 24",
      "--token",
    );
  }
  if ((priceInput === undefined) !== (priceOutput === undefined)) {
    const missing = priceInput === undefined ? "--price-input" : "--price-output";
    throw new ConfigError(
      `${missing} is missing: give both prices (--price-input and --price-output) or neither`,
      missing,
    );
  }
  const visible: Omit<Options, "apiKey" | "token"> = {
    command,
    ...rest,
    // fetch honours proxy variables; the pool does not, so a proxy keeps requests on fetch.
    transport: transport === "auto"
      ? poolSuits(baseURL) && !PROXY_VARS.some((name) => nonEmpty(input.env[name]))
        ? "pooled"
        : "fetch"
      : transport,
    model: model ?? "cotfit-offline-demo",
    prices: priceInput === undefined || priceOutput === undefined
      ? null
      : Object.freeze({ inputPerMillion: priceInput, outputPerMillion: priceOutput }),
    ignoredKeys: config.ignoredKeys,
  };
  const apiKey = nonEmpty(input.env[rest.apiKeyEnv]) ?? configApiKey;
  return sealOptions(visible, apiKey, token);
}

/** Every setting as read, before the checks that span several of them. */
interface Settings extends
  Omit<
    Options,
    "command" | "model" | "apiKey" | "token" | "prices" | "ignoredKeys" | "transport"
  > {
  readonly transport: "auto" | "pooled" | "fetch";
  readonly model: string | undefined;
  /** The API key from the config; the environment variable beats it. */
  readonly configApiKey: string | undefined;
  readonly token: string | undefined;
  readonly priceInput: number | undefined;
  readonly priceOutput: number | undefined;
}

/** Reads every setting; `operands` are the positional inputs, `null` if the command takes none. */
function readSettings(read: SettingReader, operands: readonly string[] | null): Settings {
  const inputs = operands === null
    ? []
    : operands.length > 0
    ? [...operands]
    : read.paths("inputs") ?? [];
  return {
    inputs: Object.freeze(inputs),
    output: read.path("output") ?? null,
    rejects: read.path("rejects") ?? null,
    maxLineBytes: read.int("maxLineBytes", 1, 2 ** 30) ?? 16 * 1024 * 1024,
    baseURL: read.url("baseURL") ?? "https://api.openai.com/v1",
    model: read.text("model"),
    apiKeyEnv: read.envName("apiKeyEnv") ?? "OPENAI_API_KEY",
    configApiKey: read.secret("apiKey"),
    temperature: read.number("temperature", 0, 2) ?? 0.7,
    topP: read.number("topP", 0, 1),
    maxTokens: read.int("maxTokens", 1, 1_000_000) ?? 1024,
    extraBody: read.requestFields("extraBody") ?? null,
    timeoutMs: Math.round((read.number("timeout", 0.001, 86_400) ?? 120) * 1000),
    retries: read.int("retries", 0, 100) ?? 7,
    retryBaseMs: read.int("retryBaseMs", 0, 600_000) ?? 1000,
    transport: read.choice("transport", ["auto", "pooled", "fetch"]) ?? "auto",
    concurrency: read.int("concurrency", 1, 4096) ?? 32,
    historyTokens: read.int("historyTokens", 0, 1_000_000) ?? 3000,
    maxThoughtTokens: read.int("maxThoughtTokens", 1, 1_000_000) ?? 1024,
    cotPreface: read.text("cotPreface", { escapes: true, allowEmpty: true }) ?? "Thought Process:",
    cotSuffix: read.text("cotSuffix", { escapes: true, allowEmpty: true }) ?? "\nAnswer:",
    promptPath: read.path("promptPath") ?? null,
    cache: read.path("cache") ?? null,
    noCache: read.boolean("noCache") ?? false,
    dryRun: read.boolean("dryRun") ?? false,
    quiet: read.boolean("quiet") ?? false,
    limit: read.int("limit", 1, Number.MAX_SAFE_INTEGER) ?? subsetLimit(read),
    sample: read.int("sample", 1, Number.MAX_SAFE_INTEGER) ?? null,
    seed: read.int("seed", 0, Number.MAX_SAFE_INTEGER) ?? 0,
    debugLog: read.path("debugLog") ?? null,
    priceInput: read.number("priceInput", 0, 1_000_000),
    priceOutput: read.number("priceOutput", 0, 1_000_000),
    host: read.text("host") ?? "127.0.0.1",
    port: read.int("port", 0, 65_535) ?? 8787,
    token: read.secret("token"),
    insecureNoAuth: read.boolean("insecureNoAuth") ?? false,
    maxRequests: read.int("maxRequests", 1, 65_535) ?? 64,
    requestConcurrency: read.int("requestConcurrency", 1, 4096) ?? 16,
  };
}

/**
 * Returns a plain copy of `options` that is safe to print or log: `apiKey` and `token` are
 * `"***"` when set and `null` when not.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactOptions, resolveOptions } from "./config.ts";
 *
 * const options = resolveOptions({
 *   flags: { model: "m" },
 *   positionals: ["in.jsonl"],
 *   env: { OPENAI_API_KEY: "sk-secret" },
 * });
 * const copy = { ...options, quiet: true };
 * assert.equal(redactOptions(copy).apiKey, "***");
 * assert.equal(redactOptions(copy).token, null);
 * ```
 *
 * @param options Options, or a copy of them.
 * @returns A new object without secrets.
 */
export function redactOptions(options: Options): RedactedOptions {
  const { apiKey, token, ...visible } = options;
  return {
    ...visible,
    apiKey: apiKey === undefined ? null : "***",
    token: token === undefined ? null : "***",
  };
}

// Sealing: secrets stay enumerable so `{ ...options }` copies still work, while the hooks,
// being non-enumerable, keep JSON and console output of the object itself redacted.
function sealOptions(
  visible: Omit<Options, "apiKey" | "token">,
  apiKey: string | undefined,
  token: string | undefined,
): Options {
  const options: Options = { ...visible, apiKey, token };
  Object.defineProperties(options, {
    toJSON: { value: redactedJson },
    [Symbol.for("Deno.customInspect")]: { value: denoInspect },
    [Symbol.for("nodejs.util.inspect.custom")]: { value: nodeInspect },
  });
  return Object.freeze(options);
}

function redactedJson(this: Options): RedactedOptions {
  return redactOptions(this);
}

function denoInspect(
  this: Options,
  inspect: (value: unknown, options: unknown) => string,
  inspectOptions: unknown,
): string {
  return inspect(redactOptions(this), inspectOptions);
}

function nodeInspect(
  this: Options,
  _depth: number,
  inspectOptions: unknown,
  inspect: (value: unknown, options: unknown) => string,
): string {
  return inspect(redactOptions(this), inspectOptions);
}

const IPV4_LOOPBACK = /^127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
// Every group zero but a last 1, written with `::` or in all eight groups: ::1, 0:0:0:0:0:0:0:1.
const IPV6_LOOPBACK = /^(?:[0:]*::(?:0{1,4}:)*|(?:0{1,4}:){7})0{0,3}1$/;
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

/**
 * Whether `serve` listening on `host` is reachable from this machine only: `localhost`,
 * 127.0.0.0/8 or `::1` (brackets allowed). Such a server may run without a token.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isLoopbackHost } from "./config.ts";
 *
 * assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("localhost") && isLoopbackHost("[::1]"));
 * assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("::") && !isLoopbackHost("10.0.0.7"));
 * ```
 *
 * @param host A hostname or IP address, as given to `--host`.
 * @returns `true` for a loopback name or address.
 */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return name === "localhost" || IPV4_LOOPBACK.test(name) || IPV6_LOOPBACK.test(name);
}

/**
 * Whether `text` can be sent as `Authorization: Bearer <text>` (RFC 6750's b64token syntax).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isBearerToken } from "./config.ts";
 *
 * assert.ok(isBearerToken("3f9a0c-Zz_~+/=="));
 * assert.ok(!isBearerToken("two words") && !isBearerToken(""));
 * ```
 *
 * @param text A candidate token.
 * @returns `true` when every character is allowed.
 */
export function isBearerToken(text: string): boolean {
  return BEARER_TOKEN.test(text);
}

function commandOf(positionals: readonly string[]): Command {
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

function firstLine(text: string): string {
  const end = text.indexOf("\n");
  return (end === -1 ? text : text.slice(0, end)).replace(/:$/, "");
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}

// ---------------------------------------------------------------------------------------------
// Settings: where each one may come from.

type SettingName =
  | "inputs"
  | "output"
  | "rejects"
  | "maxLineBytes"
  | "baseURL"
  | "model"
  | "apiKeyEnv"
  | "apiKey"
  | "temperature"
  | "topP"
  | "maxTokens"
  | "extraBody"
  | "timeout"
  | "retries"
  | "retryBaseMs"
  | "transport"
  | "concurrency"
  | "historyTokens"
  | "maxThoughtTokens"
  | "cotPreface"
  | "cotSuffix"
  | "promptPath"
  | "cache"
  | "noCache"
  | "dryRun"
  | "quiet"
  | "limit"
  | "sample"
  | "seed"
  | "debugLog"
  | "priceInput"
  | "priceOutput"
  | "useSubset"
  | "subsetSize"
  | "host"
  | "port"
  | "token"
  | "insecureNoAuth"
  | "maxRequests"
  | "requestConcurrency";

const FLAG_OF: Partial<Record<SettingName, FlagName>> = {
  output: "output",
  rejects: "rejects",
  maxLineBytes: "max-line-bytes",
  baseURL: "base-url",
  model: "model",
  apiKeyEnv: "api-key-env",
  temperature: "temperature",
  topP: "top-p",
  maxTokens: "max-tokens",
  extraBody: "extra-body",
  timeout: "timeout",
  retries: "retries",
  concurrency: "concurrency",
  historyTokens: "history-tokens",
  maxThoughtTokens: "max-thought-tokens",
  cotPreface: "cot-preface",
  cotSuffix: "cot-suffix",
  promptPath: "prompt",
  cache: "cache",
  noCache: "no-cache",
  dryRun: "dry-run",
  quiet: "quiet",
  limit: "limit",
  sample: "sample",
  seed: "seed",
  debugLog: "debug-log",
  priceInput: "price-input",
  priceOutput: "price-output",
  host: "host",
  port: "port",
  token: "token",
  insecureNoAuth: "insecure-no-auth",
  maxRequests: "max-requests",
  requestConcurrency: "request-concurrency",
};

/**
 * The proxy variables `fetch` honours for `http:` URLs; `transport: auto` keeps requests on
 * `fetch` when one is set. One the process may not read counts as unset.
 */
export const PROXY_VARS: readonly string[] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

const ENV_OF: Partial<Record<SettingName, string>> = {
  baseURL: "OPENAI_BASE_URL",
  model: "COTFIT_MODEL",
  token: "COTFIT_TOKEN",
  retryBaseMs: "COTFIT_RETRY_BASE_MS",
  transport: "COTFIT_TRANSPORT",
};

// ---------------------------------------------------------------------------------------------
// The config file.

/** A key that is read but has no effect on cotfit; reported in `ignoredKeys`. */
const IGNORED = "ignored";
/** Augmentoolkit's `api.large_mode`: only `api` (OpenAI-compatible) fits. */
const API_MODE = "apiMode";
type KeyTarget = SettingName | typeof IGNORED | typeof API_MODE;

const AUGMENTOOLKIT_COST: Readonly<Record<string, KeyTarget>> = {
  cost_per_million_large_input: "priceInput",
  cost_per_million_large_output: "priceOutput",
  cost_per_million_small_input: IGNORED,
  cost_per_million_small_output: IGNORED,
};

const CONFIG_SECTIONS: Readonly<Record<string, Readonly<Record<string, KeyTarget>>>> = {
  input: { paths: "inputs", max_line_bytes: "maxLineBytes" },
  output: { dir: "output", rejects: "rejects", cot_preface: "cotPreface", cot_suffix: "cotSuffix" },
  llm: {
    base_url: "baseURL",
    model: "model",
    api_key_env: "apiKeyEnv",
    api_key: "apiKey",
    timeout: "timeout",
    retries: "retries",
    retry_base_ms: "retryBaseMs",
    transport: "transport",
    concurrency: "concurrency",
  },
  generation: {
    prompt: "promptPath",
    temperature: "temperature",
    top_p: "topP",
    max_tokens: "maxTokens",
    extra_body: "extraBody",
    max_thought_tokens: "maxThoughtTokens",
    history_tokens: "historyTokens",
  },
  run: {
    cache: "cache",
    no_cache: "noCache",
    dry_run: "dryRun",
    quiet: "quiet",
    limit: "limit",
    sample: "sample",
    seed: "seed",
    debug_log: "debugLog",
  },
  server: {
    host: "host",
    port: "port",
    token: "token",
    insecure_no_auth: "insecureNoAuth",
    max_requests: "maxRequests",
    request_concurrency: "requestConcurrency",
  },
  pricing: { input_per_million: "priceInput", output_per_million: "priceOutput" },

  // Augmentoolkit generic_data_rephrase. Only the large model writes thoughts there too.
  api: {
    large_api_key: "apiKey",
    large_base_url: "baseURL",
    large_model: "model",
    large_mode: API_MODE,
    small_api_key: IGNORED,
    small_base_url: IGNORED,
    small_model: IGNORED,
    small_mode: IGNORED,
  },
  path: {
    input_dir: "inputs",
    output_dir: "output",
    // Augmentoolkit prompt folders hold its own prompt format, not cotfit's.
    prompts: IGNORED,
    default_prompts: IGNORED,
  },
  system: {
    concurrency_limit: "concurrency",
    cot_preface: "cotPreface",
    cot_suffix: "cotSuffix",
    use_subset: "useSubset",
    subset_size: "subsetSize",
    completion_mode: IGNORED,
    use_stop: IGNORED,
    chunk_size: IGNORED,
  },
  cost_estimation: AUGMENTOOLKIT_COST,
  // Augmentoolkit's docs call the section `cost`; its shipped configs say `cost_estimation`.
  cost: AUGMENTOOLKIT_COST,
  meta_datagen: {
    do_meta_datagen: IGNORED,
    meta_datagen_keys: IGNORED,
    meta_datagen_extras: IGNORED,
  },
};

/** Top-level scalars: Augmentoolkit's `pipeline` names the pipeline, which cotfit is. */
const TOP_LEVEL_SCALARS = new Set(["pipeline"]);

const PLACEHOLDER = "!!PLACEHOLDER!!";

interface ConfigValue {
  readonly value: unknown;
  readonly key: string;
}

interface ConfigLayer {
  /** Start of every config error message. */
  readonly label: string;
  /** Directory that relative paths in the file resolve against. */
  readonly dir: string;
  readonly values: ReadonlyMap<SettingName, ConfigValue>;
  readonly ignoredKeys: readonly string[];
}

function readConfig(text: string | undefined, path: string | undefined): ConfigLayer {
  const label = path === undefined ? "Cannot use config" : `Cannot use config "${path}"`;
  const dir = path === undefined ? "." : dirname(path);
  const values = new Map<SettingName, ConfigValue>();
  const ignoredKeys: string[] = [];
  const root = text === undefined ? null : parseYaml(text, label);
  if (root === null) return { label, dir, values, ignoredKeys };
  if (!isMapping(root)) {
    throw new ConfigError(
      `${label}: the file must hold a mapping of sections, got ${describe(root)}`,
    );
  }
  for (const [section, body] of Object.entries(root)) {
    if (TOP_LEVEL_SCALARS.has(section)) continue;
    if (!Object.hasOwn(CONFIG_SECTIONS, section)) {
      const known = Object.keys(CONFIG_SECTIONS).join(", ");
      throw new ConfigError(`${label}: key ${section} is unknown (sections: ${known})`, section);
    }
    if (body === null) continue;
    if (!isMapping(body)) {
      throw new ConfigError(
        `${label}: key ${section} must be a mapping, got ${describe(body)}`,
        section,
      );
    }
    const keys = CONFIG_SECTIONS[section];
    for (const [name, value] of Object.entries(body)) {
      const key = `${section}.${name}`;
      if (!Object.hasOwn(keys, name)) {
        const known = Object.keys(keys).join(", ");
        throw new ConfigError(`${label}: key ${key} is unknown (${section} takes: ${known})`, key);
      }
      const target = keys[name];
      if (target === IGNORED) {
        ignoredKeys.push(key);
      } else if (target === API_MODE) {
        if (value !== null && value !== "api") {
          const reason = `must be "api" (cotfit speaks the OpenAI API), got ${describe(value)}`;
          throw new ConfigError(`${label}: key ${key} ${reason}`, key);
        }
      } else if (value !== null) {
        const earlier = values.get(target);
        if (earlier !== undefined) {
          throw new ConfigError(
            `${label}: keys ${earlier.key} and ${key} set the same option; keep one`,
            key,
          );
        }
        values.set(target, { value, key });
      }
    }
  }
  return { label, dir, values, ignoredKeys: Object.freeze(ignoredKeys) };
}

function parseYaml(text: string, label: string): unknown {
  const document = parseDocument(text);
  // Augmentoolkit ships `large_api_key: !!PLACEHOLDER!!`, an unknown tag: read it as unset.
  const problem = document.errors.find((error) =>
    !(error.code === "TAG_RESOLVE_FAILED" &&
      text.slice(error.pos[0], error.pos[1]).includes(PLACEHOLDER))
  );
  // Only the first line: the rest quotes the source, which may hold the API key.
  if (problem !== undefined) throw new ConfigError(`${label}: ${firstLine(problem.message)}`);
  return document.toJS();
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  }
  return String(value);
}

function subsetLimit(read: SettingReader): number | null {
  if (read.boolean("useSubset") !== true) return null;
  const size = read.int("subsetSize", 1, Number.MAX_SAFE_INTEGER);
  if (size === undefined) {
    throw new ConfigError(
      `${read.configLabel}: system.use_subset is true but system.subset_size is missing`,
      "system.subset_size",
    );
  }
  return size;
}

// ---------------------------------------------------------------------------------------------
// Reading one setting: flag, else environment, else config; each checked where it came from.

interface Found {
  readonly value: unknown;
  readonly source: "flag" | "env" | "config";
  /** `--flag`, `ENV_VAR` or `section.key`. */
  readonly name: string;
}

const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ESCAPE = /\\([nt\\])/g;
const ESCAPED: Readonly<Record<string, string>> = { n: "\n", t: "\t", "\\": "\\" };

interface TextOptions {
  /** From a flag, read `\n`, `\t` and `\\` as newline, tab and backslash. */
  readonly escapes?: boolean;
  /** Accept the empty string. */
  readonly allowEmpty?: boolean;
}

/** Request fields `--extra-body` may not set, and why. */
const OWN_REQUEST_FIELDS: Readonly<Record<string, string>> = {
  model: "use --model",
  messages: "cotfit writes them from the prompt",
  temperature: "use --temperature",
  top_p: "use --top-p",
  max_tokens: "use --max-tokens",
  max_completion_tokens: "use --max-tokens (sent as this when the endpoint asks for it)",
  stream: "cotfit reads whole replies",
  n: "cotfit reads one choice a call; more would be paid for and dropped",
};

class SettingReader {
  readonly #flags: CliFlags;
  readonly #env: Readonly<Record<string, string>>;
  readonly #config: ConfigLayer;
  readonly #placeholders: "reject" | "unset";

  /**
   * @param placeholders What an Augmentoolkit `!!PLACEHOLDER!!` in a config value means:
   *   an error once the value is used, or nothing while only types are being checked.
   */
  constructor(
    flags: CliFlags,
    env: Readonly<Record<string, string>>,
    config: ConfigLayer,
    { placeholders }: { placeholders: "reject" | "unset" },
  ) {
    this.#flags = flags;
    this.#env = env;
    this.#config = config;
    this.#placeholders = placeholders;
  }

  get configLabel(): string {
    return this.#config.label;
  }

  /** Text; from a flag, `\n`, `\t` and `\\` are unescaped when `escapes` is set. */
  text(name: SettingName, options: TextOptions = {}): string | undefined {
    const found = this.#find(name);
    return found === undefined ? undefined : this.#text(found, options);
  }

  /** One of `choices`. */
  choice<T extends string>(name: SettingName, choices: readonly T[]): T | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const value = this.#text(found, {});
    if (!(choices as readonly string[]).includes(value)) {
      this.#fail(found, `must be one of ${choices.join(", ")}, got "${value}"`);
    }
    return value as T;
  }

  /** A path; one from the config resolves against the config file's directory. */
  path(name: SettingName): string | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const text = this.#text(found);
    return found.source === "config" ? this.#resolve(text) : text;
  }

  /** One path or a list of them; config only (the command line has positionals). */
  paths(name: SettingName): string[] | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const items = Array.isArray(found.value) ? found.value : [found.value];
    return items.map((item) => {
      if (typeof item !== "string" || item === "") {
        this.#fail(found, "must be a path or a list of paths");
      }
      this.#rejectPlaceholder(found, item);
      return this.#resolve(item);
    });
  }

  url(name: SettingName): string | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const url = URL.parse(this.#text(found));
    if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) {
      this.#fail(found, "must be an http:// or https:// URL");
    }
    return found.value as string;
  }

  envName(name: SettingName): string | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const text = this.#text(found);
    if (!ENV_NAME.test(text)) this.#fail(found, "must be an environment variable name");
    return text;
  }

  int(name: SettingName, min: number, max: number): number | undefined {
    return this.#numeric(name, true, min, max);
  }

  number(name: SettingName, min: number, max: number): number | undefined {
    return this.#numeric(name, false, min, max);
  }

  boolean(name: SettingName): boolean | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    if (typeof found.value !== "boolean") this.#fail(found, "must be true or false");
    return found.value;
  }

  /**
   * Extra request fields: a JSON object from a flag, a mapping (or JSON text) from a config. The
   * fields cotfit sets itself, or that would break how it reads replies, are refused.
   */
  requestFields(name: SettingName): Readonly<Record<string, unknown>> | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    let value = found.value;
    if (typeof value === "string") {
      try {
        value = JSON.parse(value);
      } catch (error) {
        this.#fail(found, `must be a JSON object (${(error as Error).message})`);
      }
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.#fail(found, "must be a JSON object of request fields");
    }
    for (const key of Object.keys(value)) {
      const instead = OWN_REQUEST_FIELDS[key];
      if (instead !== undefined) {
        throw new ConfigError(
          `${this.#subject(found)} must not set "${key}": ${instead}`,
          found.name,
        );
      }
    }
    return Object.freeze({ ...value });
  }

  /** A secret: never shown in errors; an Augmentoolkit placeholder counts as unset. */
  secret(name: SettingName): string | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    if (typeof found.value !== "string" || found.value === "") {
      throw new ConfigError(`${this.#subject(found)} must be a non-empty string`, found.name);
    }
    return found.value.includes(PLACEHOLDER) ? undefined : found.value;
  }

  #find(name: SettingName): Found | undefined {
    const flag = FLAG_OF[name];
    const flagValue = flag === undefined ? undefined : this.#flags[flag];
    if (flagValue !== undefined) return { value: flagValue, source: "flag", name: `--${flag}` };
    const env = ENV_OF[name];
    const envValue = env === undefined ? undefined : nonEmpty(this.#env[env]);
    if (envValue !== undefined) return { value: envValue, source: "env", name: env! };
    const entry = this.#config.values.get(name);
    if (entry === undefined) return undefined;
    // While only checking types, a placeholder is as good as unset.
    const unset = this.#placeholders === "unset" && typeof entry.value === "string" &&
      entry.value.includes(PLACEHOLDER);
    return unset ? undefined : { value: entry.value, source: "config", name: entry.key };
  }

  #numeric(name: SettingName, whole: boolean, min: number, max: number): number | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const { value } = found;
    const number = typeof value === "number"
      ? value
      : typeof value === "string" && found.source !== "config" && DECIMAL.test(value)
      ? Number(value)
      : NaN;
    if (
      !Number.isFinite(number) || (whole && !Number.isInteger(number)) || number < min ||
      number > max
    ) {
      const kind = whole ? "a whole number" : "a number";
      const range = max === Number.MAX_SAFE_INTEGER
        ? `of at least ${min}`
        : `from ${min} to ${max}`;
      this.#fail(found, `must be ${kind} ${range}`);
    }
    return number;
  }

  #text(found: Found, options: TextOptions = {}): string {
    if (typeof found.value !== "string") this.#fail(found, "must be text");
    const text = found.value;
    this.#rejectPlaceholder(found, text);
    if (text === "" && !options.allowEmpty) this.#fail(found, "must not be empty");
    return options.escapes && found.source === "flag"
      ? text.replace(ESCAPE, (_, char: string) => ESCAPED[char])
      : text;
  }

  #rejectPlaceholder(found: Found, text: string): void {
    if (
      this.#placeholders === "reject" && found.source === "config" && text.includes(PLACEHOLDER)
    ) {
      const advice = "put the real value there or give it on the command line";
      throw new ConfigError(
        `${this.#subject(found)} still holds ${PLACEHOLDER}: ${advice}`,
        found.name,
      );
    }
  }

  #resolve(path: string): string {
    return path === "-" || isAbsolute(path) ? path : join(this.#config.dir, path);
  }

  #subject(found: Found): string {
    if (found.source === "flag") return found.name;
    if (found.source === "env") return `environment variable ${found.name}`;
    return `${this.#config.label}: key ${found.name}`;
  }

  #fail(found: Found, reason: string): never {
    throw new ConfigError(
      `${this.#subject(found)} ${reason}, got ${describe(found.value)}`,
      found.name,
    );
  }
}
