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

import { type CliFlags, type Command, commandOf } from "./cli_args.ts";
import { readConfig } from "./config_file.ts";
import { ConfigError } from "./config_error.ts";
import { poolSuits } from "./http1.ts";
import { sealOptions } from "./redact.ts";
import { isBearerToken, isLoopbackHost } from "./server_access.ts";
import { nonEmpty, SettingReader } from "./setting_reader.ts";

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
 * Builds the {@linkcode Options} of a run from flags, environment and config text, each
 * checked. Pure: reads no file and no environment of its own.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCliArgs } from "./cli_args.ts";
 * import { resolveOptions } from "./config.ts";
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
  const reader = new SettingReader(input.flags, input.env, config, { placeholders: "reject" });
  const settings = readSettings(reader, command === "run" ? operands : null);
  const { model, configApiKey, token, priceInput, priceOutput, transport, ...rest } = settings;
  if (rest.sample !== null && rest.limit !== null && rest.sample > rest.limit) {
    // The limit comes first: the sample would be short by the difference, without a word.
    throw new ConfigError(
      `--sample ${rest.sample} is more than --limit ${rest.limit}: a sample is taken from the ` +
        "first --limit records, so ask for at most that many",
      "--sample",
    );
  }
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
    const [given, missing] = priceInput === undefined
      ? ["priceOutput", "--price-input"] as const
      : ["priceInput", "--price-output"] as const;
    throw new ConfigError(
      `${reader.origin(given)} gives one price without the other: give both prices ` +
        "(--price-input and --price-output) or neither",
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

function subsetLimit(read: SettingReader): number | null {
  // Read, so checked, even while unused: a wrong value is wrong.
  const size = read.int("subsetSize", 1, Number.MAX_SAFE_INTEGER);
  if (read.boolean("useSubset") !== true) return null;
  if (size === undefined) {
    throw new ConfigError(
      `${read.configLabel}: system.use_subset is true but system.subset_size is missing`,
      "system.subset_size",
    );
  }
  return size;
}

/**
 * The proxy variables `fetch` honours for `http:` URLs; `transport: auto` keeps requests on
 * `fetch` when one is set. One the process may not read counts as unset.
 */
export const PROXY_VARS: readonly string[] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
