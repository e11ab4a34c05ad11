/**
 * `--dry-run`: renders every prompt and counts what a real run would send and pay, without
 * calling the LLM. It plugs into the pipeline as a {@linkcode ThoughtWriter} that consults the
 * cache and dedupes like the real one, then returns an empty thought.
 *
 * @module
 */

import { cacheKey, type ThoughtCache } from "./cache.ts";
import type { ThoughtWriter } from "./generate.ts";
import { type PromptTemplate, renderMessages } from "./prompt.ts";
import { loadTokenizer } from "./tokenizer.ts";
import type { ChatMessage } from "./types.ts";
import { formatCost, formatCount, type Prices } from "./usage.ts";

/** What a real run would do, as counted by the dry run. */
export interface DryRunEstimate {
  /** Assistant turns that need a thought. */
  turns: number;
  /** Of those, already in the cache. */
  cacheHits: number;
  /** Of those, identical to an earlier turn of this run (generated once). */
  duplicates: number;
  /** LLM calls needed, before retries. */
  calls: number;
  /** Prompt tokens of those calls, counted with the tokenizer. */
  inputTokens: number;
  /** Completion tokens, estimated from the answers' lengths. */
  outputTokens: number;
}

/** Options of {@linkcode createDryRunWriter}. */
export interface DryRunOptions {
  template: PromptTemplate;
  cache: ThoughtCache;
  model: string;
  promptId: string;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  /** Further request fields (`--extra-body`), part of the cache key. */
  extraBody?: Readonly<Record<string, unknown>> | null;
  maxThoughtTokens: number;
}

// Chat framing per message (role, separators) and the reply priming, as OpenAI documents it.
const MESSAGE_OVERHEAD_TOKENS = 4;
const REPLY_PRIMING_TOKENS = 3;
// A thought runs about a third of its answer plus a fixed opening, and the tags around it.
const THOUGHT_BASE_TOKENS = 45;
const THOUGHT_PER_ANSWER_TOKEN = 0.35;
const THOUGHT_TAG_TOKENS = 10;

/**
 * Creates a writer that counts instead of calling, and the estimate it fills in.
 *
 * @param options The same template, cache and sampling parameters a real run would use.
 * @returns The writer for the pipeline and the live estimate.
 */
export function createDryRunWriter(
  options: DryRunOptions,
): { writeThought: ThoughtWriter; estimate: DryRunEstimate } {
  const estimate: DryRunEstimate = {
    turns: 0,
    cacheHits: 0,
    duplicates: 0,
    calls: 0,
    inputTokens: 0,
    outputTokens: 0,
  };
  const seen = new Set<string>();
  let prefixTokens: number | null = null;

  function promptTokens(
    messages: readonly ChatMessage[],
    countTokens: (text: string) => number,
  ): number {
    // The system message and few-shot examples are the same on every call: count them once.
    prefixTokens ??= messages.slice(0, -1).reduce(
      (sum, message) => sum + countTokens(message.content) + MESSAGE_OVERHEAD_TOKENS,
      REPLY_PRIMING_TOKENS,
    );
    return prefixTokens + countTokens(messages.at(-1)!.content) + MESSAGE_OVERHEAD_TOKENS;
  }

  const writeThought: ThoughtWriter = async (request) => {
    estimate.turns++;
    const messages = renderMessages(options.template, request);
    const key = cacheKey({
      model: options.model,
      messages,
      temperature: options.temperature,
      topP: options.topP,
      maxTokens: options.maxTokens,
      promptId: options.promptId,
      extraBody: options.extraBody,
    });
    if (options.cache.get(key) !== undefined) estimate.cacheHits++;
    else if (seen.has(key)) estimate.duplicates++;
    else {
      seen.add(key);
      estimate.calls++;
      // Counting is what a dry run is for: it always loads the tokenizer.
      const { countTokens } = await loadTokenizer();
      estimate.inputTokens += promptTokens(messages, countTokens);
      const thought = THOUGHT_BASE_TOKENS +
        THOUGHT_PER_ANSWER_TOKEN *
          Math.min(countTokens(request.answer), 4 * options.maxThoughtTokens);
      estimate.outputTokens += Math.round(Math.min(thought, options.maxThoughtTokens)) +
        THOUGHT_TAG_TOKENS;
    }
    return { ok: true, thought: "" };
  };
  return { writeThought, estimate };
}

/**
 * Renders the dry-run report for stderr.
 *
 * @param estimate The filled-in estimate.
 * @param records Records read, rejected and blank lines skipped.
 * @param prices Prices per million tokens, or `null` when unknown.
 * @returns Lines joined with `\n`.
 */
export function formatDryRun(
  estimate: DryRunEstimate,
  records: { read: number; rejected: number; skipped: number },
  prices: Prices | null,
): string {
  const cost = prices
    ? `~${
      formatCost(
        (estimate.inputTokens * prices.inputPerMillion +
          estimate.outputTokens * prices.outputPerMillion) / 1e6,
      )
    }`
    : "unknown (pass --price-input and --price-output)";
  return [
    "dry run: no LLM call was made, no output written",
    `records   ${formatCount(records.read)} read, ${
      formatCount(records.rejected)
    } would be rejected, ${formatCount(records.skipped)} blank skipped`,
    `turns     ${formatCount(estimate.turns)} need a thought`,
    `calls     ${formatCount(estimate.calls)} needed (${formatCount(estimate.cacheHits)} cached, ${
      formatCount(estimate.duplicates)
    } duplicates), before retries`,
    `tokens    ~${formatCount(estimate.inputTokens)} in (tokenizer), ~${
      formatCount(estimate.outputTokens)
    } out (estimate)`,
    `cost      ${cost}`,
  ].join("\n");
}
