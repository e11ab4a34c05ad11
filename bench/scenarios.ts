/**
 * The benchmark scenarios of issue 6. Each starts what it measures in separate processes (the
 * fake OpenAI endpoint, the cotfit CLI or server), measures one figure side by side with its
 * reference in the same run, and returns {@linkcode Figure}s.
 *
 * Requires `--allow-run`, `--allow-read`, `--allow-write` (inputs and outputs under the work
 * directory) and `--allow-net=127.0.0.1`.
 *
 * @module
 */

import { join } from "node:path";
import { type DatasetInfo, writeDataset } from "./dataset.ts";
import {
  type CliResult,
  type FakeProcess,
  runCli,
  runReferenceClient,
  startFake,
  startServer,
} from "./processes.ts";
import { type Procfs, watchProcess } from "./procfs.ts";

/** One measured figure, with its target when the issue sets one. */
export interface Figure {
  /** The family: `efficiency`, `overhead`, `memory`, `cache`, `first line`. */
  readonly group: string;
  /** What was run, e.g. `CLI, concurrency 64, 20,000 single-turn`. */
  readonly setting: string;
  /** The headline value. */
  readonly value: number;
  readonly unit: string;
  /** The target, as text (`>= 0.90`), when there is one. */
  readonly target?: string;
  /** Whether `value` meets `target`. */
  readonly pass?: boolean;
  /** The supporting figures worth a glance, in a few words. */
  readonly note: string;
  /** Supporting numbers: throughput, CPU, wall time, the fake's own CPU... */
  readonly details: Readonly<Record<string, number | string>>;
}

/** Sizes of one suite run: the (full) or smaller ones for development (quick). */
export interface Sizes {
  /** Conversations per efficiency run, by concurrency. */
  readonly efficiency: readonly { readonly concurrency: number; readonly count: number }[];
  /** Single-turn conversations of the overhead and cache runs. */
  readonly overheadSingle: number;
  /** 4-pair conversations of the overhead run. */
  readonly overheadMulti: number;
  /** The two input sizes of the memory runs, in bytes. */
  readonly memorySmall: number;
  readonly memoryLarge: number;
  /** Lines uploaded in the time-to-first-line run. */
  readonly firstLineLines: number;
}

/** The sizes the issue asks for. */
export const FULL_SIZES: Sizes = {
  efficiency: [
    { concurrency: 64, count: 20_000 },
    { concurrency: 256, count: 20_000 },
    { concurrency: 1024, count: 60_000 },
  ],
  overheadSingle: 20_000,
  overheadMulti: 10_000,
  memorySmall: 10e6,
  memoryLarge: 1e9,
  firstLineLines: 20,
};

/** Smaller sizes for development: the same figures, noisier, in about two minutes. */
export const QUICK_SIZES: Sizes = {
  efficiency: [
    { concurrency: 64, count: 3_000 },
    { concurrency: 256, count: 10_000 },
    { concurrency: 1024, count: 20_000 },
  ],
  overheadSingle: 20_000,
  overheadMulti: 3_000,
  memorySmall: 10e6,
  memoryLarge: 100e6,
  firstLineLines: 10,
};

/** Where a scenario writes, and how it reports progress. */
export interface ScenarioContext {
  /** A scratch directory for inputs and outputs; the caller removes it. */
  readonly workDir: string;
  readonly sizes: Sizes;
  /** Reads CPU and memory of the processes. */
  readonly procfs: Procfs;
  /** One line of progress. */
  readonly log: (line: string) => void;
}

const EFFICIENCY_LATENCY_MS = 200;
const EFFICIENCY_TARGET = 0.9;
const CPU_TARGET_MS = 1;
const OVERHEAD_CONCURRENCY = 256;
const CACHE_TARGET_PER_SECOND = 20_000;
const MEMORY_CONCURRENCY = 256;
const MEMORY_RATIO_TARGET = 1.5;
/** The "< 200 MB", read in decimal megabytes (190.7 MiB), the stricter reading. */
const MEMORY_ABSOLUTE_TARGET = 200e6;
const FIRST_LINE_TARGET_MS = 400;
const FIRST_LINE_INTERVAL_MS = 100;

