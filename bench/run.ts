#!/usr/bin/env -S deno run --no-prompt --allow-read --allow-write --allow-net=127.0.0.1 --allow-env --allow-run --allow-sys
/**
 * cotfit's benchmark suite (`deno task bench`): efficiency, overhead, memory, cache and time to
 * first line, each measured against the fake OpenAI endpoint (`tests/fake_openai.ts`) running
 * in its own process, with cotfit's CLI or server in another. Prints a Markdown table and
 * writes `bench/results.json`.
 *
 * ```sh
 * deno task bench                    # the issue's sizes (1 GB memory runs): about 6 minutes
 * deno task bench --quick            # smaller sizes for development; writes bench/tmp/
 * deno task bench --only memory,overhead
 * ```
 *
 * Linux only: CPU and memory are read from `/proc`.
 *
 * ## Permissions
 * - `--allow-run`: the Deno binary (fake, CLI, server) and `curl`.
 * - `--allow-read`, `--allow-write`: `/proc`, generated inputs and outputs under `bench/tmp/`,
 *   and `bench/results.json`.
 * - `--allow-net=127.0.0.1`: the server under test.
 * - `--allow-sys`: the machine description (memory, OS release).
 * - `--allow-env`: read by the modules the suite shares with the tests.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openProcfs } from "./procfs.ts";
import { describeMachine, loadAverage, markdownTable, type Results } from "./report.ts";
import {
  efficiency,
  type Figure,
  firstLine,
  FULL_SIZES,
  memoryUse,
  overheadAndCache,
  QUICK_SIZES,
  type ScenarioContext,
  seconds,
} from "./scenarios.ts";

const BENCH_DIR = fileURLToPath(new URL("./", import.meta.url));
const SCENARIOS = {
  efficiency,
  overhead: overheadAndCache,
  memory: memoryUse,
  "first-line": firstLine,
} as const satisfies Record<string, (context: ScenarioContext) => Promise<Figure[]>>;
type ScenarioName = keyof typeof SCENARIOS;

const USAGE = `Usage: deno task bench [--quick] [--only NAMES] [--keep]

  --quick        smaller sizes (100 MB instead of 1 GB, fewer conversations); results go to
                 bench/tmp/results-quick.json instead of bench/results.json
  --only NAMES   comma-separated subset of: ${Object.keys(SCENARIOS).join(", ")}
                 (overhead also measures the cache rerun); results go to bench/tmp/results-partial.json
  --keep         keep the generated inputs and outputs under bench/tmp/
  -h, --help     show this help

Exit code: 0 when every figure met its target, 1 when one did not, 2 on bad usage.`;

/**
 * Runs the suite.
 *
 * @param args Command-line arguments.
 * @returns The exit code: 0 when every figure met its target, 1 when one did not, 2 on bad usage.
 */
export async function main(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args,
      strict: true,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const names = (flags.only?.split(",") ?? Object.keys(SCENARIOS)) as ScenarioName[];
  const unknown = names.filter((name) => !(name in SCENARIOS));
  if (unknown.length > 0) {
    console.error(`error: unknown scenario ${unknown.join(", ")}\n\n${USAGE}`);
    return 2;
  }

  const startedAt = new Date().toISOString();
  await using procfs = openProcfs();
  const machine = await describeMachine(procfs);
  const loadAtStart = await loadAverage(procfs);
  const mode = flags.quick ? "quick" : "full";
  console.log(
    `cotfit bench (${mode}) on ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGiB} GiB, ` +
      `Deno ${machine.deno}; load average ${loadAtStart}`,
  );
  await Deno.mkdir(join(BENCH_DIR, "tmp"), { recursive: true });
  const workDir = await Deno.makeTempDir({ dir: join(BENCH_DIR, "tmp"), prefix: "run-" });
  const context: ScenarioContext = {
    workDir,
    sizes: flags.quick ? QUICK_SIZES : FULL_SIZES,
    procfs,
    log: (line) => console.log(line),
  };

  const figures: Figure[] = [];
  const durations: Record<string, number> = {};
  const suiteStarted = performance.now();
  try {
    for (const name of names) {
      console.log(`${name}:`);
      const started = performance.now();
      figures.push(...await SCENARIOS[name](context));
      durations[name] = Math.round((performance.now() - started) / 100) / 10;
      console.log(`  (${seconds(performance.now() - started)})`);
    }
  } finally {
    if (!flags.keep) await Deno.remove(workDir, { recursive: true });
  }
  durations.total = Math.round((performance.now() - suiteStarted) / 100) / 10;

  console.log(`\n${markdownTable(figures)}\n`);
  console.log(`total ${seconds(performance.now() - suiteStarted)}`);
  const loadAtEnd = await loadAverage(procfs);
  console.log(`load average ${loadAtStart} at the start, ${loadAtEnd} at the end`);
  const results: Results = {
    mode,
    startedAt,
    machine,
    loadAverage: { start: loadAtStart, end: loadAtEnd },
    durations,
    figures,
    command: `deno task bench${flags.quick ? " --quick" : ""}${
      flags.only ? ` --only ${flags.only}` : ""
    }`,
  };
  const path = flags.only
    ? join(BENCH_DIR, "tmp", "results-partial.json")
    : flags.quick
    ? join(BENCH_DIR, "tmp", "results-quick.json")
    : join(BENCH_DIR, "results.json");
  await Deno.writeTextFile(path, JSON.stringify(results, null, 2) + "\n");
  console.log(`wrote ${path}`);
  return figures.every((figure) => figure.pass !== false) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
