/**
 * The cotfit pipeline, shared by the CLI and the server: bytes in, ordered outcomes out.
 *
 * ```
 * bytes -> decompressed (decompress.ts) -> record texts (lines.ts) -> blank lines skipped ->
 *   limit/sample -> ordered window:
 *   parse (records.ts) -> plan turns (turns.ts) -> thoughts (generate.ts) -> assemble
 * ```
 *
 * Nothing here holds the whole input: memory is bounded by the window times the record size.
 *
 * @module
 */

import { type ContentCoding, decompressStream } from "./decompress.ts";
import type { ThoughtWriter } from "./generate.ts";
import { recordTextStream } from "./lines.ts";
import { mapOrdered } from "./pool.ts";
import { assembleRecord, type Framing, hasThought, parseRecord, RecordError } from "./records.ts";
import {
  limitStream,
  type RecordBudget,
  sampleStream,
  type Selection,
  selectStream,
} from "./sample.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { historyNeedsTokenCount, planTurns } from "./turns.ts";
import type { InputFault, Line, Outcome } from "./types.ts";
import { cutText } from "./text_cut.ts";

/** Longest raw text kept in a reject, so a huge bad line does not bloat the rejects file. */
export const MAX_REJECT_RAW_CHARS = 10_000;

/** Options of {@linkcode rephraseStream}. */
export interface PipelineOptions {
  framing: Framing;
  writeThought: ThoughtWriter;
  /** The input the records come from, passed on to the writer (the debug log names it). */
  source?: string;
  /**
   * Records in progress or waiting for an earlier one; bounds memory.
   *
   * @default {64}
   */
  window?: number;
  /**
   * Total record text, in UTF-16 units, the window may hold; a few huge records then cannot
   * blow memory while a window of many small ones stays wide.
   *
   * @default {64 MiB}
   */
  maxWindowChars?: number;
  /**
   * Awaited before each next record is taken (`mapOrdered`'s `ready`): the CLI and the server
   * hold records back while enough calls already wait for an LLM slot (`whileQueueShort`).
   */
  admit?: () => Promise<void> | undefined;
  /** @default {3000} */
  historyTokens?: number;
  /**
   * Loads the tokenizer that counts history tokens exactly (`loadTokenizer` of tokenizer.ts);
   * called only for a record whose history may not fit the budget by its UTF-8 size.
   *
   * @default {none: such histories are budgeted at 3 characters a token}
   */
  loadTokenizer?: () => Promise<Pick<Tokenizer, "countTokensUpTo">>;
  /** @default {16 MiB} */
  maxLineBytes?: number;
  /** `"auto"` also accepts a JSON array of records (used for `.json` files). @default {"jsonl"} */
  format?: "jsonl" | "auto";
  /**
   * How the bytes are encoded (a server body's `Content-Encoding`): `"sniff"` tells gzip and UTF-16
   * by their first bytes (see `decompress.ts`), else reads UTF-8; `"identity"` is UTF-8, known.
   *
   * @default {"sniff"}
   */
  coding?: ContentCoding | "sniff" | "identity";
  /** Keep only the first N records; a shared budget spans inputs read one after another. */
  limit?: number | RecordBudget | null;
  /** Keep a uniform random sample of exactly N records (needs the whole input before output). */
  sample?: { size: number; seed: number } | null;
  /** Keep the records a selection picks: a sample that spans inputs, counted beforehand. */
  select?: Selection | null;
  /** Called once per blank line skipped. */
  onBlank?: (line: number) => void;
  /** Called once per answer that already had a thought in the framing's format, kept as is. */
  onKeptThought?: (line: number) => void;
  /** Aborts in-flight and waiting LLM calls (a server client went away). */
  signal?: AbortSignal;
  /** Stops taking new records; those already taken finish (the CLI's first ^C). */
  stop?: AbortSignal;
  /**
   * The run is stopping, so a failed call is not retried (see `WriteContext.stopping`).
   *
   * @default {`stop`}
   */
  stopping?: AbortSignal;
}

/**
 * Rephrases a byte stream of records into outcomes, one per non-blank line, in input order.
 * Bad records and turns without a valid thought become `reject` outcomes, and so does compressed or
 * UTF-16 data that breaks off (one `final` reject, on the line after the last one read, or on the
 * record the break cut in two); only {@linkcode UpstreamFatalError} and aborts error the stream.
 *
 * @param options Framing, the thought writer and limits.
 * @returns A transform from raw bytes to outcomes.
 */
export function rephraseStream(options: PipelineOptions): {
  readable: ReadableStream<Outcome>;
  writable: WritableStream<Uint8Array>;
} {
  const records = recordLines(options);
  let selected = records.readable;
  if (options.limit != null) selected = selected.pipeThrough(limitStream<Line>(options.limit));
  if (options.sample) {
    selected = selected.pipeThrough(sampleStream<Line>(options.sample.size, options.sample.seed));
  }
  if (options.select) selected = selected.pipeThrough(selectStream<Line>(options.select));
  const readable = selected.pipeThrough(
    mapOrdered((line: Line) => processLine(line, options), {
      window: options.window ?? 64,
      weigh: (line) => "text" in line ? line.text.length : 0,
      maxWeight: options.maxWindowChars ?? 64 * 1024 * 1024,
      ready: options.admit,
    }),
  );
  return { readable, writable: records.writable };
}