/**
 * Efficiency: conversations/s over the ideal `concurrency / latency`, with a 200 ms fake, for
 * each concurrency of {@linkcode Sizes.efficiency}. The rate is the one the CLI reports
 * (`usage.json`: conversations over the run's wall time, the last window included); the rate on
 * the bench's own clock, from spawning the process to its exit (Deno start-up and module loading
 * included), is given beside it. The fake is warmed before each run ({@linkcode warmFake}).
 *
 * @param context Work directory, sizes and log.
 * @returns One figure per concurrency.
 */
export async function efficiency(context: ScenarioContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  await using fake = await startFake(context.procfs, EFFICIENCY_LATENCY_MS);
  for (const { concurrency, count } of context.sizes.efficiency) {
    const input = await dataset(context, `single-${count}`, { count });
    await warmFake(context, fake, input, concurrency);
    const run = await measuredRun(context, fake, input, `efficiency-${concurrency}`, concurrency);
    const ideal = concurrency / (EFFICIENCY_LATENCY_MS / 1000);
    const rate = run.result.usage.conversationsPerSecond;
    const value = rate / ideal;
    const withStartup = count / (run.result.wallMs / 1000) / ideal;
    // The highest concurrency always gets the reference: its rate is the machine's ceiling that
    // day, so cotfit's share of it compares runs on hosts whose speed differs.
    const highest = concurrency === Math.max(...context.sizes.efficiency.map((e) => e.concurrency));
    const reference = value < EFFICIENCY_TARGET || highest
      ? await referenceEfficiency(context, fake, input, concurrency, ideal)
      : null;
    figures.push({
      group: "efficiency",
      setting: `CLI, concurrency ${concurrency}, ${thousands(count)} single-turn, fake 200 ms`,
      // Three decimals: at two, 0.899 printed as 0.9 beside a target of 0.90 it misses.
      value: round(value, 3),
      unit: "of ideal",
      target: `>= ${EFFICIENCY_TARGET.toFixed(2)}`,
      pass: value >= EFFICIENCY_TARGET,
      note: `${thousands(rate)}/s of ${thousands(ideal)}/s; ${round(withStartup, 3)} with ` +
        `start-up; CPU: CLI ${round(run.result.cpuMs / count, 2)} ms/conv, fake ` +
        `${round(run.fakeCpuMs / count, 2)} ms/call` +
        (reference
          ? `; HTTP-only reference client: ${round(reference.efficiency, 3)} (cotfit ` +
            `${round(value / reference.efficiency, 3)} of it)`
          : ""),
      details: {
        ...runDetails(run.result, count, run.fakeCpuMs),
        idealPerSecond: ideal,
        efficiencyWithStartup: round(withStartup, 3),
        ...(reference && {
          referenceEfficiency: round(reference.efficiency, 3),
          ofReference: round(value / reference.efficiency, 3),
          referenceCpuMsPerCall: round(reference.cpuMsPerCall, 3),
        }),
      },
    });
    context.log(`  concurrency ${concurrency}: ${describe(figures.at(-1)!)}`);
  }
  return figures;
}

/**
 * At the highest concurrency, and wherever cotfit misses the efficiency target, the same calls
 * made by the HTTP-only reference client (`bench/reference_client.ts`: cotfit's HTTP pool and
 * nothing else) against the same fake, with bodies about as large as cotfit's (the default
 * prompt plus an average record). Its efficiency is the ceiling of one Deno thread on this
 * machine, so the gap between the two is cotfit's own work.
 */
async function referenceEfficiency(
  context: ScenarioContext,
  fake: FakeProcess,
  input: DatasetInfo,
  concurrency: number,
  ideal: number,
): Promise<{ efficiency: number; cpuMsPerCall: number }> {
  const count = input.conversations;
  const run = await runReferenceClient(context.procfs, {
    baseURL: fake.url,
    concurrency,
    count,
    bodyBytes: await referenceBodyBytes(input),
  });
  const efficiency = count / (run.wallMs / 1000) / ideal;
  context.log(`    HTTP-only reference client: ${round(efficiency, 3)} of ideal`);
  return { efficiency, cpuMsPerCall: run.cpuMs / count };
}

/**
 * Brings the fake to `concurrency` open connections and calls in flight before a measured run,
 * with three rounds of requests from the reference client: a fake process meeting 1,024 new
 * connections for the first time took in the first 1,024 requests by 1.1 s instead of 0.4 s (its
 * heap growing, this VM's first-touch page faults), a cost of the instrument, not of cotfit. The
 * CLI itself still starts cold.
 */
