/**
 * The CLI's conversion job: inputs -> pipeline -> atomic output files (or stdout), rejects,
 * cache, usage, progress and the final summary. `main.ts` parses flags and calls this.
 *
 * Requires `--allow-read`, `--allow-write` (outputs, cache) and `--allow-net` (the LLM endpoint).
 *
 * @module
 */

import { join } from "node:path";
import type { Options } from "./config.ts";
import { decompressStream, needsDecoding, PARQUET_TO_JSONL } from "./decompress.ts";
import { createEngine, type Engine } from "./engine.ts";
import { createDryRunWriter, formatDryRun } from "./dry_run.ts";
import { type ThoughtWriter, UpstreamFatalError } from "./generate.ts";
import { openInput } from "./input_file.ts";
import {
  InputError,
  type InputPlan,
  InputReadError,
  planInputs,
  type SkipReason,
} from "./inputs.ts";
import { type Layout, sniffLayout } from "./lines.ts";
import { countRecords, rephraseStream } from "./pipeline.ts";
import { whileQueueShort } from "./pool.ts";
import { type RecordBudget, type Selection, selection } from "./sample.ts";
import { countLines, createProgress, type Progress, type ProgressState } from "./progress.ts";
import { lockOutputFolder } from "./output_lock.ts";
import { openAtomicFile, streamSink, type TextSink } from "./sink.ts";
import { loadTokenizer } from "./tokenizer.ts";
import type { Outcome } from "./types.ts";
import { formatCount, formatSummary } from "./usage.ts";
import { WriteError } from "./write_error.ts";

/** What the job needs from its process; injected so tests can drive it. */
export interface RunEnvironment {
  stdin: ReadableStream<Uint8Array>;
  stdout: WritableStream<Uint8Array>;
  /** Progress, warnings and the summary. */
  stderr: (text: string) => void;
  stderrIsTTY: boolean;
  /** Aborted on the first interrupt: stop reading input, finish what is in flight. */
  stop: AbortSignal;
  now: () => number;
}

/** Exit codes of the CLI; `readerGone` is a shell's for a process killed by SIGPIPE. */
export const EXIT = { ok: 0, rejected: 1, usage: 2, interrupted: 130, readerGone: 141 } as const;

/**
 * Runs the conversion described by `options` and returns the exit code: 0 when every record was
 * written, 1 when some were rejected, 2 when the upstream refused the run, an input could not
 * be read or a file (or stdout) could not be written, 130 when interrupted, 141 when the reader
 * of stdout went away.
 *
 * @param options Resolved options.
 * @param env Process I/O.
 * @returns The exit code.
 * @throws {InputError} On unusable inputs, found before the run starts (the caller maps it to
 * exit 2).
 */
