/**
 * Scenario: the CLI is killed with SIGKILL at 5 seeded moments of one run and the same command
 * is rerun each time. The final output must be byte-identical to an undisturbed run's, no kill
 * may leave a finished-looking output behind, and each kill may re-pay at most the calls that
 * were in flight (the concurrency).
 *
 * No random faults here: the fake's replies are a function of the request, so the reference and
 * the disturbed run see the same thoughts and only the kills differ.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { startFakeOpenAI } from "../fake_openai.ts";
import { createRandom, generateCorpus } from "./corpus.ts";
import {
  readBytesIfExists,
  readIfExists,
  readRejects,
  runCli,
  sameBytes,
  type ScenarioReport,
  spawnCli,
  tail,
  waitFor,
} from "./harness.ts";
import { account, reportLedger } from "./ledger.ts";
import type { SuiteContext } from "./suite.ts";

const RECORDS = 2_000;
const KILLS = 5;
const CONCURRENCY = 16;
const LATENCY_MS = 20;

/** Runs the scenario into `report`. */
export async function killResume(report: ScenarioReport, context: SuiteContext): Promise<void> {
  const corpus = generateCorpus(RECORDS, context.seed + 1);
  const input = join(context.dir, "kill.jsonl");
  await Deno.writeTextFile(input, corpus.text);
  const command = (fakeUrl: string, out: string) => [
    input,
    "-o",
    out,
    "--base-url",
    fakeUrl,
    "--model",
    "chaos",
    "--concurrency",
    String(CONCURRENCY),
    "-q",
  ];
  report.figure(
    "settings",
    `${RECORDS} records, ${corpus.ideal} thoughts, --concurrency ${CONCURRENCY}, ` +
      `upstream latency ${LATENCY_MS} ms, no faults`,
  );

  // The undisturbed reference: same input, its own output directory and cache.
  const referenceOut = join(context.dir, "reference");
  {
    await using fake = await startFakeOpenAI({ latencyMs: LATENCY_MS });
    const result = await runCli(command(fake.url, referenceOut), { timeoutMs: 120_000 });
    report.figure("reference run", `exit ${result.code}, ${(result.ms / 1000).toFixed(1)} s`);
    if (!report.check(result.code === 0, `reference run failed\n${tail(result.stderr)}`)) return;
    report.check(
      fake.stats.requests === corpus.ideal,
      `reference run made ${fake.stats.requests} calls for ${corpus.ideal} thoughts`,
    );
  }

  // Kill moments: counts of distinct calls made, seeded, at least two windows apart.
  const random = createRandom(context.seed * 7919 + 3);
  const moments: number[] = [];
  while (moments.length < KILLS) {
    const moment = Math.floor(corpus.ideal * (0.03 + 0.94 * random()));
    if (moments.every((other) => Math.abs(other - moment) > CONCURRENCY * 2)) {
      moments.push(moment);
    }
  }
  moments.sort((a, b) => a - b);
  report.figure("kill after N distinct calls", moments.join(", "));

  const seen = new Set<string>();
  const repaid: number[] = new Array(KILLS + 1).fill(0);
  let segment = 0;
  await using fake = await startFakeOpenAI({
    latencyMs: LATENCY_MS,
    script(_n, body) {
      const key = createHash("sha256").update(JSON.stringify(body.messages)).digest("hex");
      if (seen.has(key)) repaid[segment]++;
      else seen.add(key);
      return undefined;
    },
  });
  const out = join(context.dir, "out");
  const finalPath = join(out, "kill.jsonl");
  for (let kill = 0; kill < KILLS; kill++) {
    segment = kill;
    const child = spawnCli(command(fake.url, out), { timeoutMs: 120_000 });
    const reached = await waitFor(() => seen.size >= moments[kill], { timeoutMs: 60_000 });
    child.kill("SIGKILL");
    const result = await child.done;
    const killed = result.signal === "SIGKILL";
    report.check(
      reached && killed,
      `run ${kill + 1} was not killed at ${moments[kill]} calls ` +
        `(reached ${seen.size}, exit ${result.code})\n${tail(result.stderr)}`,
    );
    report.check(
      await readIfExists(finalPath) === null,
      `kill ${kill + 1} left ${finalPath} behind, which looks finished`,
    );
    report.note(
      `kill ${kill + 1}: SIGKILL after ${seen.size} distinct calls ` +
        `(${fake.stats.requests} made so far, ${fake.stats.inFlight} in flight)`,
    );
  }
  segment = KILLS;
  const last = await runCli(command(fake.url, out), { timeoutMs: 120_000 });
  report.figure("final rerun", `exit ${last.code}, ${(last.ms / 1000).toFixed(1)} s`);
  report.check(last.code === 0, `final rerun exited ${last.code}\n${tail(last.stderr)}`);

  const output = await readIfExists(finalPath);
  const rejects = await readRejects(join(out, "kill.rejects.jsonl"), report);
  reportLedger(account(corpus, output ?? "", rejects, report), RECORDS, report);
  const same = sameBytes(
    await readBytesIfExists(finalPath),
    await readBytesIfExists(join(referenceOut, "kill.jsonl")),
  );
  report.figure("byte-identical to the reference", same ? "yes" : "NO");
  report.check(same, "final output differs from the undisturbed run's");
  report.check(
    sameBytes(
      await readBytesIfExists(join(out, "kill.rejects.jsonl")),
      await readBytesIfExists(join(referenceOut, "kill.rejects.jsonl")),
    ),
    "rejects differ from the undisturbed run's",
  );
  const leftovers = [];
  for await (const entry of Deno.readDir(out)) {
    if (entry.name.endsWith(".partial")) leftovers.push(entry.name);
  }
  report.check(leftovers.length === 0, `leftover files: ${leftovers.join(", ")}`);

  const total = fake.stats.requests;
  report.figure("calls: ideal / made", `${corpus.ideal} / ${total}`);
  // Run k+1 re-paying a call of run k is the cost of kill k; run 1 has nothing to re-pay.
  const perKill = repaid.slice(1);
  report.figure("re-paid calls per kill", `${perKill.join(", ")} (limit ${CONCURRENCY} each)`);
  report.check(
    total === corpus.ideal + perKill.reduce((a, b) => a + b, 0) + repaid[0],
    `calls ${total} != ideal ${corpus.ideal} + re-paid ${repaid.join("+")}`,
  );
  report.check(repaid[0] === 0, `the first run made ${repaid[0]} calls twice`);
  perKill.forEach((calls, kill) =>
    report.check(
      calls <= CONCURRENCY,
      `kill ${kill + 1} re-paid ${calls} calls, more than the ${CONCURRENCY} in flight`,
    )
  );
}
