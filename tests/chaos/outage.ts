/**
 * Scenario: the upstream goes down mid-run (every call answered 503) and comes back.
 *
 * 1. A real 30 s outage at the default retry settings: the run waits, says so on stderr
 *    ("upstream unavailable...; retrying in N s (attempt k of n)"), and writes every record.
 * 2. An outage longer than a short retry budget: the records caught in it are rejected with
 *    "upstream unavailable", none lost; rerunning the same command then writes them, paying
 *    only for what was rejected.
 *
 * @module
 */

import { join } from "node:path";
import { startFakeOpenAI } from "../fake_openai.ts";
import { type Corpus, generateCorpus } from "./corpus.ts";
import {
  readIfExists,
  readRejects,
  runCli,
  type ScenarioReport,
  spawnCli,
  tail,
  waitFor,
} from "./harness.ts";
import { account, reportLedger } from "./ledger.ts";
import type { SuiteContext } from "./suite.ts";

const LATENCY_MS = 20;
const NOTICE = /upstream unavailable[^\n]*; retrying in \d+ s \(attempt \d+ of \d+\)/;

/** Runs the scenario into `report`. */
export async function outage(report: ScenarioReport, context: SuiteContext): Promise<void> {
  await waitsOut(report, context);
  await outlasts(report, context);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitsOut(report: ScenarioReport, context: SuiteContext): Promise<void> {
  const outageMs = 30_000;
  const concurrency = 8;
  const corpus = generateCorpus(1_500, context.seed + 2);
  const { input, out } = await prepare(context.dir, "long", corpus);
  report.note(
    `run 1: a ${outageMs / 1000} s outage at the defaults (--retries 7, first backoff 1 s ` +
      `doubling), ${corpus.records.length} records, --concurrency ${concurrency}`,
  );
  await using fake = await startFakeOpenAI({ latencyMs: LATENCY_MS });
  const child = spawnCli([
    input,
    "-o",
    out,
    "--base-url",
    fake.url,
    "--model",
    "chaos",
    "--concurrency",
    String(concurrency),
  ], { timeoutMs: 180_000 });
  const downAt = Math.floor(corpus.ideal / 3);
  await waitFor(() => fake.stats.requests >= downAt, { timeoutMs: 60_000 });
  fake.setDown(true);
  const downSince = performance.now();
  await sleep(outageMs);
  fake.setDown(false);
  const upSince = performance.now();
  const result = await child.done;
  const upFor = (performance.now() - upSince) / 1000;

  // The default budget waits at least 30.5 s in all: a timer firing late eats into that margin.
  report.figure(
    "run 1: outage",
    `${((upSince - downSince) / 1000).toFixed(2)} s, after ${downAt} calls`,
  );
  report.figure("run 1: calls refused (503) while down", fake.stats.outage);
  report.figure("run 1: finished after the upstream came back", `${upFor.toFixed(1)} s`);
  report.figure(
    "run 1: exit code / wall time",
    `${result.code} / ${(result.ms / 1000).toFixed(1)} s`,
  );
  if (!report.check(!result.timedOut, `run 1 hung\n${tail(result.stderr)}`)) return;
  const notice = result.stderr.match(NOTICE)?.[0];
  report.figure("run 1: progress message", notice ?? "(none)");
  report.check(notice !== undefined, `no "upstream unavailable... retrying in" on stderr`);
  report.check(
    result.code === 0,
    `run 1 exited ${result.code}, expected 0\n${tail(result.stderr)}`,
  );
  report.check(fake.stats.outage > 0, "no call reached the upstream while it was down");
  const rejects = await readRejects(join(out, "data.rejects.jsonl"), report);
  const ledger = account(
    corpus,
    await readIfExists(join(out, "data.jsonl")) ?? "",
    rejects,
    report,
  );
  reportLedger(ledger, corpus.records.length, report);
  report.check(ledger.rejected === 0, `${ledger.rejected} records rejected by a 30 s outage`);
}

async function outlasts(report: ScenarioReport, context: SuiteContext): Promise<void> {
  // Retries queue behind the window for the call slots, so each attempt of a turn comes later than its
  // backoff alone: the outage must outlast that too.
  const outageMs = 10_000;
  const retries = 3;
  const baseMs = 100;
  const concurrency = 8;
  const corpus = generateCorpus(1_500, context.seed + 3);
  const { input, out } = await prepare(context.dir, "over", corpus);
  report.note(
    `run 2: a ${outageMs / 1000} s outage against --retries ${retries}, ` +
      `COTFIT_RETRY_BASE_MS ${baseMs} (a budget under 1 s), then the same command again`,
  );
  const args = (url: string) => [
    input,
    "-o",
    out,
    "--base-url",
    url,
    "--model",
    "chaos",
    "--concurrency",
    String(concurrency),
    "--retries",
    String(retries),
  ];
  const env = { COTFIT_RETRY_BASE_MS: String(baseMs) };
  await using fake = await startFakeOpenAI({ latencyMs: LATENCY_MS });
  const child = spawnCli(args(fake.url), { env, timeoutMs: 120_000 });
  await waitFor(() => fake.stats.requests >= corpus.ideal / 3, { timeoutMs: 60_000 });
  fake.setDown(true);
  await sleep(outageMs);
  fake.setDown(false);
  const first = await child.done;
  const firstCalls = fake.stats.requests;
  if (!report.check(!first.timedOut, `run 2 hung\n${tail(first.stderr)}`)) return;

  const rejects = await readRejects(join(out, "data.rejects.jsonl"), report);
  const ledger = account(
    corpus,
    await readIfExists(join(out, "data.jsonl")) ?? "",
    rejects,
    report,
  );
  reportLedger(ledger, corpus.records.length, report);
  report.figure("run 2: calls refused (503) while down", fake.stats.outage);
  report.figure("run 2: exit code", first.code);
  report.check(ledger.rejected > 0, "no record was rejected by an outage longer than the budget");
  report.check(first.code === 1, `run 2 exited ${first.code}, expected 1 (some rejected)`);
  const unexplained = rejects.filter((reject) => !reject.reason.includes("upstream unavailable"));
  report.check(
    unexplained.length === 0,
    `${unexplained.length} rejects without "upstream unavailable": ${unexplained[0]?.reason}`,
  );
  if (rejects[0]) report.figure("run 2: a reject reason", rejects[0].reason);
  const rejectedTurns = rejects.reduce((sum, reject) => {
    const id = (JSON.parse(reject.raw) as { id: string }).id;
    return sum + (corpus.byId.get(id)?.thoughtTurns.length ?? 0);
  }, 0);

  const second = await runCli(args(fake.url), { env, timeoutMs: 120_000 });
  const repaid = fake.stats.requests - firstCalls;
  report.figure("rerun: exit code / calls", `${second.code} / ${repaid}`);
  report.check(second.code === 0, `the rerun exited ${second.code}\n${tail(second.stderr)}`);
  report.check(
    repaid <= rejectedTurns,
    `the rerun made ${repaid} calls for ${rejectedTurns} turns of rejected records`,
  );
  const after = await readRejects(join(out, "data.rejects.jsonl"), report);
  const final = account(corpus, await readIfExists(join(out, "data.jsonl")) ?? "", after, report);
  report.check(
    final.written === corpus.records.length,
    `after the rerun ${final.written} of ${corpus.records.length} written`,
  );
}

async function prepare(dir: string, name: string, corpus: Corpus) {
  const base = join(dir, name);
  await Deno.mkdir(base, { recursive: true });
  const input = join(base, "data.jsonl");
  await Deno.writeTextFile(input, corpus.text);
  return { input, out: join(base, "out") };
}