export async function runConversion(options: Options, env: RunEnvironment): Promise<number> {
  const skipped = new Map<SkipReason, string[]>();
  const plans = await planInputs(options.inputs, options.output, {
    rejects: options.rejects,
    // Checked in a dry run too, which writes neither, so that it finds what the run would refuse.
    debugLog: options.debugLog,
    cache: plannedCachePath(options),
  }, (path, why) => {
    skipped.set(why, [...skipped.get(why) ?? [], path]);
  });
  for (const [why, paths] of skipped) env.stderr(skippedWarning(why, paths));
  if (options.rejects !== null && !options.inputs.includes("-")) {
    env.stderr(
      `warning: --rejects "${options.rejects}" is for stdin only; the rejects of a file go ` +
        "beside its output, as NAME.rejects.jsonl\n",
    );
  }
  // Held to the end: a second run into the folder is refused before it reads or calls anything.
  using _folder = options.output && !options.dryRun
    ? lockOutputFolder(
      options.output,
      [plannedCachePath(options), options.debugLog, options.rejects].filter((file) =>
        file !== null
      ),
    )
    : null;
  // The total only feeds the progress line: a --quiet run does not read its inputs twice.
  const total = options.quiet
    ? null
    : selectedTotal(await countTotal(plans, options.maxLineBytes), options);
  // --quiet leaves stderr to errors (and to rejects, when they go there).
  const say = options.quiet ? () => {} : env.stderr;
  const progress = createProgress({
    write: say,
    isTTY: env.stderrIsTTY,
    now: env.now,
    total,
  });
  // A dry run makes no call to log, and writes no file: an old log stays as it is.
  const debugLog = options.debugLog && !options.dryRun
    ? await openAtomicFile(options.debugLog)
    : null;
  let engine: Engine;
  try {
    engine = await createEngine(options, {
      cachePath: await runCachePath(options),
      debugLog,
      notice: (text) => progress.message(text),
      now: env.now,
    });
  } catch (error) {
    // A prompt or cache that cannot be used stops the run before any call: no log to keep.
    await debugLog?.discard();
    throw error;
  }
  const { meter } = engine;
  const dryRun = options.dryRun
    ? createDryRunWriter({
      template: engine.template,
      cache: engine.cache,
      model: options.model,
      promptId: engine.promptId,
      temperature: options.temperature,
      topP: options.topP,
      maxTokens: options.maxTokens,
      extraBody: options.extraBody,
      maxThoughtTokens: options.maxThoughtTokens,
    })
    : null;
  const progressState = (): ProgressState => {
    const snapshot = meter.snapshot(env.now());
    return {
      done: snapshot.written + snapshot.rejected + snapshot.skipped,
      total,
      rejected: snapshot.rejected,
      retries: snapshot.retries,
      inputTokens: snapshot.inputTokens,
      outputTokens: snapshot.outputTokens,
      cost: meter.cost(options.prices),
      inFlight: engine.limiter.active,
    };
  };

  // Why the run stopped before its end; the summary and usage file still say what it spent.
  let stopped: Error | null = null;
  // Inputs whose output this run has written whole (or, interrupted, up to where it stopped).
  const finished = new Set<InputPlan>();
  try {
    // --limit and --sample are the run's, not each file's: one budget and one sample span them.
    const budget = options.limit === null ? null : { remaining: options.limit };
    const picked = await runSelection(plans, options, say);
    for (const [index, plan] of plans.entries()) {
      if (env.stop.aborted) break;
      // The run has every record it takes: the files left are not read, and get no output.
      if (budget?.remaining === 0 || picked?.needed === 0) {
        if (!options.dryRun) await removeStaleOutputs(plans.slice(index), env.stderr);
        break;
      }
      await convertOne(plan, {
        budget,
        picked,
        options,
        env,
        engine,
        progress,
        progressState,
        writeThought: dryRun?.writeThought ?? engine.writeThought,
        dryRun: dryRun !== null,
      });
      finished.add(plan);
    }
  } catch (error) {
    // The input read when it was planned no longer is, or a file or stdout cannot be written:
    // stop as for a refusing upstream, with the files done so far complete and the one being
    // written not.
    if (!isFatalStop(error)) throw error;
    stopped = error;
  } finally {
    // Closing writes the cache's last puts and the debug log, which may fail the same way.
    await engine.close().catch((error) => {
      if (!isFatalStop(error)) throw error;
      stopped ??= error;
    });
  }

  progress.finish(progressState());
  const snapshot = meter.snapshot(env.now());
  const fail = (error: Error) => {
    env.stderr(`error: ${error.message}\n`);
    return EXIT.usage;
  };
  if (dryRun) {
    if (stopped) return fail(stopped);
    const records = {
      read: snapshot.conversations,
      rejected: snapshot.rejected,
      skipped: snapshot.skipped,
    };
    // The report is what a dry run is for: --quiet only drops the progress line.
    env.stderr(formatDryRun(dryRun.estimate, records, options.prices) + "\n");
    return env.stop.aborted ? EXIT.interrupted : EXIT.ok;
  }
  say(formatSummary(snapshot, options.prices) + "\n");
  if (stopped || env.stop.aborted) {
    await noteEarlierOutputs(plans.filter((plan) => !finished.has(plan)), env.stderr);
  }
  let usageLost = false;
  if (options.output) {
    const usage = {
      ...snapshot,
      cost: meter.cost(options.prices),
      interrupted: env.stop.aborted,
      ...(stopped && { error: stopped.message }),
    };
    const failure = await writeUsage(options.output, usage);
    // On a full disk this goes too: the summary above still says what was spent.
    if (failure) env.stderr(`error: ${failure.message}\n`);
    usageLost = failure !== null;
  }
  if (stopped instanceof WriteError && stopped.readerGone) {
    // `| head` closed stdout on purpose; whoever reads it wants nothing more, so no "error:".
    say("stopped: stdout was closed by the command reading it; no further records are generated\n");
    return EXIT.readerGone;
  }
  if (stopped) return fail(stopped);
  if (usageLost) return EXIT.usage;
  if (env.stop.aborted) return EXIT.interrupted;
  return snapshot.rejected > 0 ? EXIT.rejected : EXIT.ok;
}