/**
 * Counts the records a byte stream holds as {@linkcode rephraseStream} reads them: non-blank
 * record texts, and the one reject that data breaking off adds. For a sample spanning several
 * inputs, which needs their total before it picks.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { countRecords } from "./pipeline.ts";
 *
 * const body = new TextEncoder().encode('{"a":1}\n\n{"b":2}\nbroken\n');
 * assert.equal(await countRecords(ReadableStream.from([body]), {}), 3);
 * ```
 *
 * @param source The input's bytes.
 * @param options How it is read, as for {@linkcode rephraseStream}.
 * @returns How many records (and rejects of broken-off data) it holds.
 */
export async function countRecords(
  source: ReadableStream<Uint8Array>,
  options: Pick<PipelineOptions, "maxLineBytes" | "format" | "coding">,
): Promise<number> {
  const records = recordLines(options);
  const feeding = source.pipeTo(records.writable);
  let count = 0;
  for await (const _ of records.readable) count++;
  await feeding;
  return count;
}

/** Bytes in, non-blank record texts out: decompressed, decoded, split (see `lines.ts`). */
function recordLines(
  options: Pick<PipelineOptions, "maxLineBytes" | "format" | "coding" | "onBlank" | "stop">,
): { readable: ReadableStream<Line>; writable: WritableStream<Uint8Array> } {
  let fault: InputFault | null = null;
  // Plain input the caller already knows as such skips the decompressor's stream hops.
  const bytes = options.coding === "identity" ? null : decompressStream({
    coding: options.coding,
    onFault: (reported) => void (fault ??= reported),
  });
  // The decompressor reports a fault before it ends its output, so the texts' end knows of it.
  const texts = recordTextStream({
    maxLineBytes: options.maxLineBytes,
    format: options.format,
    fault: () => fault,
  });
  const readable = (bytes ? bytes.readable.pipeThrough(texts) : texts.readable)
    .pipeThrough(skipBlank({ onBlank: options.onBlank, stop: options.stop }));
  return { readable, writable: bytes?.writable ?? texts.writable };
}

/** Drops blank lines, counting them. */
function skipBlank(
  hooks: { onBlank?: (line: number) => void; stop?: AbortSignal },
): TransformStream<Line, Line> {
  const { onBlank, stop } = hooks;
  return new TransformStream({
    transform(line, controller) {
      // Input already split into lines may sit in buffers: stop here, not only at the source.
      if (stop?.aborted) controller.terminate();
      else if ("text" in line && line.text.trim() === "") onBlank?.(line.line);
      else controller.enqueue(line);
    },
  });
}

async function processLine(line: Line, options: PipelineOptions): Promise<Outcome> {
  if (!("text" in line)) {
    const { error: reason, preview: raw, final } = line;
    return { kind: "reject", line: line.line, reason, raw, ...(final && { final }) };
  }
  const reject = (reason: string): Outcome => ({
    kind: "reject",
    line: line.line,
    reason,
    raw: cutText(line.text, MAX_REJECT_RAW_CHARS, "…"),
  });

  let conversation;
  try {
    conversation = parseRecord(line.text, line.line);
  } catch (error) {
    if (error instanceof RecordError) return reject(error.reason);
    throw error;
  }
  const { historyTokens, loadTokenizer } = options;
  // Most histories fit by their UTF-8 size alone: only the others wait for the tokenizer (for
  // the rest planTurns counts nothing, so its default counter is never called).
  const tokenizer = loadTokenizer && historyNeedsTokenCount(conversation, { historyTokens })
    ? await loadTokenizer()
    : undefined;
  const planned = planTurns(conversation, {
    historyTokens,
    countTokens: tokenizer?.countTokensUpTo,
  });
  if (planned.length === 0) return reject("no assistant turn answers a user turn");
  // An answer that already reasons, in the output format or its own, is kept as it is.
  const requests = planned.filter((request) =>
    conversation.turns[request.turnIndex].reasoned !== true &&
    !hasThought(options.framing, request.answer)
  );
  for (let kept = planned.length - requests.length; kept > 0; kept--) {
    options.onKeptThought?.(line.line);
  }

  const context = {
    line: line.line,
    source: options.source,
    signal: options.signal,
    stopping: options.stopping ?? options.stop,
    framing: options.framing,
  };
  // Most records ask for one thought: awaited alone, it keeps no Promise.all state while it waits.
  const results = requests.length === 1
    ? [await options.writeThought(requests[0], context)]
    : await Promise.all(requests.map((request) => options.writeThought(request, context)));
  const thoughts = new Map<number, string>();
  for (let i = 0; i < results.length; i++) {
    const result = results[i];
    if (!result.ok) return reject(`turn ${requests[i].turnIndex + 1}: ${result.reason}`);
    thoughts.set(requests[i].turnIndex, result.thought);
  }
  return {
    kind: "record",
    line: line.line,
    json: assembleRecord(conversation, thoughts, options.framing),
  };
}
