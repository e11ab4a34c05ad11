import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { parseCliArgs } from "../src/cli_args.ts";
import { HELP_TEXT } from "../src/cli_help.ts";
import { type Options, type ResolveInput, resolveOptions } from "../src/config.ts";
import { ConfigError } from "../src/config_error.ts";
import { redactOptions } from "../src/redact.ts";

function resolve(args: string[], input: Partial<ResolveInput> = {}): Options {
  const { flags, positionals } = parseCliArgs(args);
  return resolveOptions({ flags, positionals, env: {}, ...input });
}

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  assert.fail("expected a ConfigError");
}

const API_KEY = "sk-live-0123456789abcdef";
const TOKEN = "tok-0123456789abcdef";

// As a user fills in Augmentoolkit's generic_data_rephrase/config.yaml.
const AUGMENTOOLKIT_CONFIG = `pipeline: generic-data-rephrase

api:
  large_api_key: ${API_KEY}
  small_api_key: ${API_KEY}
  large_base_url: https://api.deepinfra.com/v1/openai
  small_base_url: https://api.deepinfra.com/v1/openai
  large_model: deepseek-ai/DeepSeek-V3
  small_model: deepseek-ai/DeepSeek-V3
  large_mode: api
  small_mode: api
path:
  default_prompts: ./prompts
  input_dir: ./inputs/openhermes
  output_dir: ./outputs/openhermes_cot
  prompts: ./prompts
system:
  completion_mode: False
  concurrency_limit: 50
  use_stop: True
  subset_size: 100
  use_subset: True # on while testing, to save money
  cot_preface: "Reasoning:"
  cot_suffix: "\\nFinal answer:"
cost_estimation:
  cost_per_million_small_input: 0.12
  cost_per_million_small_output: 0.30
  cost_per_million_large_input: 0.30
  cost_per_million_large_output: 0.88
`;

Deno.test("parseCliArgs() finds the command, the flags and stdin", () => {
  const run = parseCliArgs(["-", "-o", "out", "-q", "--model", "m", "--no-cache"]);
  assert.equal(run.command, "run");
  assert.deepEqual(run.positionals, ["-"]);
  assert.deepEqual(run.flags, { output: "out", quiet: true, model: "m", "no-cache": true });
  assert.equal(run.help, false);
  assert.equal(run.configPath, undefined);

  assert.equal(parseCliArgs(["serve", "--port", "0"]).command, "serve");
  assert.equal(parseCliArgs(["demo"]).command, "demo");
  assert.equal(parseCliArgs(["./serve"]).command, "run");
});

Deno.test("parseCliArgs() reads --help, --version and --config", () => {
  assert.equal(parseCliArgs(["-h"]).help, true);
  assert.equal(parseCliArgs(["serve", "--help"]).help, true);
  assert.equal(parseCliArgs(["--version"]).version, true);
  const parsed = parseCliArgs(["-c", "conf.yaml", "in.jsonl"]);
  assert.equal(parsed.configPath, "conf.yaml");
  assert.deepEqual(parsed.flags, {});
  assert.equal(parseCliArgs(["--config=other.yaml"]).configPath, "other.yaml");
});

Deno.test("parseCliArgs() names the flag of a bad command line", () => {
  const cases: [string[], string, string][] = [
    [["--colour"], "--colour", "unknown option --colour, see --help"],
    [["-x"], "-x", "unknown option -x, see --help"],
    [["in.jsonl", "--output"], "--output", "--output needs a value"],
    [["--quiet=yes"], "--quiet", "--quiet takes no value"],
    [
      ["--model", "--quiet"],
      "--model",
      "--model needs a value; write --model=VALUE when it starts with -",
    ],
  ];
  for (const [args, path, message] of cases) {
    const error = configError(() => parseCliArgs(args));
    assert.equal(error.path, path);
    assert.equal(error.message, message);
  }
});

Deno.test("resolveOptions() applies every default", () => {
  const options = resolve(["in.jsonl", "--model", "m"]);
  assert.deepEqual({ ...options }, {
    command: "run",
    inputs: ["in.jsonl"],
    output: null,
    rejects: null,
    maxLineBytes: 16 * 1024 * 1024,
    baseURL: "https://api.openai.com/v1",
    model: "m",
    apiKeyEnv: "OPENAI_API_KEY",
    apiKey: undefined,
    temperature: 0.7,
    topP: undefined,
    maxTokens: 1024,
    extraBody: null,
    timeoutMs: 120_000,
    retries: 7,
    retryBaseMs: 1000,
    transport: "fetch",
    concurrency: 32,
    historyTokens: 3000,
    maxThoughtTokens: 1024,
    cotPreface: "Thought Process:",
    cotSuffix: "\nAnswer:",
    promptPath: null,
    cache: null,
    noCache: false,
    dryRun: false,
    quiet: false,
    limit: null,
    sample: null,
    seed: 0,
    debugLog: null,
    prices: null,
    host: "127.0.0.1",
    port: 8787,
    token: undefined,
    insecureNoAuth: false,
    maxRequests: 64,
    requestConcurrency: 16,
    ignoredKeys: [],
  });
  assert.ok(Object.isFrozen(options));
});