interface ConvertContext {
  options: Options;
  /** What is left of `--limit` for the run, `null` without one. */
  budget: RecordBudget | null;
  /** `--sample` over several inputs, `null` otherwise (one input samples itself in one pass). */
  picked: Selection | null;
  env: RunEnvironment;
  engine: Engine;
  writeThought: ThoughtWriter;
  /** Count only: no output or rejects file is written. */
  dryRun: boolean;
  progress: Progress;
  progressState: () => ProgressState;
}

async function convertOne(plan: InputPlan, context: ConvertContext): Promise<void> {
  const { options, env, engine, progress } = context;
  const { meter } = engine;
  const { read, isArray, coding } = await lookAt(plan, options.maxLineBytes);
  const source = plan.input === "-" ? env.stdin : await openInput(plan.input);
  const out: TextSink = context.dryRun
    ? nullSink()
    : plan.output
    ? await openAtomicFile(plan.output)
    : streamSink(env.stdout, "stdout");
  // Opened on the first reject, so a clean run leaves no rejects file.
  const rejects: { sink: TextSink | null } = { sink: null };
  const openRejects = async () =>
    rejects.sink ??= context.dryRun
      ? nullSink()
      : plan.rejects
      ? await openAtomicFile(plan.rejects)
      : stderrSink(env);

  // Aborted when this file stops early: nothing more is spent on records it will not write.
  const calls = new AbortController();
  const pipeline = rephraseStream({
    framing: { preface: options.cotPreface, suffix: options.cotSuffix },
    writeThought: context.writeThought,
    source: plan.input,
    // Wide enough that a record waiting out a backoff does not stall the ones behind it; the
    // pipeline also caps the window's text, so memory stays bounded.
    window: Math.max(256, options.concurrency * 4),
    // But a record starts only while few calls wait for a slot: at concurrency 1024 this cut peak
    // RSS from about 270 to 210 MB, and the first calls' wait behind rendering from 0.8 to 0.5 s.
    admit: whileQueueShort(context.engine.limiter, options.concurrency),
    historyTokens: options.historyTokens,
    loadTokenizer,
    maxLineBytes: options.maxLineBytes,
    format: read,
    coding,
    limit: context.budget,
    sample: options.sample && !context.picked ? { size: options.sample, seed: options.seed } : null,
    select: context.picked,
    onBlank: () => meter.addRecord("skipped"),
    onKeptThought: () => meter.addKeptThought(),
    signal: calls.signal,
    stop: env.stop,
  });
  // On interrupt, stop reading but close (not abort) the pipeline so in-flight records finish.
  const feeding = source.pipeTo(pipeline.writable, { signal: env.stop, preventAbort: true })
    .catch(async (error) => {
      if (env.stop.aborted) await pipeline.writable.close().catch(() => {});
      else await pipeline.writable.abort(error).catch(() => {});
    });

  let written = 0;
  let rejected = 0;
  let rejectsKept = false;
  try {
    if (isArray) await out.write("[\n");
    for await (const outcome of pipeline.readable) {
      await route(outcome);
      // A snapshot per record is measurable on a cache rerun; quiet mode draws nothing anyway.
      if (!options.quiet) progress.update(context.progressState());
    }
    if (isArray) await out.write(written > 0 ? "\n]\n" : "]\n");
    await feeding;
    // Rejects first: a file and its rejects are kept together or dropped together.
    if (rejects.sink) await rejects.sink.commit();
    else if (plan.rejects && !context.dryRun) await Deno.remove(plan.rejects).catch(() => {});
    rejectsKept = rejects.sink !== null && plan.rejects !== null && !context.dryRun;
    await out.commit();
  } catch (error) {
    calls.abort(error);
    await out.discard();
    await rejects.sink?.discard();
    if (rejectsKept && plan.rejects) await Deno.remove(plan.rejects).catch(() => {});
    // What went to stdout or stderr is out already; what went to a file goes with it.
    if (!context.dryRun) {
      meter.discardRecords(plan.output ? written : 0, plan.rejects ? rejected : 0);
    }
    throw error;
  }

  async function route(outcome: Outcome) {
    meter.addConversation();
    // Counted before the write: if it fails, the catch above takes it back with the file's
    // others; on stdout or stderr, where the others are out already, only this one.
    if (outcome.kind === "record") {
      const first = written === 0;
      meter.addRecord("written");
      written++;
      try {
        if (isArray) await out.write((first ? "" : ",\n") + outcome.json);
        else await out.write(outcome.json, "\n");
      } catch (error) {
        if (!plan.output && !context.dryRun) meter.discardRecords(1, 0);
        throw error;
      }
      return;
    }
    meter.addRecord("rejected");
    rejected++;
    try {
      const sink = await openRejects();
      await sink.write(
        JSON.stringify({
          file: plan.input,
          line: outcome.line,
          reason: outcome.reason,
          raw: outcome.raw,
        }),
        "\n",
      );
    } catch (error) {
      if (!plan.rejects && !context.dryRun) meter.discardRecords(0, 1);
      throw error;
    }
  }
}

