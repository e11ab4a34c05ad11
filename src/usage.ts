/**
 * Prompt token estimates, cost and the run's usage meter. Pure: the token counter and times are
 * passed in by the caller.
 *
 * @module
 */

import type { ChatMessage, TokenUsage } from "./types.ts";

/**
 * OpenAI's documented chat framing: 3 tokens wrap each message, its role is 1 more token
 * (all of `system`, `user`, `assistant` are single tokens), and 3 prime the reply.
 */
const TOKENS_PER_MESSAGE = 3 + 1;
const TOKENS_PER_REPLY = 3;

/**
 * Estimates the prompt tokens of a chat request: message texts plus the per-message framing
 * OpenAI documents. Used when a server omits `usage`.
 *
 * @param messages The messages as sent.
 * @param countTokens Counts the tokens of one text: a loaded tokenizer's (tokenizer.ts).
 * @returns The estimated prompt tokens.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { countMessageTokens } from "./usage.ts";
 * import { loadTokenizer } from "./tokenizer.ts";
 *
 * const { countTokens } = await loadTokenizer();
 * // 4 framing + 4 text ("Hello, world!") + 3 reply priming
 * assert.equal(countMessageTokens([{ role: "user", content: "Hello, world!" }], countTokens), 11);
 * ```
 */
export function countMessageTokens(
  messages: readonly ChatMessage[],
  countTokens: (text: string) => number,
): number {
  let total = TOKENS_PER_REPLY;
  for (const message of messages) total += TOKENS_PER_MESSAGE + countTokens(message.content);
  return total;
}

/** Prices of a model in USD per million tokens. */
export interface Prices {
  /** USD per million prompt tokens. */
  readonly inputPerMillion: number;
  /** USD per million completion tokens. */
  readonly outputPerMillion: number;
}

/**
 * The cost in USD of the given token counts.
 *
 * @param inputTokens Prompt tokens.
 * @param outputTokens Completion tokens.
 * @param prices The model's prices.
 * @returns USD.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { costOf } from "./usage.ts";
 *
 * const prices = { inputPerMillion: 0.15, outputPerMillion: 0.6 };
 * assert.equal(costOf(2_000_000, 1_000_000, prices), 0.9);
 * ```
 */
export function costOf(inputTokens: number, outputTokens: number, prices: Prices): number {
  return (inputTokens * prices.inputPerMillion + outputTokens * prices.outputPerMillion) / 1e6;
}

/** A plain, JSON-able copy of a {@linkcode UsageMeter}'s counters at one moment. */
export interface UsageSnapshot {
  /**
   * LLM calls that returned a generation (paid for), retried invalid ones included; attempts that
   * got none (an HTTP error, a timeout) are counted in `failures` by reason.
   */
  readonly calls: number;
  /**
   * Calls aborted in flight (a file the run stopped writing, a client gone, a second ^C): no
   * generation came back, but a provider may bill what it had generated.
   */
  readonly abortedCalls: number;
  /** Thoughts served from the persistent cache. */
  readonly cacheHits: number;
  /** Thoughts reused from an identical request earlier in the same run. */
  readonly dedupeHits: number;
  /** Calls repeated after a transient failure or an invalid generation. */
  readonly retries: number;
  /** Answers that already had a thought in the output format: kept, no call made. */
  readonly keptThoughts: number;
  /** Turns given up on, by reason. */
  readonly failures: Readonly<Record<string, number>>;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Calls whose token counts were estimated locally because the server sent no `usage`. */
  readonly estimatedCalls: number;
  /** Records written to the output. */
  readonly written: number;
  /** Records sent to the rejects file. */
  readonly rejected: number;
  /** Blank input lines skipped. */
  readonly skipped: number;
  /**
   * Records done, then dropped with the file they were in when a fatal error stopped the run
   * (the file being written is discarded): not written, not rejected.
   */
  readonly discarded: number;
  /** Records read, written or rejected: the count behind `conversationsPerSecond`. */
  readonly conversations: number;
  readonly wallSeconds: number;
  readonly conversationsPerSecond: number;
}

/**
 * Accumulates the counters of one run. Make one per run and pass it to the stages that count.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UsageMeter } from "./usage.ts";
 *
 * const meter = new UsageMeter(1_000);
 * meter.addCall({ inputTokens: 900, outputTokens: 100, estimated: false });
 * meter.addFailure("timeout");
 * meter.addConversation();
 * meter.addRecord("written");
 * const snapshot = meter.snapshot(3_000);
 * assert.equal(snapshot.calls, 1);
 * assert.deepEqual(snapshot.failures, { timeout: 1 });
 * assert.equal(snapshot.conversationsPerSecond, 0.5);
 * assert.equal(meter.cost({ inputPerMillion: 1, outputPerMillion: 10 }), 0.0019);
 * ```
 */
