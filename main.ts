#!/usr/bin/env -S deno run --no-prompt --allow-read --allow-write --allow-net --allow-env
/**
 * cotfit CLI: retrofits a thought process into every assistant turn of ShareGPT / OpenAI JSONL
 * chat datasets through any OpenAI-compatible endpoint.
 *
 * ```sh
 * deno task start data/alpaca.jsonl -o out/ --model gpt-4o-mini
 * deno task start - --model m < in.jsonl > out.jsonl
 * deno task demo        # offline, no API key
 * ```
 *
 * ## Permissions
 * - `--allow-read`: inputs, the prompt and config files.
 * - `--allow-write`: outputs, rejects, the cache, the debug log.
 * - `--allow-net`: the LLM endpoint (`--allow-net=HOST` narrows it), and the server's port.
 * - `--allow-env`: `OPENAI_*`, `COTFIT_*` and the variable named by `--api-key-env`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { CacheError } from "./src/cache.ts";
import { parseCliArgs } from "./src/cli_args.ts";
import { HELP_TEXT } from "./src/cli_help.ts";
import { type Options, PROXY_VARS, resolveOptions } from "./src/config.ts";
import { ConfigError } from "./src/config_error.ts";
import { lazyEnv } from "./src/env.ts";
import { InputError, InputReadError } from "./src/inputs.ts";
import { startOfflineLlm } from "./src/offline_llm.ts";
import { PromptError, PromptReadError } from "./src/prompt.ts";
import { EXIT, runConversion, type RunEnvironment } from "./src/run.ts";
import { OutputError } from "./src/sink.ts";
import { readTextStrict } from "./src/text_file.ts";

const VERSION = "0.1.0";

/**
 * Runs the CLI with the given arguments and returns the process exit code.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 ok, 1 some records rejected, 2 bad usage/config/upstream refusal, 130 interrupted.
 */
export async function main(args: string[]): Promise<number> {
  let options: Options;
  try {
    const parsed = parseCliArgs(args);
    if (parsed.help) {
      console.log(HELP_TEXT);
      return EXIT.ok;
    }
    if (parsed.version) {
      console.log(`cotfit ${VERSION}`);
      return EXIT.ok;
    }
    const configText = parsed.configPath ? await readConfig(parsed.configPath) : undefined;
    options = resolveOptions({
      flags: parsed.flags,
      positionals: parsed.positionals,
      configText,
      configPath: parsed.configPath,
      env: lazyEnv((name) => {
        // Proxy variables are only probed; one the process may not read just counts as unset.
        if (PROXY_VARS.includes(name)) return;
        console.error(`warning: cannot read environment variable ${name}: add it to --allow-env`);
      }),
    });
  } catch (error) {
    return fail(error);
  }
  for (const key of options.ignoredKeys) {
    console.error(`warning: config key ${key} does not apply to cotfit and is ignored`);
  }
  if (options.cotPreface.trim() === "" && options.cotSuffix.trim() === "") {
    console.error(
      "warning: --cot-preface and --cot-suffix are both blank: a rerun on the output cannot " +
        "tell its thoughts from the answers and would add a second thought",
    );
  }

  if (options.command === "serve") {
    const { serve } = await import("./server.ts");
    return await serve(options);
  }

  const stop = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    if (++interrupts > 1) Deno.exit(EXIT.interrupted);
    console.error("\ninterrupted: finishing in-flight records (press ^C again to quit at once)");
    stop.abort(new DOMException("interrupted", "AbortError"));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  Deno.addSignalListener("SIGTERM", onInterrupt);
  const env: RunEnvironment = {
    stdin: Deno.stdin.readable,
    stdout: Deno.stdout.writable,
    stderr: (text) => Deno.stderr.writeSync(new TextEncoder().encode(text)),
    stderrIsTTY: Deno.stderr.isTerminal(),
    stop: stop.signal,
    now: () => performance.now(),
  };
  try {
    return options.command === "demo"
      ? await runDemo(options, env)
      : await runConversion(options, env);
  } catch (error) {
    return fail(error);
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    Deno.removeSignalListener("SIGTERM", onInterrupt);
  }
}

async function runDemo(options: Options, env: RunEnvironment): Promise<number> {
  await using llm = await startOfflineLlm();
  const examples = fileURLToPath(new URL("./examples/", import.meta.url));
  const output = options.output ?? "out/demo";
  env.stderr(
    `cotfit DEMO: ${examples} -> ${output}/\n` +
      `  LLM: the built-in OFFLINE demo endpoint at ${llm.url} (real OpenAI HTTP, templated thoughts,\n` +
      `  no API key, no network). For real thoughts: deno task start INPUT -o OUT --model M --base-url URL\n\n`,
  );
  const demoOptions: Options = {
    ...options,
    inputs: options.inputs.length > 0 ? options.inputs : [examples],
    output,
    baseURL: llm.url,
    model: "cotfit-offline-demo",
    noCache: true,
  };
  const code = await runConversion(demoOptions, env);
  env.stderr(`\nDEMO done: see ${output}/\n`);
  return code;
}

async function readConfig(path: string): Promise<string> {
  try {
    return await readTextStrict(path);
  } catch (error) {
    throw new ConfigError(`Cannot read config "${path}": ${(error as Error).message}`);
  }
}

function fail(error: unknown): number {
  // An input, the prompt file, the cache or an output cannot be read or created where asked: a
  // setup problem, not a crash, and not one that --help explains.
  if (
    error instanceof InputReadError || error instanceof PromptReadError ||
    error instanceof CacheError || error instanceof OutputError
  ) {
    console.error(`error: ${error.message}`);
    return EXIT.usage;
  }
  if (
    error instanceof ConfigError || error instanceof InputError || error instanceof PromptError
  ) {
    console.error(`error: ${error.message}`);
    console.error("Run with --help for usage.");
    return EXIT.usage;
  }
  throw error;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