/**
 * Removes what an earlier run wrote for inputs this one does not read (`--limit`, `--sample`), so
 * the output folder holds this run's records alone, as usage.json counts them.
 */
async function removeStaleOutputs(
  unread: readonly InputPlan[],
  write: (text: string) => void,
): Promise<void> {
  const removed: string[] = [];
  for (const path of filesOf(unread)) {
    try {
      await Deno.remove(path);
      removed.push(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  if (removed.length === 0) return;
  write(
    `note: removed ${listed(removed)}: an earlier run's output of inputs this run does not read\n`,
  );
}

/**
 * Names the outputs an earlier run left for inputs a stopped run did not finish: kept, since a
 * rerun replaces them (from the cache, at no cost with the same settings), but not this run's.
 */
async function noteEarlierOutputs(
  unfinished: readonly InputPlan[],
  write: (text: string) => void,
): Promise<void> {
  const earlier: string[] = [];
  for (const path of filesOf(unfinished)) {
    if (await Deno.lstat(path).then(() => true, () => false)) earlier.push(path);
  }
  if (earlier.length === 0) return;
  const [is, them] = earlier.length === 1 ? ["is", "it"] : ["are", "them"];
  write(
    `note: ${listed(earlier)} ${is} from an earlier run: this one stopped before writing ` +
      `${them}; run it again to replace ${them}\n`,
  );
}

/** The output and rejects files the plans would write. */
function filesOf(plans: readonly InputPlan[]): string[] {
  return plans.flatMap((plan) => [plan.output, plan.rejects].filter((path) => path !== null));
}

/** Up to three paths, quoted, and how many more. */
function listed(paths: readonly string[]): string {
  return paths.slice(0, 3).map((path) => `"${path}"`).join(", ") +
    (paths.length > 3 ? ` and ${paths.length - 3} more` : "");
}

/** One warning for the files of a kind that folders held but cotfit did not read. */
function skippedWarning(why: SkipReason, paths: readonly string[]): string {
  const shown = listed(paths.toSorted());
  const advice = why === "parquet"
    ? `cotfit does not read Parquet; convert to JSONL first (${PARQUET_TO_JSONL})`
    : why === "metadata"
    ? "Hugging Face dataset metadata, not records; pass one by name to read it"
    : "their names are those of cotfit's rejects and usage files; pass one by name to read it";
  return `warning: not read: ${shown}: ${advice}\n`;
}

function nullSink(): TextSink {
  return {
    write: () => Promise.resolve(),
    commit: () => Promise.resolve(),
    discard: () => Promise.resolve(),
  };
}

function stderrSink(env: RunEnvironment): TextSink {
  return {
    write(text, end) {
      env.stderr(end === undefined ? text : text + end);
      return Promise.resolve();
    },
    commit: () => Promise.resolve(),
    discard: () => Promise.resolve(),
  };
}

/**
 * For `--sample` over several inputs, a selection over all their records, counted first (a
 * reservoir per file would take N from each, and one over the run could write no file before
 * the last was read). One input keeps the one-pass reservoir, so stdin can be sampled.
 */
async function runSelection(
  plans: readonly InputPlan[],
  options: Options,
  say: (text: string) => void,
): Promise<Selection | null> {
  if (options.sample === null || plans.length < 2) return null;
  const once = plans.find((plan) => !plan.regular);
  if (once) {
    throw new InputError(
      `--sample over several inputs reads each twice (to count, then to pick), and "${once.input}" ` +
        "can be read only once: sample it alone, or save it to a file first",
    );
  }
  say(`counting the records of ${formatCount(plans.length)} inputs to sample them as one\n`);
  let total = 0;
  for (const plan of plans) {
    const { read, coding } = await lookAt(plan, options.maxLineBytes);
    const source = await openInput(plan.input);
    total += await countRecords(source, {
      maxLineBytes: options.maxLineBytes,
      format: read,
      coding,
    })
      .catch((error) => {
        throw new InputReadError(plan.input, error);
      });
  }
  // --limit takes the first records before the sample picks among them.
  return selection(options.sample, Math.min(total, options.limit ?? Infinity), options.seed);
}

/**
 * Why a run may stop early, counted and reported like any run (summary, usage file); any other
 * error is a bug.
 */
function isFatalStop(error: unknown): error is Error {
  return error instanceof UpstreamFatalError || error instanceof InputReadError ||
    error instanceof WriteError;
}

/**
 * Writes `usage.json` into `output`; a file it could not finish is removed rather than left
 * truncated.
 *
 * @returns `null`, or why it could not be written.
 */
async function writeUsage(output: string, usage: object): Promise<WriteError | null> {
  const path = join(output, "usage.json");
  try {
    await Deno.mkdir(output, { recursive: true });
    await Deno.writeTextFile(path, JSON.stringify(usage, null, 2) + "\n");
    return null;
  } catch (error) {
    await Deno.remove(path).catch(() => {});
    return new WriteError(`"${path}"`, error);
  }
}

/** The persistent cache: `--cache`, else beside the outputs; stdin-to-stdout runs keep none. */
function plannedCachePath(options: Options): string | null {
  if (options.noCache) return null;
  return options.cache ?? (options.output ? join(options.output, ".cotfit-cache.sqlite") : null);
}

/** The cache the run opens: a dry run only reads an existing one, so it leaves nothing behind. */
async function runCachePath(options: Options): Promise<string | null> {
  const path = plannedCachePath(options);
  if (path === null || !options.dryRun) return path;
  return await Deno.stat(path).then(() => path, () => null);
}

async function countTotal(
  plans: readonly InputPlan[],
  maxLineBytes: number,
): Promise<number | null> {
  let total = 0;
  for (const plan of plans) {
    // A pipe read twice would lose its records to the count.
    if (!plan.regular) return null;
    const { read, coding } = await lookAt(plan, maxLineBytes);
    if (read === "auto" || coding !== "identity") return null;
    total += await countLines(plan.input).catch((error) => {
      throw new InputReadError(plan.input, error);
    });
  }
  return total;
}

function selectedTotal(total: number | null, options: Options): number | null {
  const cap = Math.min(options.limit ?? Infinity, options.sample ?? Infinity);
  if (cap === Infinity) return total;
  return total === null ? cap : Math.min(total, cap);
}

/** Whether a file starts as compressed data or UTF-16; plain files skip the decompressor. */
async function needsDecoder(path: string): Promise<boolean> {
  const reader = (await openInput(path)).getReader();
  try {
    const { value } = await reader.read();
    return needsDecoding(value?.subarray(0, 8) ?? new Uint8Array());
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/**
 * How an input is read, from its first bytes: its format, whether its records are written back
 * as a JSON array, and whether it goes through the decoder.
 */
interface InputLook {
  readonly read: "jsonl" | "auto";
  readonly isArray: boolean;
  readonly coding: "identity" | "sniff";
}

// Looked at once per input, for the progress total and for the conversion.
const looks = new WeakMap<InputPlan, Promise<InputLook>>();

function lookAt(plan: InputPlan, maxLineBytes: number): Promise<InputLook> {
  let look = looks.get(plan);
  if (look === undefined) looks.set(plan, look = examine(plan, maxLineBytes));
  return look;
}

/**
 * A `.json` file holding an array is written back as one; a `.jsonl` file that is really a JSON
 * array (or pretty-printed objects, a first line that is `{` alone) is read as one too, but
 * written as its name says, JSONL, instead of being rejected line by line. JSONL of bare turn
 * lists, which starts with `[` too, is JSONL whatever the name.
 */
async function examine(plan: InputPlan, maxLineBytes: number): Promise<InputLook> {
  // Stdin or a pipe, looked at as it is read: its records are written as JSONL.
  if (!plan.regular) return { read: "auto", isArray: false, coding: "sniff" };
  const layout = await layoutOf(plan.input, maxLineBytes);
  return {
    read: plan.format === "auto" || layout !== "lines" ? "auto" : "jsonl",
    isArray: plan.format === "auto" && layout === "array",
    coding: await needsDecoder(plan.input) ? "sniff" : "identity",
  };
}

/**
 * How a file's records are laid out, as the conversion will find it: through the decompressor,
 * so a `.json.gz` array is an array too.
 */
async function layoutOf(path: string, maxLineBytes: number): Promise<Layout> {
  const bytes = await openInput(path);
  return await sniffLayout(bytes.pipeThrough(decompressStream({ onFault() {} })), {
    maxLineBytes,
  });
}