export class UsageMeter {
  readonly #startMs: number;
  #calls = 0;
  #abortedCalls = 0;
  #cacheHits = 0;
  #dedupeHits = 0;
  #retries = 0;
  #keptThoughts = 0;
  readonly #failures = new Map<string, number>();
  #inputTokens = 0;
  #outputTokens = 0;
  #estimatedCalls = 0;
  #written = 0;
  #rejected = 0;
  #skipped = 0;
  #discarded = 0;
  #conversations = 0;

  /** @param startMs When the run started, on the clock later passed to `snapshot`. */
  constructor(startMs: number) {
    this.#startMs = startMs;
  }

  /** Counts one completed LLM call and its tokens. */
  addCall(usage: TokenUsage): void {
    this.#calls += 1;
    this.#inputTokens += usage.inputTokens;
    this.#outputTokens += usage.outputTokens;
    if (usage.estimated) this.#estimatedCalls += 1;
  }

  /** Counts a call aborted in flight. */
  addAbortedCall(): void {
    this.#abortedCalls += 1;
  }

  /** Counts a thought served from the persistent cache. */
  addCacheHit(): void {
    this.#cacheHits += 1;
  }

  /** Counts a thought reused from an identical request in this run. */
  addDedupeHit(): void {
    this.#dedupeHits += 1;
  }

  /** Counts an answer that already had a thought and was kept as it was. */
  addKeptThought(): void {
    this.#keptThoughts += 1;
  }

  /** Counts one retried call. */
  addRetry(): void {
    this.#retries += 1;
  }

  /** Counts one turn given up on, e.g. `"timeout"`, `"rate_limit"`, `"invalid_thought"`. */
  addFailure(reason: string): void {
    this.#failures.set(reason, (this.#failures.get(reason) ?? 0) + 1);
  }

  /** Counts one record read, whether it is written or rejected. */
  addConversation(): void {
    this.#conversations += 1;
  }

  /** Counts one input record by what became of it. */
  addRecord(outcome: "written" | "rejected" | "skipped"): void {
    if (outcome === "written") this.#written += 1;
    else if (outcome === "rejected") this.#rejected += 1;
    else this.#skipped += 1;
  }

  /**
   * Moves the records of a discarded file from written and rejected to discarded, so the counts
   * say what the files on disk hold.
   */
  discardRecords(written: number, rejected: number): void {
    this.#written -= written;
    this.#rejected -= rejected;
    this.#discarded += written + rejected;
  }

  /** LLM calls that returned a generation so far (see {@linkcode UsageSnapshot.calls}). */
  get calls(): number {
    return this.#calls;
  }