async function warmFake(
  context: ScenarioContext,
  fake: FakeProcess,
  input: DatasetInfo,
  concurrency: number,
): Promise<void> {
  await runReferenceClient(context.procfs, {
    baseURL: fake.url,
    concurrency,
    count: WARM_ROUNDS * concurrency,
    bodyBytes: await referenceBodyBytes(input),
  });
}

const WARM_ROUNDS = 3;

/** Request bodies about as large as cotfit's: the default prompt plus an average record. */
async function referenceBodyBytes(input: DatasetInfo): Promise<number> {
  const prompt = await Deno.stat(new URL("../prompts/thought_process.yaml", import.meta.url));
  return Math.round(prompt.size + input.bytes / input.conversations);
}

/**
 * Overhead and cache: with a 0 ms fake, conversations/s and CPU per conversation of the CLI
 * process alone, single-turn and 4-pair multi-turn; then a rerun of the finished single-turn run,
 * where every thought is a cache hit.
 *
 * @param context Work directory, sizes and log.
 * @returns The overhead figures, then the cache figure.
 */
export async function overheadAndCache(context: ScenarioContext): Promise<Figure[]> {
  const { overheadSingle, overheadMulti } = context.sizes;
  const figures: Figure[] = [];
  await using fake = await startFake(context.procfs, 0);

  // A one-record run gives the fixed cost of starting Deno and loading cotfit.
  const tiny = await dataset(context, "single-1", { count: 1 });
  const startup = await measuredRun(context, fake, tiny, "startup", OVERHEAD_CONCURRENCY);
  const startupCpuMs = startup.result.cpuMs;

  const shapes = [
    { shape: "single-turn", pairs: 1, count: overheadSingle },
    { shape: "4-pair multi-turn", pairs: 4, count: overheadMulti },
  ];
  for (const { shape, pairs, count } of shapes) {
    const input = await dataset(context, `pairs${pairs}-${count}`, { count, pairs });
    const name = `overhead-${pairs}`;
    const run = await measuredRun(context, fake, input, name, OVERHEAD_CONCURRENCY);
    const perConversation = run.result.cpuMs / count;
    const afterStartup = (run.result.cpuMs - startupCpuMs) / count;
    figures.push({
      group: "overhead",
      setting: `CLI, ${thousands(count)} ${shape}, fake 0 ms, concurrency ${OVERHEAD_CONCURRENCY}`,
      value: round(perConversation, 3),
      unit: "CPU ms/conversation",
      ...(pairs === 1
        ? { target: `< ${CPU_TARGET_MS}`, pass: perConversation < CPU_TARGET_MS }
        : {}),
      note: `${thousands(run.result.usage.conversationsPerSecond)} conv/s; ` +
        `${round(afterStartup, 2)} ms/conv after start-up (${seconds(startupCpuMs)} CPU); ` +
        `fake ${round(run.fakeCpuMs / run.result.usage.calls, 2)} ms/call`,
      details: {
        ...runDetails(run.result, count, run.fakeCpuMs),
        cpuMsPerCall: round(run.result.cpuMs / run.result.usage.calls, 3),
        cpuMsPerConversationAfterStartup: round(afterStartup, 3),
        startupCpuMs: Math.round(startupCpuMs),
        startupWallMs: Math.round(startup.result.wallMs),
      },
    });
    context.log(`  ${shape}: ${describe(figures.at(-1)!)}`);

    if (pairs !== 1) continue;
    // The same command again: every thought comes from the cache file the first run filled.
    const rerun = await measuredRun(context, fake, input, name, OVERHEAD_CONCURRENCY);
    const { usage } = rerun.result;
    figures.push({
      group: "cache",
      setting: `CLI rerun of the finished ${thousands(count)} run (all cache hits)`,
      value: Math.round(usage.conversationsPerSecond),
      unit: "conversations/s",
      target: `> ${thousands(CACHE_TARGET_PER_SECOND)}`,
      pass: usage.conversationsPerSecond > CACHE_TARGET_PER_SECOND && usage.cacheHits === count,
      note: `${thousands(usage.cacheHits)} hits, ${usage.calls} calls; ` +
        `${thousands(count / (rerun.result.wallMs / 1000))}/s with start-up`,
      details: runDetails(rerun.result, count, rerun.fakeCpuMs),
    });
    context.log(`  cache rerun: ${describe(figures.at(-1)!)}`);
  }
  return figures;
}

