#!/usr/bin/env -S deno run --no-prompt --allow-read --allow-write --allow-net=127.0.0.1 --allow-env --allow-run
/**
 * cotfit's chaos suite: drives the real CLI and server, as subprocesses, against a
 * fault-injecting fake OpenAI server, and fails on any lost, duplicated or corrupted record, a
 * hang, a wrong exit code or a leak.
 *
 * ```sh
 * deno task chaos                      # every scenario, seed 1
 * deno task chaos --only kill,outage   # some of them
 * deno task chaos --seed 7 --keep      # another seed; keep the temp files
 * ```
 *
 * The last line is `N passed, M failed`; the exit code is 0 only when nothing failed.
 *
 * ## Permissions
 * - `--allow-run`: the CLI and server subprocesses, and `cat /proc/PID/status` for RSS.
 * - `--allow-read`, `--allow-write`: temp datasets, outputs, caches.
 * - `--allow-net=127.0.0.1`: the fake upstream and the server under test.
 * - `--allow-env`: the subprocesses' environment.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { badInput } from "./bad_input.ts";
import { faultStorm } from "./fault_storm.ts";
import { scenarioDir, ScenarioReport } from "./harness.ts";
import { killResume } from "./kill_resume.ts";
import { outage } from "./outage.ts";
import { serverClients } from "./server_clients.ts";
import type { Scenario } from "./suite.ts";

/** Every scenario, in the order they run (the server last: it is the newest code). */
export const SCENARIOS: readonly Scenario[] = [
  {
    name: "bad-input",
    title: "a corpus of bad inputs: each gets its documented outcome and exit code",
    run: badInput,
  },
  {
    name: "faults",
    title: "10k conversations at a 20% fault rate: none lost, none twice, calls <= 1.3x ideal",
    run: faultStorm,
  },
  {
    name: "kill",
    title: "kill -9 at 5 seeded moments, rerun each time: byte-identical output, re-pay bounded",
    run: killResume,
  },
  {
    name: "outage",
    title: "the upstream goes down mid-run: the run waits and completes, or rejects with a reason",
    run: outage,
  },
  {
    name: "server",
    title:
      "server, 50 clients, a third disconnect mid-stream: others complete, calls aborted, RSS back",
    run: serverClients,
  },
];

interface SuiteFlags {
  only: string[] | null;
  seed: number;
  keep: boolean;
}

function parseFlags(args: string[]): SuiteFlags {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      only: { type: "string" },
      seed: { type: "string", default: "1" },
      keep: { type: "boolean", default: false },
    },
  });
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new RangeError(`Cannot parse --seed "${values.seed}"`);
  const only = values.only?.split(",").map((name) => name.trim()) ?? null;
  for (const name of only ?? []) {
    if (!SCENARIOS.some((scenario) => scenario.name === name)) {
      throw new RangeError(
        `Cannot run scenario "${name}": known are ${SCENARIOS.map((s) => s.name).join(", ")}`,
      );
    }
  }
  return { only, seed, keep: values.keep };
}

interface Outcome {
  scenario: Scenario;
  report: ScenarioReport;
  seconds: number;
}

/**
 * Runs the selected scenarios one after another and prints a summary table.
 *
 * @param args Command-line arguments.
 * @returns 0 when every scenario passed, 1 otherwise, 2 on bad usage.
 */
export async function main(args: string[]): Promise<number> {
  let flags: SuiteFlags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  const root = await Deno.makeTempDir({ prefix: "cotfit-chaos-" });
  const log = (text: string) => console.log(text);
  const selected = SCENARIOS.filter((s) => flags.only === null || flags.only.includes(s.name));
  log(`cotfit chaos suite: seed ${flags.seed}, ${selected.length} scenarios, files in ${root}`);
  const started = performance.now();
  const outcomes: Outcome[] = [];
  for (const scenario of selected) {
    log(`\n== ${scenario.name}: ${scenario.title}`);
    const report = new ScenarioReport(scenario.name, log);
    const scenarioStarted = performance.now();
    try {
      await scenario.run(report, { dir: await scenarioDir(root, scenario.name), seed: flags.seed });
    } catch (error) {
      report.check(false, `scenario crashed: ${error instanceof Error ? error.stack : error}`);
    }
    const seconds = (performance.now() - scenarioStarted) / 1000;
    log(`-- ${scenario.name}: ${report.passed ? "PASS" : "FAIL"} in ${seconds.toFixed(1)} s`);
    outcomes.push({ scenario, report, seconds });
  }
  if (flags.keep) log(`\nfiles kept in ${root}`);
  else await Deno.remove(root, { recursive: true }).catch(() => {});

  log("\n" + summaryTable(outcomes, (performance.now() - started) / 1000));
  const failed = outcomes.filter((outcome) => !outcome.report.passed).length;
  log(`${outcomes.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

function summaryTable(outcomes: readonly Outcome[], totalSeconds: number): string {
  const rows = outcomes.map(({ scenario, report, seconds }) => [
    scenario.name,
    report.passed ? "PASS" : `FAIL (${report.failures.length})`,
    `${seconds.toFixed(1)} s`,
    report.passed ? scenario.title : report.failures[0].split("\n")[0].slice(0, 100),
  ]);
  rows.push(["total", "", `${totalSeconds.toFixed(1)} s`, ""]);
  const header = ["scenario", "result", "time", "what / first failure"];
  const widths = header.map((_, i) => Math.max(header[i].length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " + cells.map((cell, i) => cell.padEnd(widths[i])).join(" | ") + " |";
  return [
    line(header),
    "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|",
    ...rows.map(line),
  ].join("\n");
}

if (import.meta.main) Deno.exit(await main(Deno.args));