  /** Prompt and completion tokens so far. */
  get tokens(): { readonly input: number; readonly output: number } {
    return { input: this.#inputTokens, output: this.#outputTokens };
  }

  /**
   * The cost so far in USD.
   *
   * @param prices The model's prices, or `null` when unknown.
   * @returns USD, or `null` without prices.
   */
  cost(prices: Prices | null): number | null {
    return prices === null ? null : costOf(this.#inputTokens, this.#outputTokens, prices);
  }

  /**
   * Copies the counters into a plain object.
   *
   * @param nowMs The current time on the clock `startMs` came from.
   * @returns The counters, the wall time and the conversation rate.
   */
  snapshot(nowMs: number): UsageSnapshot {
    const wallSeconds = Math.max(0, nowMs - this.#startMs) / 1000;
    return {
      calls: this.#calls,
      abortedCalls: this.#abortedCalls,
      cacheHits: this.#cacheHits,
      dedupeHits: this.#dedupeHits,
      retries: this.#retries,
      keptThoughts: this.#keptThoughts,
      // fromEntries defines own properties, so a reason like "__proto__" stays a plain key.
      failures: Object.fromEntries(this.#failures),
      inputTokens: this.#inputTokens,
      outputTokens: this.#outputTokens,
      estimatedCalls: this.#estimatedCalls,
      written: this.#written,
      rejected: this.#rejected,
      skipped: this.#skipped,
      discarded: this.#discarded,
      conversations: this.#conversations,
      wallSeconds,
      conversationsPerSecond: wallSeconds > 0 ? this.#conversations / wallSeconds : 0,
    };
  }
}

/**
 * Renders the end-of-run summary, one fact per line, for stderr.
 *
 * @param snapshot The meter's final snapshot.
 * @param prices The model's prices, or `null` when unknown.
 * @returns Lines joined with `\n`, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSummary, UsageMeter } from "./usage.ts";
 *
 * const meter = new UsageMeter(0);
 * meter.addCall({ inputTokens: 1_500, outputTokens: 200, estimated: true });
 * const text = formatSummary(meter.snapshot(2_000), null);
 * assert.match(text, /tokens +1,500 in, 200 out \(some estimated\)/);
 * assert.match(text, /cost +unknown/);
 * ```
 */
export function formatSummary(snapshot: UsageSnapshot, prices: Prices | null): string {
  const failures = Object.entries(snapshot.failures)
    .sort(([, a], [, b]) => b - a)
    .map(([reason, n]) => `${reason} ${formatCount(n)}`)
    .join(", ");
  const cost = prices === null
    ? "unknown (no prices configured)"
    : formatCost(costOf(snapshot.inputTokens, snapshot.outputTokens, prices));
  return [
    `records   ${formatCount(snapshot.written)} written, ${
      formatCount(snapshot.rejected)
    } rejected, ` +
    `${formatCount(snapshot.skipped)} skipped (blank)` +
    (snapshot.discarded > 0
      ? `, ${formatCount(snapshot.discarded)} done but discarded with their unfinished file`
      : ""),
    `calls     ${formatCount(snapshot.calls)} (cache hits ${formatCount(snapshot.cacheHits)}, ` +
    `dedupe hits ${formatCount(snapshot.dedupeHits)}, retries ${formatCount(snapshot.retries)})` +
    (snapshot.abortedCalls > 0
      ? `; ${formatCount(snapshot.abortedCalls)} aborted in flight (a provider may bill them)`
      : "") +
    (snapshot.keptThoughts > 0
      ? `; ${formatCount(snapshot.keptThoughts)} answers already had a thought, kept`
      : ""),
    `failures  ${failures === "" ? "none" : failures}`,
    `tokens    ${formatCount(snapshot.inputTokens)} in, ${formatCount(snapshot.outputTokens)} out` +
    (snapshot.estimatedCalls > 0 ? " (some estimated)" : ""),
    `cost      ${cost}`,
    `time      ${formatDuration(snapshot.wallSeconds)}, ` +
    `${snapshot.conversationsPerSecond.toFixed(1)} conv/s`,
  ].join("\n");
}

/**
 * Formats USD for humans: cents, or four decimals under a cent so small runs do not read $0.00.
 *
 * @param usd An amount in USD.
 * @returns E.g. `$12.35`, `$0.0042`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatCost } from "./usage.ts";
 *
 * assert.equal(formatCost(12.345), "$12.35");
 * assert.equal(formatCost(0.00421), "$0.0042");
 * ```
 */
export function formatCost(usd: number): string {
  return `$${usd.toFixed(usd > 0 && usd < 0.01 ? 4 : 2)}`;
}

/**
 * Formats a whole number with commas between thousands, as `Intl.NumberFormat("en-US")` does,
 * without it: ICU's first formatter cost every run 18 to 27 ms of start-up.
 *
 * @param n A whole number (a fraction is rounded).
 * @returns The number, e.g. `1,234,567`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatCount } from "./usage.ts";
 *
 * assert.equal(formatCount(0), "0");
 * assert.equal(formatCount(999), "999");
 * assert.equal(formatCount(1000), "1,000");
 * assert.equal(formatCount(-1234567), "-1,234,567");
 * assert.equal(formatCount(2 ** 53), "9,007,199,254,740,992");
 * ```
 */
export function formatCount(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+$)/g, ",");
}

/**
 * Formats a duration compactly: `42s`, `3m05s`, `2h07m`.
 *
 * @param seconds A non-negative duration.
 * @returns The duration, rounded to whole seconds (whole minutes above an hour).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDuration } from "./usage.ts";
 *
 * assert.equal(formatDuration(42.4), "42s");
 * assert.equal(formatDuration(185), "3m05s");
 * assert.equal(formatDuration(7_620), "2h07m");
 * ```
 */
export function formatDuration(seconds: number): string {
  const total = Math.round(seconds);
  if (total < 60) return `${total}s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (total < 3600) return `${Math.floor(total / 60)}m${pad(total % 60)}s`;
  const minutes = Math.round(total / 60);
  return `${Math.floor(minutes / 60)}h${pad(minutes % 60)}m`;
}