/**
 * Memory: peak RSS of the CLI, then of the server, on a small and a large input with the same
 * settings (0 ms fake, high concurrency). The server's body goes through `curl -T -` when curl
 * is installed, else through a Deno `fetch` with a streamed body.
 *
 * @param context Work directory, sizes and log.
 * @returns CLI small, CLI large, CLI ratio, server small, server large, server ratio.
 */
export async function memoryUse(context: ScenarioContext): Promise<Figure[]> {
  const { memorySmall, memoryLarge } = context.sizes;
  const small = await dataset(context, `bytes-${memorySmall}`, { bytes: memorySmall });
  const large = await dataset(context, `bytes-${memoryLarge}`, { bytes: memoryLarge });
  const figures: Figure[] = [];
  await using fake = await startFake(context.procfs, 0);

  const cliRuns: { info: DatasetInfo; result: CliResult; fakeCpuMs: number }[] = [];
  for (const info of [small, large]) {
    const run = await measuredRun(context, fake, info, `memory-${info.bytes}`, MEMORY_CONCURRENCY);
    cliRuns.push({ info, ...run });
    const note = `${thousands(run.result.usage.conversationsPerSecond)} conv/s, ` +
      `${seconds(run.result.wallMs)}`;
    const details = runDetails(run.result, info.conversations, run.fakeCpuMs);
    figures.push(memoryFigure("CLI", info, run.result.peakRss, note, details));
    context.log(`  CLI ${sizeLabel(info.bytes)}: ${describe(figures.at(-1)!)}`);
  }
  figures.push(ratioFigure("CLI", cliRuns[0].result.peakRss, cliRuns[1].result.peakRss));
  context.log(`  CLI ratio: ${describe(figures.at(-1)!)}`);

  const serverPeaks: number[] = [];
  for (const info of [small, large]) {
    const run = await serverRun(context, fake, info);
    serverPeaks.push(run.peakRss);
    const rate = info.conversations / (run.wallMs / 1000);
    const note = `${run.client}; ${thousands(rate)} conv/s, ${seconds(run.wallMs)}`;
    figures.push(memoryFigure("server", info, run.peakRss, note, {
      client: run.client,
      lines: run.lines,
      wallMs: Math.round(run.wallMs),
      conversationsPerSecond: Math.round(rate),
      serverCpuMs: Math.round(run.cpuMs),
      fakeCpuMs: Math.round(run.fakeCpuMs),
    }));
    context.log(`  server ${sizeLabel(info.bytes)}: ${describe(figures.at(-1)!)}`);
  }
  figures.push(ratioFigure("server", serverPeaks[0], serverPeaks[1]));
  context.log(`  server ratio: ${describe(figures.at(-1)!)}`);
  return figures;
}

/**
 * Time to first line: a client uploads single-turn lines to the server at 10 lines/s with a
 * 200 ms fake behind it; the time from sending the first line to receiving the first output
 * line. The upload is a Deno `fetch` with a paced `ReadableStream` body, so both instants are
 * taken in this process.
 *
 * @param context Work directory, sizes and log.
 * @returns One figure.
 */
