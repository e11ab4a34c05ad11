/**
 * Scenario: 10,000 mixed conversations through the CLI while the upstream fails 20% of the calls
 * with every fault the fake knows. Nothing may be lost or duplicated, and the retries may cost
 * at most 30% more calls than the ideal.
 *
 * @module
 */

import { join } from "node:path";
import { evenFaults, FAULT_KINDS, startFakeOpenAI } from "../fake_openai.ts";
import { generateCorpus } from "./corpus.ts";
import {
  readIfExists,
  readRejects,
  runCli,
  type ScenarioReport,
  summaryCounts,
  tail,
} from "./harness.ts";
import { account, reportLedger } from "./ledger.ts";
import type { SuiteContext } from "./suite.ts";

const RECORDS = 10_000;
const FAULT_RATE = 0.2;
const MAX_CALL_RATIO = 1.3;
/**
 * Output keeps input order, so a record stuck in backoff holds up a window of 2x this many
 * records behind it: under 20% faults throughput is set by the window, not by the CPU.
 */
const CONCURRENCY = 128;
/** Long enough that a healthy call never times out on a busy 2-core box; a hang costs this. */
const TIMEOUT_SECONDS = 1.5;
const RETRIES = 6;
/** Shorter than the default 1 s so the suite fits its budget; a 429's `retry-after` still wins. */
const RETRY_BASE_MS = 200;

/** Runs the scenario into `report`. */
export async function faultStorm(report: ScenarioReport, context: SuiteContext): Promise<void> {
  const corpus = generateCorpus(RECORDS, context.seed);
  const input = join(context.dir, "storm.jsonl");
  const out = join(context.dir, "out");
  await Deno.writeTextFile(input, corpus.text);
  await using fake = await startFakeOpenAI({
    latencyMs: 5,
    seed: context.seed,
    faults: evenFaults(FAULT_RATE),
  });
  const flags = [
    "--concurrency",
    String(CONCURRENCY),
    "--timeout",
    String(TIMEOUT_SECONDS),
    "--retries",
    String(RETRIES),
  ];
  const env = { COTFIT_RETRY_BASE_MS: String(RETRY_BASE_MS) };
  report.figure(
    "settings",
    `${FAULT_RATE * 100}% faults (seed ${context.seed}), ${flags.join(" ")}, ` +
      `COTFIT_RETRY_BASE_MS=${RETRY_BASE_MS}`,
  );
  report.note(`cotfit ${input} -o ${out} (${corpus.ideal.toLocaleString("en-US")} thoughts)`);

  const result = await runCli(
    [input, "-o", out, "--base-url", fake.url, "--model", "chaos", ...flags],
    { env, timeoutMs: 240_000 },
  );
  report.figure("wall time", `${(result.ms / 1000).toFixed(1)} s`);
  if (result.timedOut) {
    report.check(
      false,
      `cotfit hung: killed after ${Math.round(result.ms)} ms\n${tail(result.stderr)}`,
    );
    report.figure("LLM calls made before the kill", fake.stats.requests);
    return;
  }

  const output = await readIfExists(join(out, "storm.jsonl"));
  report.check(output !== null, "no output file storm.jsonl");
  const rejects = await readRejects(join(out, "storm.rejects.jsonl"), report);
  const ledger = account(corpus, output ?? "", rejects, report);
  reportLedger(ledger, RECORDS, report);

  const expectedCode = ledger.rejected > 0 ? 1 : 0;
  report.figure("exit code", result.code);
  report.check(
    result.code === expectedCode,
    `exit code ${result.code}, expected ${expectedCode}\n${tail(result.stderr)}`,
  );
  const summary = summaryCounts(result.stderr);
  report.check(
    summary?.written === ledger.written && summary.rejected === ledger.rejected,
    `summary line disagrees with the files: ${JSON.stringify(summary)}`,
  );

  const calls = fake.stats.requests;
  const ratio = calls / corpus.ideal;
  const faults = FAULT_KINDS.filter((kind) => fake.stats.faults[kind] > 0)
    .map((kind) => `${kind} ${fake.stats.faults[kind]}`).join(", ");
  report.figure("ideal calls (thoughts needed)", corpus.ideal);
  report.figure("LLM calls made", calls);
  report.figure("calls / ideal", `${ratio.toFixed(3)} (limit ${MAX_CALL_RATIO})`);
  report.figure("faults injected", faults);
  // A figure, not a check: the fake may count a timed-out hang a moment after cotfit let it go.
  report.figure(
    "upstream max in flight",
    `${fake.stats.maxInFlight} (--concurrency ${CONCURRENCY})`,
  );
  report.figure("throughput", `${(RECORDS / (result.ms / 1000)).toFixed(0)} conv/s`);
  report.check(ratio <= MAX_CALL_RATIO, `${calls} calls is ${ratio.toFixed(3)}x the ideal`);
}
