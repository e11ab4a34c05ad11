/**
 * Scenario: `cotfit serve` with 50 concurrent clients, a third of them disconnecting mid-stream.
 * The others must get complete, correct outputs; the disconnected clients' calls must be
 * aborted (the fake sees them go) and none started after they left; the server's memory must
 * come back to its baseline; and the server must stop cleanly on SIGTERM.
 *
 * Memory: the baseline is taken after two warm-up rounds of the same load (an idle server's RSS
 * says little: V8 and the allocator grow lazily and rarely give pages back), then three more
 * rounds must not leave the server bigger. Before each reading the server runs a full GC
 * (`serve_probe.ts`), so VmRSS from `/proc/PID/status` and the live heap both mean something.
 * The server uses a `--cache` file: the default in-memory cache keeps every thought it ever
 * made, which would grow the heap by itself.
 *
 * @module
 */

import { join } from "node:path";
import { startFakeOpenAI } from "../fake_openai.ts";
import { type Corpus, generateCorpus, recordMismatch } from "./corpus.ts";
import {
  isRecord,
  parseJsonl,
  preview,
  rssKiB,
  type RunningProcess,
  type ScenarioReport,
  spawnCli,
  tail,
  waitFor,
} from "./harness.ts";
import type { SuiteContext } from "./suite.ts";

const CLIENTS = 50;
const RECORDS_PER_CLIENT = 40;
/** Clients that leave send more, so the work they walk away from is plain to see. */
const RECORDS_PER_LEAVING_CLIENT = 120;
/** Records a disconnecting client reads before it goes. */
const READ_BEFORE_LEAVING = 3;
const LATENCY_MS = 100;
const CONCURRENCY = 64;
/** The server may take this long to notice a client left and stop its calls. */
const GRACE_MS = 500;
const WARMUP_ROUNDS = 2;
const ROUNDS = 3;
/** VmRSS after GC may end this far above the baseline (allocator and JIT noise). */
const RSS_SLACK = 1.25;
/** Live heap after GC may end this far above the baseline. */
const HEAP_SLACK_KIB = 8 * 1024;
const PROBE = new URL("./serve_probe.ts", import.meta.url).pathname;

/** Every third client leaves mid-stream. */
function leaves(client: number): boolean {
  return client % 3 === 0;
}