export async function firstLine(context: ScenarioContext): Promise<Figure[]> {
  const count = context.sizes.firstLineLines;
  const info = await dataset(context, `single-${count}`, { count });
  const lines = (await Deno.readTextFile(info.path)).split("\n").filter((line) => line !== "");
  await using fake = await startFake(context.procfs, EFFICIENCY_LATENCY_MS);
  await using server = await startServer(context.procfs, fake.url, 64);

  const sentAt: number[] = [];
  const encoder = new TextEncoder();
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next > 0) await sleep(FIRST_LINE_INTERVAL_MS);
      if (next === lines.length) return controller.close();
      sentAt.push(performance.now());
      controller.enqueue(encoder.encode(lines[next++] + "\n"));
    },
  }, { highWaterMark: 0 });
  const response = await fetch(`${server.url}/v1/rephrase`, {
    method: "POST",
    headers: { "content-type": "application/x-ndjson" },
    body,
    duplex: "half",
  } as RequestInit);
  const receivedAt: number[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) {
    const text = decoder.decode(chunk, { stream: true });
    for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) {
      receivedAt.push(performance.now());
    }
  }
  if (receivedAt.length !== lines.length) {
    throw new Error(`Cannot measure first line: ${receivedAt.length} of ${lines.length} came back`);
  }
  const value = receivedAt[0] - sentAt[0];
  const perLine = receivedAt.map((at, i) => at - sentAt[i]).sort((a, b) => a - b);
  const median = perLine[Math.floor(perLine.length / 2)];
  const figure: Figure = {
    group: "first line",
    setting: `server, upload at 10 lines/s, fake 200 ms, ${count} lines`,
    value: Math.round(value),
    unit: "ms",
    target: `< ${FIRST_LINE_TARGET_MS}`,
    pass: value < FIRST_LINE_TARGET_MS,
    note: `every line: median ${Math.round(median)} ms, max ${Math.round(perLine.at(-1)!)} ms; ` +
      "Deno fetch, paced body",
    details: {
      client: "Deno fetch, paced ReadableStream body",
      medianLineLatencyMs: Math.round(median),
      maxLineLatencyMs: Math.round(perLine.at(-1)!),
    },
  };
  context.log(`  ${describe(figure)}`);
  return [figure];
}

/** A dataset under the work directory, written once per name. */
async function dataset(
  context: ScenarioContext,
  name: string,
  options: Parameters<typeof writeDataset>[1],
): Promise<DatasetInfo> {
  const path = join(context.workDir, `${name}.jsonl`);
  const infoPath = `${path}.info.json`;
  try {
    return JSON.parse(await Deno.readTextFile(infoPath)) as DatasetInfo;
  } catch {
    const started = performance.now();
    const info = await writeDataset(path, options);
    await Deno.writeTextFile(infoPath, JSON.stringify(info));
    context.log(
      `  generated ${name}: ${info.conversations.toLocaleString("en")} conversations, ` +
        `${sizeLabel(info.bytes)} in ${seconds(performance.now() - started)}`,
    );
    return info;
  }
}

/**
 * One CLI run with its cache in its output directory (a fresh one the first time a name is
 * used, the same one on a rerun), and the fake's CPU over the same span.
 */
async function measuredRun(
  context: ScenarioContext,
  fake: FakeProcess,
  info: DatasetInfo,
  name: string,
  concurrency: number,
): Promise<{ result: CliResult; fakeCpuMs: number }> {
  const output = join(context.workDir, `out-${name}`);
  const fakeBefore = await fake.cpuMs();
  const result = await runCli(context.procfs, {
    input: info.path,
    output,
    baseURL: fake.url,
    concurrency,
    cache: join(output, "cache.sqlite"),
  });
  const fakeCpuMs = await fake.cpuMs() - fakeBefore;
  if (result.exitCode !== 0 || result.usage.written !== info.conversations) {
    throw new Error(
      `Cannot use run ${name}: exit ${result.exitCode}, ${result.usage.written} of ` +
        `${info.conversations} written\n${result.stderr}`,
    );
  }
  return { result, fakeCpuMs };
}

interface ServerRun {
  readonly client: string;
  readonly lines: number;
  readonly wallMs: number;
  readonly peakRss: number;
  readonly cpuMs: number;
  readonly fakeCpuMs: number;
}

const CURL = "/usr/bin/curl";

/** Sends one dataset through a fresh server in one request and checks every line came back. */
async function serverRun(
  context: ScenarioContext,
  fake: FakeProcess,
  info: DatasetInfo,
): Promise<ServerRun> {
  await using server = await startServer(context.procfs, fake.url, MEMORY_CONCURRENCY);
  const fakeBefore = await fake.cpuMs();
  const cpuBefore = await server.cpuMs();
  const output = join(context.workDir, "server-out.jsonl");
  const url = `${server.url}/v1/rephrase`;
  const watch = watchProcess(context.procfs, server.pid);
  const started = performance.now();
  const client = await exists(CURL) ? "curl -T -" : "Deno fetch, streamed body";
  try {
    if (client === "curl -T -") await curlUpload(url, info.path, output);
    else await fetchUpload(url, info.path, output);
  } finally {
    await watch.stop();
  }
  const wallMs = performance.now() - started;
  const peakRss = Math.max((await watch.stop()).peakRss, (await server.memory())?.peak ?? 0);
  const cpuMs = await server.cpuMs() - cpuBefore;
  const fakeCpuMs = await fake.cpuMs() - fakeBefore;
  const lines = await countLines(output);
  await Deno.remove(output);
  if (lines !== info.conversations) {
    throw new Error(
      `Cannot use the server run: ${lines} of ${info.conversations} lines came back`,
    );
  }
  context.log(`    (${client}, ${seconds(wallMs)})`);
  return { client, lines, wallMs, peakRss, cpuMs, fakeCpuMs };
}

