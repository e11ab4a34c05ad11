/**
 * The config file: cotfit's own YAML schema (see `config.example.yaml`) or an Augmentoolkit
 * `generic_data_rephrase` `config.yaml` as is, read into the settings its keys set.
 *
 * @module
 */

import { dirname } from "node:path";
import { parseDocument } from "yaml";
import { ConfigError, firstLine } from "./config_error.ts";
import type { SettingName } from "./setting_reader.ts";

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

/** What Augmentoolkit ships in place of a value the user must fill in. */
export const PLACEHOLDER = "!!PLACEHOLDER!!";

interface ConfigValue {
  readonly value: unknown;
  readonly key: string;
}

/** A config file, read and checked against the known sections and keys. */
export interface ConfigLayer {
  /** Start of every config error message. */
  readonly label: string;
  /** Directory that relative paths in the file resolve against. */
  readonly dir: string;
  readonly values: ReadonlyMap<SettingName, ConfigValue>;
  readonly ignoredKeys: readonly string[];
}

/**
 * Reads a config file's text: cotfit's own sections, or Augmentoolkit's `generic_data_rephrase`
 * config as is. Each key is mapped to the setting it sets; values are checked later, where
 * they are read (`SettingReader`), so errors can say where a value came from.
 *
 * @param text The file's text; `undefined` when there is no config file.
 * @param path The file's path, named in errors; relative paths in it start from its folder.
 * @returns The values by setting, and the keys that were accepted but do not apply.
 * @throws {ConfigError} On a YAML error, an unknown section or key, or two keys for one setting.
 *
 * @example An Augmentoolkit config
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig } from "./config_file.ts";
 *
 * const text = "api:\n  large_model: m\n  small_model: s\npath:\n  input_dir: ./in\n";
 * const config = readConfig(text, "conf/config.yaml");
 * assert.equal(config.dir, "conf");
 * assert.deepEqual(config.values.get("model"), { value: "m", key: "api.large_model" });
 * assert.deepEqual(config.ignoredKeys, ["api.small_model"]);
 * assert.throws(() => readConfig("llm:\n  modle: m\n", "c.yaml"), /key llm.modle is unknown/);
 * ```
 */
export function readConfig(text: string | undefined, path: string | undefined): ConfigLayer {
  const label = path === undefined ? "Cannot use config" : `Cannot use config "${path}"`;
  const dir = path === undefined ? "." : dirname(path);
  const values = new Map<SettingName, ConfigValue>();
  const ignoredKeys: string[] = [];
  const root = text === undefined ? null : parseYaml(text, label);
  if (root === null) return { label, dir, values, ignoredKeys };
  if (!isMapping(root)) {
    throw new ConfigError(
      `${label}: the file must hold a mapping of sections, got ${describeValue(root)}`,
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
        `${label}: key ${section} must be a mapping, got ${describeValue(body)}`,
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
          const reason = `must be "api" (cotfit speaks the OpenAI API), got ${
            describeValue(value)
          }`;
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

/**
 * A value as an error message shows it: `nothing`, `a list`, `a mapping`, or the value itself
 * (strings quoted, cut after 60 characters).
 *
 * @param value A value read from a flag, variable or config.
 * @returns A short description.
 */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  }
  return String(value);
}