Deno.test("resolveOptions() reads every flag", () => {
  const options = resolve([
    "a.jsonl",
    "dir/",
    "-o",
    "out",
    "--rejects=rej.jsonl",
    "--max-line-bytes=1024",
    "--base-url=http://127.0.0.1:8000/v1",
    "--model=qwen",
    "--api-key-env=MY_KEY",
    "--temperature=0.2",
    "--top-p=0.9",
    "--max-tokens=2048",
    '--extra-body={"reasoning_effort": "low", "chat_template_kwargs": {"enable_thinking": false}}',
    "--timeout=2.5",
    "--retries=0",
    "--concurrency=4096",
    "--history-tokens=0",
    "--max-thought-tokens=300",
    "--cot-preface=<think>",
    "--cot-suffix=</think>",
    "--prompt=p.yaml",
    "--cache=c.sqlite",
    "--no-cache",
    "--dry-run",
    "-q",
    "--limit=10",
    "--sample=5",
    "--seed=42",
    "--debug-log=debug.jsonl",
    "--price-input=0.15",
    "--price-output=0.6",
    "--host=0.0.0.0",
    "--port=0",
    `--token=${TOKEN}`,
    "--insecure-no-auth",
    "--max-requests=2",
    "--request-concurrency=3",
  ], { env: { MY_KEY: API_KEY } });
  assert.deepEqual({ ...options }, {
    command: "run",
    inputs: ["a.jsonl", "dir/"],
    output: "out",
    rejects: "rej.jsonl",
    maxLineBytes: 1024,
    baseURL: "http://127.0.0.1:8000/v1",
    model: "qwen",
    apiKeyEnv: "MY_KEY",
    apiKey: API_KEY,
    temperature: 0.2,
    topP: 0.9,
    maxTokens: 2048,
    extraBody: { reasoning_effort: "low", chat_template_kwargs: { enable_thinking: false } },
    timeoutMs: 2500,
    retries: 0,
    retryBaseMs: 1000,
    transport: "pooled",
    concurrency: 4096,
    historyTokens: 0,
    maxThoughtTokens: 300,
    cotPreface: "<think>",
    cotSuffix: "</think>",
    promptPath: "p.yaml",
    cache: "c.sqlite",
    noCache: true,
    dryRun: true,
    quiet: true,
    limit: 10,
    sample: 5,
    seed: 42,
    debugLog: "debug.jsonl",
    prices: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
    host: "0.0.0.0",
    port: 0,
    token: TOKEN,
    insecureNoAuth: true,
    maxRequests: 2,
    requestConcurrency: 3,
    ignoredKeys: [],
  });
});

Deno.test("resolveOptions() reads every key of cotfit's own config schema", () => {
  const configText = `
input: { paths: [a.jsonl, b], max_line_bytes: 2048 }
output: { dir: out, rejects: rej.jsonl, cot_preface: "P:", cot_suffix: "S:" }
llm:
  base_url: http://127.0.0.1:8000/v1
  model: qwen
  api_key_env: MY_KEY
  api_key: ${API_KEY}
  timeout: 30
  retries: 1
  retry_base_ms: 50
  transport: fetch
  concurrency: 8
generation:
  { prompt: p.yaml, temperature: 0, top_p: 1, max_tokens: 99, max_thought_tokens: 98,
    history_tokens: 97, extra_body: { top_k: 20 } }
run:
  { cache: c.sqlite, no_cache: true, dry_run: true, quiet: true, limit: 3, sample: 2, seed: 7,
    debug_log: d.jsonl }
pricing: { input_per_million: 1.5, output_per_million: 2 }
server:
  { host: ::1, port: 9000, token: ${TOKEN}, insecure_no_auth: true, max_requests: 5,
    request_concurrency: 6 }
`;
  const options = resolve([], { configText, configPath: "cotfit.yaml" });
  assert.deepEqual({ ...options }, {
    command: "run",
    inputs: ["a.jsonl", "b"],
    output: "out",
    rejects: "rej.jsonl",
    maxLineBytes: 2048,
    baseURL: "http://127.0.0.1:8000/v1",
    model: "qwen",
    apiKeyEnv: "MY_KEY",
    apiKey: API_KEY,
    temperature: 0,
    topP: 1,
    maxTokens: 99,
    extraBody: { top_k: 20 },
    timeoutMs: 30_000,
    retries: 1,
    retryBaseMs: 50,
    transport: "fetch",
    concurrency: 8,
    historyTokens: 97,
    maxThoughtTokens: 98,
    cotPreface: "P:",
    cotSuffix: "S:",
    promptPath: "p.yaml",
    cache: "c.sqlite",
    noCache: true,
    dryRun: true,
    quiet: true,
    limit: 3,
    sample: 2,
    seed: 7,
    debugLog: "d.jsonl",
    prices: { inputPerMillion: 1.5, outputPerMillion: 2 },
    host: "::1",
    port: 9000,
    token: TOKEN,
    insecureNoAuth: true,
    maxRequests: 5,
    requestConcurrency: 6,
    ignoredKeys: [],
  });
});