async function curlUpload(url: string, input: string, output: string): Promise<void> {
  // The shell only redirects the file into curl's stdin: `-T -` then streams it chunked.
  const status = await new Deno.Command("sh", {
    args: [
      "-c",
      `exec ${CURL} -sS -N --fail -X POST -T - -H 'content-type: application/x-ndjson' ` +
      `-o "$2" "$3" < "$1"`,
      "sh",
      input,
      output,
      url,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!status.success) throw new Error(`Cannot upload with curl: exit ${status.code}`);
}

async function fetchUpload(url: string, input: string, output: string): Promise<void> {
  using source = await Deno.open(input);
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-ndjson" },
    body: source.readable,
    duplex: "half",
  } as RequestInit);
  using target = await Deno.open(output, { write: true, create: true, truncate: true });
  await response.body!.pipeTo(target.writable, { preventClose: true });
}

async function countLines(path: string): Promise<number> {
  using file = await Deno.open(path);
  let lines = 0;
  for await (const chunk of file.readable) {
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  }
  return lines;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function runDetails(
  result: CliResult,
  conversations: number,
  fakeCpuMs: number,
): Record<string, number> {
  return {
    conversations,
    calls: result.usage.calls,
    cacheHits: result.usage.cacheHits,
    wallMs: Math.round(result.wallMs),
    wallPerSecond: Math.round(conversations / (result.wallMs / 1000)),
    inRunPerSecond: Math.round(result.usage.conversationsPerSecond),
    cpuMs: Math.round(result.cpuMs),
    cpuMsPerConversation: round(result.cpuMs / conversations, 3),
    peakRssMiB: round(result.peakRss / 2 ** 20, 1),
    fakeCpuMs: Math.round(fakeCpuMs),
    fakeCpuMsPerCall: round(fakeCpuMs / Math.max(1, result.usage.calls), 3),
  };
}

function memoryFigure(
  who: string,
  info: DatasetInfo,
  peakRss: number,
  note: string,
  details: Record<string, number | string>,
): Figure {
  return {
    group: "memory",
    setting: `${who}, ${sizeLabel(info.bytes)} input (${thousands(info.conversations)} ` +
      `conversations), fake 0 ms, concurrency ${MEMORY_CONCURRENCY}`,
    value: round(peakRss / 1e6, 1),
    unit: "MB peak RSS",
    target: `< ${MEMORY_ABSOLUTE_TARGET / 1e6}`,
    pass: peakRss < MEMORY_ABSOLUTE_TARGET,
    note,
    details,
  };
}

function ratioFigure(who: string, small: number, large: number): Figure {
  const ratio = large / small;
  return {
    group: "memory",
    setting: `${who}, peak RSS large input / small input`,
    value: round(ratio, 2),
    unit: "ratio",
    target: `<= ${MEMORY_RATIO_TARGET}`,
    pass: ratio <= MEMORY_RATIO_TARGET,
    note: `${round(large / 1e6, 1)} / ${round(small / 1e6, 1)} MB`,
    details: { smallMB: round(small / 1e6, 1), largeMB: round(large / 1e6, 1) },
  };
}

/** One line: value, unit, target and verdict. */
export function describe(figure: Figure): string {
  const verdict = figure.pass === undefined ? "" : figure.pass ? " ok" : " MISSED";
  const target = figure.target ? ` (target ${figure.target})${verdict}` : "";
  return `${figure.value} ${figure.unit}${target}`;
}

/** `12.3 s` */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** `12,345` */
function thousands(value: number): string {
  return Math.round(value).toLocaleString("en");
}

function sizeLabel(bytes: number): string {
  return bytes >= 1e9 ? `${round(bytes / 1e9, 2)} GB` : `${round(bytes / 1e6, 1)} MB`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
