/**
 * Where each setting may come from (a flag, an environment variable, a config key) and the
 * reader that takes it from the first that has it, checked: flags > environment > config.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import type { CliFlags, FlagName } from "./cli_args.ts";
import { type ConfigLayer, describeValue, PLACEHOLDER } from "./config_file.ts";
import { ConfigError } from "./config_error.ts";

/** Every setting, by the name {@linkcode SettingReader} reads it under. */
export type SettingName =
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

const ENV_OF: Partial<Record<SettingName, string>> = {
  baseURL: "OPENAI_BASE_URL",
  model: "COTFIT_MODEL",
  token: "COTFIT_TOKEN",
  retryBaseMs: "COTFIT_RETRY_BASE_MS",
  transport: "COTFIT_TRANSPORT",
};

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

/**
 * Reads one setting at a time: from its flag, else its environment variable, else the config
 * file, and checks it there, so an error names where the bad value came from.
 *
 * @example Flag, then environment, then config
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig } from "./config_file.ts";
 * import { SettingReader } from "./setting_reader.ts";
 *
 * const config = readConfig("llm:\n  model: from-config\n  concurrency: 8\n", "c.yaml");
 * const read = new SettingReader(
 *   { concurrency: "64" },
 *   { COTFIT_MODEL: "from-env" },
 *   config,
 *   { placeholders: "reject" },
 * );
 * assert.equal(read.int("concurrency", 1, 4096), 64);
 * assert.equal(read.text("model"), "from-env");
 * const typo = new SettingReader({ concurrency: "lots" }, {}, config, { placeholders: "reject" });
 * assert.throws(() => typo.int("concurrency", 1, 4096), /--concurrency must be a whole number/);
 * ```
 */
export class SettingReader {
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

  /** Where a setting that is set comes from, as errors name it: a flag, a variable, a config key. */
  origin(name: SettingName): string | undefined {
    const found = this.#find(name);
    return found === undefined ? undefined : this.#subject(found);
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
      this.#fail(found, `must be one of ${choices.join(", ")}`);
    }
    return value as T;
  }

  /** A path; one from the config resolves against the config file's directory. */
  path(name: SettingName): string | undefined {
    const found = this.#find(name);
    if (found === undefined) return undefined;
    const text = this.#text(found);
    this.#rejectTilde(found, text);
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
      this.#rejectTilde(found, item);
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

  /**
   * A leading `~` a shell did not expand (a config value, `--cache=~/c`, a quoted path) would
   * name a folder "~" in the working directory.
   */
  #rejectTilde(found: Found, path: string): void {
    if (path === "~" || path.startsWith("~/") || path.startsWith("~\\")) {
      this.#fail(found, "starts with ~, which only a shell expands: write the full path");
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
      `${this.#subject(found)} ${reason}, got ${describeValue(found.value)}`,
      found.name,
    );
  }
}

/**
 * `text`, or `undefined` when it is missing or empty: an empty variable counts as unset.
 *
 * @param text A variable's value.
 * @returns The value, if any.
 */
export function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}