/** Runs the scenario into `report`. */
export async function serverClients(report: ScenarioReport, context: SuiteContext): Promise<void> {
  const base = context.seed * 1000 + 100;
  // Call start times per client, by the record id each question carries (`[c123-000001.1]`).
  const callsAt = new Map<number, number[]>();
  await using fake = await startFakeOpenAI({
    latencyMs: LATENCY_MS,
    script(_n, body) {
      const match = body.messages.at(-1)?.content?.match(/\[c(\d+)-\d{6}\.\d+\]/);
      if (match) {
        const client = (Number(match[1]) - base) % 100;
        callsAt.set(client, [...callsAt.get(client) ?? [], performance.now()]);
      }
      return undefined;
    },
  });
  const server = spawnCli([
    "--port",
    "0",
    "--base-url",
    fake.url,
    "--model",
    "chaos",
    "--insecure-no-auth",
    "--concurrency",
    String(CONCURRENCY),
    "--cache",
    join(context.dir, "server-cache.sqlite"),
  ], { entry: PROBE, denoFlags: ["--v8-flags=--expose-gc"], timeoutMs: 300_000 });
  const listening = /cotfit serve listening on (http:\/\/\S+)/;
  const up = await waitFor(() => listening.test(server.stderrSoFar()), { timeoutMs: 30_000 });
  if (!report.check(up, `the server did not start\n${tail(server.stderrSoFar())}`)) {
    server.kill("SIGKILL");
    await server.done;
    return;
  }
  const url = `${server.stderrSoFar().match(listening)![1]}/v1/rephrase`;
  report.figure(
    "settings",
    `${CLIENTS} clients, every 3rd leaves after ${READ_BEFORE_LEAVING} lines; ` +
      `${WARMUP_ROUNDS} warm-up + ${ROUNDS} measured rounds; upstream latency ${LATENCY_MS} ms; ` +
      `--concurrency ${CONCURRENCY}`,
  );

  try {
    let baseline: Memory = { rssKiB: null, heapKiB: null, externalKiB: null };
    let peak = 0;
    const sampler = setInterval(async () => {
      if (baseline.rssKiB !== null) peak = Math.max(peak, await rssKiB(server.pid) ?? 0);
    }, 100);
    const totals = { complete: 0, left: 0, aborted: 0, leftCalls: 0, idealLeft: 0, lateCalls: 0 };
    const readings: Memory[] = [];
    for (let round = 1; round <= WARMUP_ROUNDS + ROUNDS; round++) {
      callsAt.clear();
      const corpora = Array.from({ length: CLIENTS }, (_, k) =>
        generateCorpus(
          leaves(k) ? RECORDS_PER_LEAVING_CLIENT : RECORDS_PER_CLIENT,
          base + 100 * round + k,
        ));
      const abortedBefore = fake.stats.aborted;
      const results = await Promise.all(
        corpora.map((corpus, k) => client(url, corpus, leaves(k) ? READ_BEFORE_LEAVING : null)),
      );
      await waitFor(() => fake.stats.inFlight === 0, { timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, GRACE_MS * 2));
      const aborted = fake.stats.aborted - abortedBefore;
      let complete = 0;
      let leftCalls = 0;
      for (let k = 0; k < CLIENTS; k++) {
        const result = results[k];
        if (!leaves(k)) {
          const problem = result.error ?? outputProblem(corpora[k], result.lines);
          if (report.check(problem === null, `round ${round} client ${k}: ${problem}`)) complete++;
          continue;
        }
        const calls = callsAt.get(k) ?? [];
        totals.left++;
        leftCalls += calls.length;
        totals.idealLeft += corpora[k].ideal;
        report.check(
          result.leftAt !== null,
          `round ${round} client ${k} meant to leave but got ${result.lines.length} lines ` +
            `(${result.error})`,
        );
        const leftAt = result.leftAt ?? Infinity;
        totals.lateCalls += calls.filter((at) => at > leftAt + GRACE_MS).length;
      }
      totals.complete += complete;
      totals.leftCalls += leftCalls;
      totals.aborted += aborted;
      report.check(aborted > 0, `round ${round}: no upstream call was aborted when clients left`);
      report.check(
        fake.stats.inFlight === 0,
        `round ${round}: ${fake.stats.inFlight} upstream calls still running`,
      );
      const memory = await probe(server);
      if (round === WARMUP_ROUNDS) {
        baseline = memory;
        peak = memory.rssKiB ?? 0;
      }
      if (round > WARMUP_ROUNDS) readings.push(memory);
      report.note(
        `${
          round <= WARMUP_ROUNDS ? "warm-up " : ""
        }round ${round}: ${complete} complete, ${aborted} calls aborted, ${leftCalls} calls ` +
          `for those who left; after GC ${formatMemory(memory)}`,
      );
    }
    clearInterval(sampler);

    report.figure("server memory baseline (after GC)", formatMemory(baseline));
    const stayed = (WARMUP_ROUNDS + ROUNDS) * CLIENTS - totals.left;
    report.figure("clients complete and correct", `${totals.complete} of ${stayed}`);
    report.figure("clients that left mid-stream", totals.left);
    report.figure("upstream calls aborted", totals.aborted);
    report.figure(
      "calls for clients that left",
      `${totals.leftCalls} (${totals.idealLeft} had they stayed)`,
    );
    report.figure(`calls started > ${GRACE_MS} ms after leaving`, totals.lateCalls);
    report.check(totals.lateCalls === 0, `${totals.lateCalls} calls started for clients long gone`);
    report.check(
      totals.leftCalls < totals.idealLeft / 2,
      `${totals.leftCalls} calls for clients that left: the server kept working for them`,
    );

    const last = readings.at(-1)!;
    report.figure(
      "server VmRSS baseline / peak / end",
      [
        mib(baseline.rssKiB),
        mib(peak),
        `${mib(last.rssKiB)} MiB`,
      ].join(" / "),
    );
    if (baseline.rssKiB === null || last.rssKiB === null || baseline.heapKiB === null) {
      report.check(false, `cannot read the memory of the server (pid ${server.pid})`);
    } else {
      report.check(
        last.rssKiB <= baseline.rssKiB * RSS_SLACK,
        `server VmRSS ${mib(last.rssKiB)} MiB did not come back to its baseline ` +
          `${mib(baseline.rssKiB)} MiB`,
      );
      report.check(
        last.heapKiB !== null && last.heapKiB <= baseline.heapKiB + HEAP_SLACK_KIB,
        `server live heap grew from ${mib(baseline.heapKiB)} to ${mib(last.heapKiB)} MiB`,
      );
    }
  } finally {
    server.kill("SIGTERM");
    const end = await server.done;
    report.figure(
      "server after SIGTERM",
      `exit ${end.code}${end.timedOut ? " (hung, killed)" : ""}`,
    );
    report.check(end.code === 0 && !end.timedOut, `server exit ${end.code}\n${tail(end.stderr)}`);
  }
}