Deno.test("resolveOptions() prefers flags over env over the config file over defaults", () => {
  const configText = [
    "llm: { model: file-model, base_url: 'http://file/v1', api_key: file-key, concurrency: 7 }",
    "server: { token: file-token }",
  ].join("\n");
  const env = {
    COTFIT_MODEL: "env-model",
    OPENAI_BASE_URL: "http://env/v1",
    OPENAI_API_KEY: "env-key",
    COTFIT_TOKEN: "env-token",
  };
  const flags = ["--model", "flag-model", "--base-url", "http://flag/v1", "--token", "flag-token"];

  const all = resolve(["in.jsonl", ...flags], { configText, env });
  assert.equal(all.model, "flag-model");
  assert.equal(all.baseURL, "http://flag/v1");
  assert.equal(all.token, "flag-token");
  assert.equal(all.apiKey, "env-key");
  assert.equal(all.concurrency, 7);
  assert.equal(all.retries, 7);

  const envAndFile = resolve(["in.jsonl"], { configText, env });
  assert.equal(envAndFile.model, "env-model");
  assert.equal(envAndFile.baseURL, "http://env/v1");
  assert.equal(envAndFile.token, "env-token");

  const fileOnly = resolve(["in.jsonl"], { configText, env: { COTFIT_MODEL: "" } });
  assert.equal(fileOnly.model, "file-model");
  assert.equal(fileOnly.baseURL, "http://file/v1");
  assert.equal(fileOnly.apiKey, "file-key");
  assert.equal(fileOnly.token, "file-token");

  assert.equal(resolve(["in.jsonl", "--concurrency", "3"], { configText }).concurrency, 3);
});

Deno.test("resolveOptions() maps an Augmentoolkit generic_data_rephrase config", () => {
  const configPath = join("augmentoolkit", "generation", "generic_data_rephrase", "config.yaml");
  const options = resolve([], { configText: AUGMENTOOLKIT_CONFIG, configPath });
  const dir = join("augmentoolkit", "generation", "generic_data_rephrase");
  assert.equal(options.command, "run");
  assert.deepEqual(options.inputs, [join(dir, "inputs", "openhermes")]);
  assert.equal(options.output, join(dir, "outputs", "openhermes_cot"));
  assert.equal(options.apiKey, API_KEY);
  assert.equal(options.baseURL, "https://api.deepinfra.com/v1/openai");
  assert.equal(options.model, "deepseek-ai/DeepSeek-V3");
  assert.equal(options.concurrency, 50);
  assert.equal(options.cotPreface, "Reasoning:");
  assert.equal(options.cotSuffix, "\nFinal answer:");
  assert.equal(options.limit, 100);
  assert.deepEqual(options.prices, { inputPerMillion: 0.3, outputPerMillion: 0.88 });
  assert.deepEqual(options.ignoredKeys, [
    "api.small_api_key",
    "api.small_base_url",
    "api.small_model",
    "api.small_mode",
    "path.default_prompts",
    "path.prompts",
    "system.completion_mode",
    "system.use_stop",
    "cost_estimation.cost_per_million_small_input",
    "cost_estimation.cost_per_million_small_output",
  ]);

  // The environment's key and the command line still win.
  const overridden = resolve(["mine.jsonl", "--concurrency", "2"], {
    configText: AUGMENTOOLKIT_CONFIG,
    env: { OPENAI_API_KEY: "sk-env" },
  });
  assert.equal(overridden.apiKey, "sk-env");
  assert.deepEqual(overridden.inputs, ["mine.jsonl"]);
  assert.equal(overridden.concurrency, 2);
});

Deno.test("resolveOptions() reads Augmentoolkit's use_subset off, and the cost section", () => {
  const off = AUGMENTOOLKIT_CONFIG.replace("use_subset: True", "use_subset: False")
    .replace("cost_estimation:", "cost:");
  const options = resolve([], { configText: off });
  assert.equal(options.limit, null);
  assert.deepEqual(options.prices, { inputPerMillion: 0.3, outputPerMillion: 0.88 });

  const noSize = "system:\n  use_subset: true\napi:\n  large_model: m\n";
  assert.equal(
    configError(() => resolve(["in.jsonl"], { configText: noSize })).path,
    "system.subset_size",
  );
});

Deno.test("resolveOptions() reads Augmentoolkit's !!PLACEHOLDER!! as unset, or as an error if used", () => {
  const stock = AUGMENTOOLKIT_CONFIG
    .replaceAll(API_KEY, "!!PLACEHOLDER!!")
    .replace("./inputs/openhermes", "./inputs/!!PLACEHOLDER!!");

  const withInput = resolve(["data.jsonl"], {
    configText: stock,
    env: { OPENAI_API_KEY: "sk-env" },
  });
  assert.equal(withInput.apiKey, "sk-env");
  assert.equal(resolve(["data.jsonl"], { configText: stock }).apiKey, undefined);

  // A flag that replaces a placeholder value makes it harmless.
  const url = "api:\n  large_base_url: https://!!PLACEHOLDER!!/v1\n  large_model: m\n";
  assert.equal(
    resolve(["x", "--base-url", "http://h/v1"], { configText: url }).baseURL,
    "http://h/v1",
  );
  assert.equal(configError(() => resolve(["x"], { configText: url })).path, "api.large_base_url");

  const error = configError(() => resolve([], { configText: stock, configPath: "config.yaml" }));
  assert.equal(error.path, "path.input_dir");
  assert.equal(
    error.message,
    'Cannot use config "config.yaml": key path.input_dir still holds !!PLACEHOLDER!!: ' +
      "put the real value there or give it on the command line",
  );
});