/** Memory of the server after a full GC. */
interface Memory {
  rssKiB: number | null;
  heapKiB: number | null;
  /** ArrayBuffers and other memory V8 tracks outside its heap. */
  externalKiB: number | null;
}

/** Asks the server for a full GC, then reads its live heap and its VmRSS. */
async function probe(server: RunningProcess): Promise<Memory> {
  await settle();
  const before = server.stderrSoFar().length;
  server.kill("SIGUSR1");
  const line = /probe heap_used_kib=(\d+) external_kib=(\d+)/;
  await waitFor(() => line.test(server.stderrSoFar().slice(before)), { timeoutMs: 5_000 });
  const match = server.stderrSoFar().slice(before).match(line);
  return {
    rssKiB: await rssKiB(server.pid),
    heapKiB: match ? Number(match[1]) : null,
    externalKiB: match ? Number(match[2]) : null,
  };
}

function formatMemory(memory: Memory): string {
  return `VmRSS ${mib(memory.rssKiB)} MiB, live heap ${mib(memory.heapKiB)} MiB, ` +
    `external ${mib(memory.externalKiB)} MiB`;
}

interface ClientResult {
  /** Parsed response lines. */
  lines: unknown[];
  /** `performance.now()` when the client disconnected, or null when it read to the end. */
  leftAt: number | null;
  error: string | null;
}

/** One client: posts its corpus, reads the stream, and leaves after `leaveAfter` lines. */
async function client(
  url: string,
  corpus: Corpus,
  leaveAfter: number | null,
): Promise<ClientResult> {
  const controller = new AbortController();
  const lines: unknown[] = [];
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: corpus.text,
      signal: controller.signal,
    });
    if (!response.ok || response.body === null) {
      return { lines, leftAt: null, error: `HTTP ${response.status}: ${await response.text()}` };
    }
    let buffered = "";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += value;
      let newline;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        lines.push(...parseJsonl(buffered.slice(0, newline)));
        buffered = buffered.slice(newline + 1);
        if (leaveAfter !== null && lines.length >= leaveAfter) {
          controller.abort();
          await reader.cancel().catch(() => {});
          return { lines, leftAt: performance.now(), error: null };
        }
      }
    }
    if (buffered !== "") {
      return { lines, leftAt: null, error: `cut last line: ${preview(buffered)}` };
    }
    return { lines, leftAt: null, error: null };
  } catch (error) {
    return { lines, leftAt: null, error: `request failed: ${error}` };
  }
}

/** Why a complete client's lines are not its records with thoughts, in order; or null. */
function outputProblem(corpus: Corpus, lines: readonly unknown[]): string | null {
  if (lines.length !== corpus.records.length) {
    return `${lines.length} lines for ${corpus.records.length} records; last: ${
      preview(lines.at(-1))
    }`;
  }
  for (let i = 0; i < lines.length; i++) {
    if (isRecord(lines[i]) && "error" in (lines[i] as Record<string, unknown>)) {
      return `line ${i + 1} is an error: ${preview(lines[i])}`;
    }
    const mismatch = recordMismatch(corpus.records[i], lines[i]);
    if (mismatch !== null) return `record ${i + 1}: ${mismatch}`;
  }
  return null;
}

/** Lets the server finish what it was doing and its heap settle. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 2_000));
}

function mib(kib: number | null): string {
  return kib === null ? "?" : (kib / 1024).toFixed(1);
}