Deno.test("resolveOptions() refuses a config path that starts with ~, which only a shell expands", () => {
  for (
    const [text, key] of [
      ["output:\n  dir: ~/cotfit-out\nllm:\n  model: m\n", "output.dir"],
      ["input:\n  paths: [a.jsonl, ~/b.jsonl]\nllm:\n  model: m\n", "input.paths"],
    ]
  ) {
    const error = configError(() => resolve([], { configText: text, configPath: "c.yaml" }));
    assert.equal(error.path, key);
    assert.match(error.message, /starts with ~, which only a shell expands: write the full path/);
  }
  // Nor on the command line, where bash leaves `--cache=~/c` as it is.
  for (const flag of ["--cache=~/c.sqlite", "--debug-log=~/d.jsonl", "--output=~/out"]) {
    const error = configError(() => resolve(["in.jsonl", "--model", "m", flag]));
    assert.match(error.message, /starts with ~, which only a shell expands/, flag);
  }
  // A name like "~x" is left alone.
  const options = resolve(["in.jsonl"], {
    configText: "output:\n  dir: ~x\nllm:\n  model: m\n",
    configPath: "/cfg/c.yaml",
  });
  assert.equal(options.output, "/cfg/~x");
});

Deno.test("resolveOptions() names the dotted path of an unknown config key", () => {
  const nested = configError(() =>
    resolve(["in.jsonl"], {
      configText: "llm:\n  model: m\nsystem:\n  foo: 1\n",
      configPath: "c.yaml",
    })
  );
  assert.equal(nested.path, "system.foo");
  assert.match(
    nested.message,
    /^Cannot use config "c\.yaml": key system\.foo is unknown \(system takes: /,
  );

  const section = configError(() => resolve(["in.jsonl"], { configText: "lmm:\n  model: m\n" }));
  assert.equal(section.path, "lmm");
  assert.match(
    section.message,
    /^Cannot use config: key lmm is unknown \(sections: input, output, llm, /,
  );

  assert.equal(
    configError(() => resolve(["x"], { configText: "__proto__:\n  a: 1\n" })).path,
    "__proto__",
  );
  assert.equal(
    configError(() => resolve(["x"], { configText: "llm:\n  toString: 1\n" })).path,
    "llm.toString",
  );
});

Deno.test("resolveOptions() names the dotted path of a config value of the wrong type", () => {
  const cases: [string, string, string][] = [
    [
      "system:\n  concurrency_limit: '5'",
      "system.concurrency_limit",
      'must be a whole number from 1 to 4096, got "5"',
    ],
    ["llm:\n  concurrency: 0", "llm.concurrency", "must be a whole number from 1 to 4096, got 0"],
    [
      "generation:\n  temperature: hot",
      "generation.temperature",
      'must be a number from 0 to 2, got "hot"',
    ],
    ["run:\n  quiet: 1", "run.quiet", "must be true or false, got 1"],
    ["run:\n  limit: 2.5", "run.limit", "must be a whole number of at least 1, got 2.5"],
    ["output:\n  cot_preface: [a]", "output.cot_preface", "must be text, got a list"],
    ["input:\n  paths: [a, 3]", "input.paths", "must be a path or a list of paths, got a list"],
    [
      "llm:\n  base_url: localhost:8000",
      "llm.base_url",
      'must be an http:// or https:// URL, got "localhost:8000"',
    ],
    [
      "api:\n  large_mode: cohere",
      "api.large_mode",
      'must be "api" (cotfit speaks the OpenAI API), got "cohere"',
    ],
    ["llm: 5", "llm", "must be a mapping, got 5"],
  ];
  for (const [configText, path, reason] of cases) {
    const error = configError(() =>
      resolve(["in.jsonl", "--model", "m"], { configText, configPath: "c.yaml" })
    );
    assert.equal(error.path, path, configText);
    assert.equal(error.message, `Cannot use config "c.yaml": key ${path} ${reason}`);
  }
  // A flag that overrides a wrong value does not hide it.
  const hidden = configError(() =>
    resolve(["in.jsonl", "--concurrency", "4"], {
      configText: "llm:\n  model: m\n  concurrency: lots\n",
    })
  );
  assert.equal(hidden.path, "llm.concurrency");
});

Deno.test("resolveOptions() names the flag or variable of a bad value", () => {
  const cases: [string[], string, string][] = [
    [
      ["--concurrency", "abc"],
      "--concurrency",
      '--concurrency must be a whole number from 1 to 4096, got "abc"',
    ],
    [
      ["--concurrency", "4097"],
      "--concurrency",
      '--concurrency must be a whole number from 1 to 4096, got "4097"',
    ],
    [
      ["--concurrency", "1.5"],
      "--concurrency",
      '--concurrency must be a whole number from 1 to 4096, got "1.5"',
    ],
    [["--retries=-1"], "--retries", '--retries must be a whole number from 0 to 100, got "-1"'],
    [["--timeout", "0"], "--timeout", '--timeout must be a number from 0.001 to 86400, got "0"'],
    [
      ["--temperature", "2.1"],
      "--temperature",
      '--temperature must be a number from 0 to 2, got "2.1"',
    ],
    [["--top-p", "NaN"], "--top-p", '--top-p must be a number from 0 to 1, got "NaN"'],
    [["--port", "65536"], "--port", '--port must be a whole number from 0 to 65535, got "65536"'],
    [["--limit", "0"], "--limit", '--limit must be a whole number of at least 1, got "0"'],
    [
      ["--price-input", "$1"],
      "--price-input",
      '--price-input must be a number from 0 to 1000000, got "$1"',
    ],
    [
      ["--max-line-bytes", "16M"],
      "--max-line-bytes",
      '--max-line-bytes must be a whole number from 1 to 1073741824, got "16M"',
    ],
    [
      ["--base-url", "api.openai.com"],
      "--base-url",
      '--base-url must be an http:// or https:// URL, got "api.openai.com"',
    ],
    [["--model", ""], "--model", '--model must not be empty, got ""'],
    [
      ["--api-key-env", "$KEY"],
      "--api-key-env",
      '--api-key-env must be an environment variable name, got "$KEY"',
    ],
  ];
  for (const [args, path, message] of cases) {
    const error = configError(() => resolve(["in.jsonl", "--model", "m", ...args]));
    assert.equal(error.path, path);
    assert.equal(error.message, message);
  }
  const env = configError(() =>
    resolve(["in.jsonl", "--model", "m"], { env: { OPENAI_BASE_URL: "nope" } })
  );
  assert.equal(env.path, "OPENAI_BASE_URL");
  assert.equal(
    env.message,
    'environment variable OPENAI_BASE_URL must be an http:// or https:// URL, got "nope"',
  );
});

Deno.test("resolveOptions() checks what a command needs", () => {
  const noModel = configError(() => resolve(["in.jsonl"]));
  assert.equal(noModel.path, "--model");
  assert.match(noModel.message, /^no model: pass --model NAME, set COTFIT_MODEL/);

  const demo = resolve(["demo"]);
  assert.equal(demo.command, "demo");
  assert.equal(demo.model, "cotfit-offline-demo");
  assert.equal(resolve(["demo", "--model", "m"]).model, "m");

  // Loopback needs no token; any other host needs one, or --insecure-no-auth.
  for (const host of ["127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"]) {
    assert.equal(resolve(["serve", "--model", "m", "--host", host]).token, undefined, host);
  }
  for (const host of ["0.0.0.0", "::", "10.1.2.3", "example.com"]) {
    const open = configError(() => resolve(["serve", "--model", "m", "--host", host]));
    assert.equal(open.path, "--token", host);
    assert.match(open.message, /^no token for serve on non-loopback host /);
    assert.equal(
      resolve(["serve", "--model", "m", "--host", host, "--insecure-no-auth"]).insecureNoAuth,
      true,
    );
  }
  const served = resolve(["serve", "--model", "m", "--host", "0.0.0.0"], {
    env: { COTFIT_TOKEN: TOKEN },
  });
  assert.equal(served.token, TOKEN);
  assert.deepEqual(served.inputs, []);
  const badToken = configError(() => resolve(["serve", "--model", "m", "--token", "a b"]));
  assert.equal(badToken.path, "--token");
  assert.ok(!badToken.message.includes("a b"));
  // A config's input_dir does not apply to serve, even a placeholder one.
  const configText = "path:\n  input_dir: ./in/!!PLACEHOLDER!!\n";
  assert.deepEqual(
    resolve(["serve", "--model", "m", "--insecure-no-auth"], { configText }).inputs,
    [],
  );

  const extra = configError(() => resolve(["serve", "in.jsonl"]));
  assert.equal(extra.path, "INPUT");
  assert.equal(extra.message, 'cotfit serve takes no INPUT, got "in.jsonl"');

  const price = configError(() => resolve(["in.jsonl", "--model", "m", "--price-output", "1"]));
  assert.equal(price.path, "--price-input");
});

Deno.test("resolveOptions() takes --extra-body as a JSON object without cotfit's own fields", () => {
  const fromText = resolve(["in.jsonl", "--model", "m"], {
    configText: "generation: { extra_body: '{\"top_k\": 5}' }",
  });
  assert.deepEqual(fromText.extraBody, { top_k: 5 });
  const cases: [string, RegExp][] = [
    ["{not json", /^--extra-body must be a JSON object \(.*\), got "\{not json"$/],
    ["[1]", /^--extra-body must be a JSON object of request fields, got "\[1\]"$/],
    ['"low"', /^--extra-body must be a JSON object of request fields/],
    ['{"temperature": 1}', /^--extra-body must not set "temperature": use --temperature$/],
    ['{"stream": true}', /^--extra-body must not set "stream": cotfit reads whole replies$/],
    ['{"messages": []}', /^--extra-body must not set "messages"/],
  ];
  for (const [value, message] of cases) {
    const error = configError(() => resolve(["in.jsonl", "--model", "m", "--extra-body", value]));
    assert.match(error.message, message, value);
    assert.equal(error.path, "--extra-body");
  }
  const fromConfig = configError(() =>
    resolve(["in.jsonl", "--model", "m"], { configText: "generation: { extra_body: [1, 2] }" })
  );
  assert.match(fromConfig.message, /key generation\.extra_body must be a JSON object/);
});

Deno.test("resolveOptions() rejects two config keys that set the same option", () => {
  const configText = "llm:\n  model: a\napi:\n  large_model: b\n";
  const error = configError(() => resolve(["in.jsonl"], { configText, configPath: "c.yaml" }));
  assert.equal(error.path, "api.large_model");
  assert.equal(
    error.message,
    'Cannot use config "c.yaml": keys llm.model and api.large_model set the same option; keep one',
  );
});

Deno.test("resolveOptions() reports YAML syntax errors with their line", () => {
  const duplicate = configError(() =>
    resolve(["in.jsonl"], { configText: "llm:\n  model: a\n  model: b\n", configPath: "c.yaml" })
  );
  assert.match(
    duplicate.message,
    /^Cannot use config "c\.yaml": Map keys must be unique at line 3, column 3$/,
  );
  const unclosed = configError(() => resolve(["in.jsonl"], { configText: "llm:\n  model: [a\n" }));
  assert.match(unclosed.message, /^Cannot use config: Flow sequence .* at line 3, column 1$/);
  assert.equal(
    configError(() => resolve(["x"], { configText: "- a\n- b\n" })).message,
    "Cannot use config: the file must hold a mapping of sections, got a list",
  );
});

Deno.test("resolveOptions() accepts an empty or comment-only config", () => {
  for (const configText of ["", "# nothing yet\n", "llm:\n"]) {
    assert.equal(resolve(["in.jsonl", "--model", "m"], { configText }).concurrency, 32);
  }
});

Deno.test("resolveOptions() never shows the API key or the token", () => {
  const env = { OPENAI_API_KEY: API_KEY, COTFIT_TOKEN: TOKEN };
  const options = resolve(["serve", "--model", "m"], { env });
  assert.equal(options.apiKey, API_KEY);
  assert.equal(options.token, TOKEN);
  const shown = [
    JSON.stringify(options),
    JSON.stringify({ run: options }),
    JSON.stringify(redactOptions(options)),
    JSON.stringify(redactOptions({ ...options, quiet: true })),
    Deno.inspect(options),
    Deno.inspect({ nested: options }, { depth: 5 }),
    String(options),
  ];
  for (const text of shown) {
    assert.ok(!text.includes(API_KEY) && !text.includes(TOKEN), text);
  }
  assert.equal(JSON.parse(JSON.stringify(options)).apiKey, "***");
  assert.equal(redactOptions(options).token, "***");
  // A copy still works.
  assert.equal({ ...options }.apiKey, API_KEY);

  const badConfigs = [
    `llm:\n  api_key: ${API_KEY}\n  bogus: 1\n`,
    `llm:\n  api_key: [${API_KEY}]\n`,
    `server:\n  token: { t: ${TOKEN} }\n`,
    `llm:\n  api_key: ${API_KEY}\n   model: m\n`,
    `llm:\n  api_key: "${API_KEY}\n`,
    `llm: { api_key: ${API_KEY}, api_key: ${API_KEY} }\n`,
    `api:\n  large_api_key: ${API_KEY}\nllm:\n  api_key: ${API_KEY}\n`,
    `llm:\n  api_key: ${API_KEY}\n\tmodel: m\n`,
  ];
  for (const configText of badConfigs) {
    const error = configError(() => resolve(["in.jsonl", "--model", "m"], { configText }));
    assert.ok(!error.message.includes(API_KEY) && !error.message.includes(TOKEN), error.message);
    assert.ok(!String(error.path).includes(API_KEY));
  }
  const flag = configError(() => resolve(["serve", "--token", "", "--model", "m"]));
  assert.equal(flag.message, "--token must be a non-empty string");
});

Deno.test("resolveOptions() resolves config paths against the config file's folder", () => {
  const configText = [
    "input: { paths: [data, /abs/data.jsonl, '-'] }",
    "output: { dir: ../out, rejects: rej.jsonl }",
    "generation: { prompt: prompts/p.yaml }",
    "run: { cache: .cache/c.sqlite, debug_log: debug.jsonl }",
    "llm: { model: m }",
  ].join("\n");
  const options = resolve([], { configText, configPath: join("project", "conf", "cotfit.yaml") });
  const dir = join("project", "conf");
  assert.deepEqual(options.inputs, [join(dir, "data"), "/abs/data.jsonl", "-"]);
  assert.equal(options.output, join("project", "out"));
  assert.equal(options.rejects, join(dir, "rej.jsonl"));
  assert.equal(options.promptPath, join(dir, "prompts", "p.yaml"));
  assert.equal(options.cache, join(dir, ".cache", "c.sqlite"));
  assert.equal(options.debugLog, join(dir, "debug.jsonl"));

  // Without a path, relative to the working directory; flags stay as given.
  assert.equal(resolve([], { configText }).output, join("..", "out"));
  const flagged = resolve(["-o", "mine", "--cache", "c.sqlite"], {
    configText,
    configPath: "conf/c.yaml",
  });
  assert.equal(flagged.output, "mine");
  assert.equal(flagged.cache, "c.sqlite");
});

Deno.test("resolveOptions() unescapes \\n and \\t in --cot-preface and --cot-suffix only", () => {
  const options = resolve([
    "in.jsonl",
    "--model",
    "m",
    "--cot-preface",
    "A\\tB",
    "--cot-suffix",
    "\\n\\nAnswer:\\\\n",
  ]);
  assert.equal(options.cotPreface, "A\tB");
  assert.equal(options.cotSuffix, "\n\nAnswer:\\n");
  const fromFile = resolve(["in.jsonl", "--model", "m"], {
    configText: "output:\n  cot_suffix: 'a\\nb'\n",
  });
  assert.equal(fromFile.cotSuffix, "a\\nb");
  assert.equal(resolve(["in.jsonl", "--model", "m", "--cot-preface="]).cotPreface, "");
});

Deno.test("resolveOptions() loads config.example.yaml with the defaults it documents", async () => {
  const configPath = new URL("../config.example.yaml", import.meta.url).pathname;
  const configText = await Deno.readTextFile(configPath);
  const fromExample = resolve([], { configText, configPath });
  const defaults = resolve(["--model", "gpt-4o-mini"]);
  assert.deepEqual({ ...fromExample }, { ...defaults });

  // Every key of cotfit's own schema is there, uncommented.
  const documented = Object.entries(parse(configText) as Record<string, Record<string, unknown>>)
    .map(([section, keys]) => `${section}: ${Object.keys(keys).join(" ")}`);
  assert.deepEqual(documented, [
    "input: paths max_line_bytes",
    "output: dir rejects cot_preface cot_suffix",
    "llm: base_url model api_key_env api_key timeout retries retry_base_ms transport concurrency",
    "generation: prompt temperature top_p max_tokens extra_body max_thought_tokens history_tokens",
    "run: cache no_cache dry_run quiet limit sample seed debug_log",
    "pricing: input_per_million output_per_million",
    "server: host port token insecure_no_auth max_requests request_concurrency",
  ]);
});

Deno.test("resolveOptions() loads config.example.yaml's Augmentoolkit block uncommented", async () => {
  const example = await Deno.readTextFile(new URL("../config.example.yaml", import.meta.url));
  const block = example.slice(example.indexOf("# ---- Augmentoolkit"))
    .split("\n")
    .filter((line) => line.startsWith("#   "))
    .map((line) => line.slice(4))
    .join("\n");
  const options = resolve([], { configText: block, configPath: "config.yaml" });
  assert.equal(options.model, "deepseek-ai/DeepSeek-V3");
  assert.equal(options.apiKey, "sk-your-key");
  assert.deepEqual(options.inputs, ["inputs/sharegpt"]);
  assert.equal(options.output, "outputs/rephrased");
  assert.equal(options.concurrency, 50);
  assert.equal(options.limit, 50);
  assert.equal(options.cotSuffix, "\nAnswer:");
  assert.deepEqual(options.prices, { inputPerMillion: 0.3, outputPerMillion: 0.88 });
  assert.ok(options.ignoredKeys.includes("meta_datagen.do_meta_datagen"));
});

Deno.test("HELP_TEXT documents every flag, default, variable, exit code and permission", () => {
  const flags = [
    "-o, --output",
    "--rejects",
    "--max-line-bytes",
    "--base-url",
    "--model",
    "--api-key-env",
    "--temperature",
    "--top-p",
    "--max-tokens",
    "--timeout",
    "--retries",
    "--concurrency",
    "--history-tokens",
    "--max-thought-tokens",
    "--cot-preface",
    "--cot-suffix",
    "--prompt",
    "--cache",
    "--no-cache",
    "--dry-run",
    "-q, --quiet",
    "--limit",
    "--sample",
    "--seed",
    "--debug-log",
    "--price-input",
    "--price-output",
    "--host",
    "--port",
    "--token",
    "--insecure-no-auth",
    "--max-requests",
    "--request-concurrency",
    "-c, --config",
    "-h, --help",
    "--version",
  ];
  for (const flag of flags) assert.ok(HELP_TEXT.includes(`${flag}`), flag);
  const defaults = resolve(["--model", "m"]);
  for (
    const text of [
      `default ${defaults.maxLineBytes}`,
      `default ${defaults.baseURL}`,
      `default ${defaults.apiKeyEnv}`,
      `default ${defaults.concurrency}`,
      `default ${defaults.timeoutMs / 1000}`,
      `default ${defaults.retries}`,
      `default ${defaults.temperature}`,
      `default ${defaults.maxTokens}`,
      `default ${defaults.maxThoughtTokens}`,
      `default ${defaults.historyTokens}`,
      `default "${defaults.cotPreface}"`,
      `default ${defaults.seed}`,
      `default ${defaults.host}`,
      `default ${defaults.port}`,
      `default ${defaults.maxRequests}`,
      `default ${defaults.requestConcurrency}`,
      "OPENAI_API_KEY",
      "OPENAI_BASE_URL",
      "COTFIT_MODEL",
      "COTFIT_TOKEN",
      "cotfit [OPTIONS] INPUT... -o OUT_DIR",
      "cotfit [OPTIONS] - < in.jsonl > out.jsonl",
      "cotfit serve [OPTIONS]",
      "cotfit demo",
      "deno task start",
      "deno run --allow-read --allow-write --allow-net --allow-env main.ts",
      "\n  0 ",
      "\n  1 ",
      "\n  2 ",
      "\n  130 ",
      "--allow-read",
      "--allow-write",
      "--allow-net",
      "--allow-env",
    ]
  ) {
    assert.ok(HELP_TEXT.includes(text), text);
  }
  assert.ok(HELP_TEXT.indexOf("To ") < HELP_TEXT.indexOf("USAGE:"), "examples come first");
  for (const line of HELP_TEXT.split("\n")) assert.ok(line.length <= 100, line);
});

Deno.test("resolveOptions() picks the pooled transport for http: on an IP or localhost unless a proxy is set", () => {
  const run = (env: Record<string, string>, flags = {}) =>
    resolveOptions({ positionals: [], flags: { model: "m", ...flags }, env }).transport;
  assert.equal(run({ OPENAI_BASE_URL: "http://127.0.0.1:8000/v1" }), "pooled");
  assert.equal(run({ OPENAI_BASE_URL: "http://localhost:11434/v1" }), "pooled");
  assert.equal(run({ OPENAI_BASE_URL: "https://api.openai.com/v1" }), "fetch");
  // fetch tries every address a name resolves to; the pool only the first.
  assert.equal(run({ OPENAI_BASE_URL: "http://gpu-box:8000/v1" }), "fetch");
  assert.equal(
    run({ OPENAI_BASE_URL: "http://gpu-box:8000/v1", COTFIT_TRANSPORT: "pooled" }),
    "pooled",
  );
  assert.equal(
    run({ OPENAI_BASE_URL: "http://10.0.0.5:8000/v1", HTTP_PROXY: "http://proxy:3128" }),
    "fetch",
  );
  assert.equal(
    run({ OPENAI_BASE_URL: "http://10.0.0.5:8000/v1", all_proxy: "socks5://p" }),
    "fetch",
  );
  assert.equal(
    run({ OPENAI_BASE_URL: "http://127.0.0.1:8000/v1", COTFIT_TRANSPORT: "fetch" }),
    "fetch",
  );
});

Deno.test("resolveOptions() names where the one price given comes from", () => {
  const fromConfig = configError(() =>
    resolve(["--model", "m"], {
      configText: "pricing:\n  input_per_million: 1\n",
      configPath: "c.yaml",
    })
  );
  assert.match(
    fromConfig.message,
    /^Cannot use config "c\.yaml": key pricing\.input_per_million gives one price without the other/,
  );
  const fromFlag = configError(() => resolve(["--model", "m", "--price-output", "2"]));
  assert.match(fromFlag.message, /^--price-output gives one price without the other/);
  const both = resolve(["--model", "m", "--price-output", "2"], {
    configText: "pricing:\n  input_per_million: 1\n",
    configPath: "c.yaml",
  });
  assert.deepEqual(both.prices, { inputPerMillion: 1, outputPerMillion: 2 });
});

Deno.test("resolveOptions() refuses an unknown transport and pooled over https", () => {
  const run = (env: Record<string, string>) =>
    resolveOptions({ positionals: [], flags: { model: "m" }, env });
  assert.equal(
    configError(() => run({ COTFIT_TRANSPORT: "h2" })).message,
    'environment variable COTFIT_TRANSPORT must be one of auto, pooled, fetch, got "h2"',
  );
  assert.throws(
    () => run({ COTFIT_TRANSPORT: "pooled", OPENAI_BASE_URL: "https://api.openai.com/v1" }),
    /transport pooled needs an http: base URL/,
  );
});

Deno.test("resolveOptions() refuses a --sample larger than --limit, which would come out short", () => {
  const error = configError(() => resolve(["in.jsonl", "--limit", "2", "--sample", "3"]));
  assert.equal(error.path, "--sample");
  assert.match(error.message, /^--sample 3 is more than --limit 2: /);
  const options = resolve(["in.jsonl", "--limit", "5", "--sample", "3", "--model", "m"]);
  assert.deepEqual([options.limit, options.sample], [5, 3]);
});

Deno.test("resolveOptions() checks system.subset_size while use_subset is off too", () => {
  const error = configError(() =>
    resolve(["in.jsonl", "--model", "m"], {
      configText: "system:\n  use_subset: false\n  subset_size: lots\n",
      configPath: "c.yaml",
    })
  );
  assert.equal(error.path, "system.subset_size");
});
