/**
 * Pulls the thought out of an LLM reply and decides whether it can be used. Pure: the reply in,
 * a thought or the reason there is none out.
 *
 * @module
 */

import type { Framing } from "./records.ts";
import { tokenBound, type Tokenizer } from "./tokenizer.ts";

/** A usable thought, or why the reply gave none (a retry may do better). */
export type ThoughtResult =
  | { readonly ok: true; readonly thought: string }
  | { readonly ok: false; readonly reason: string };

/** Options of {@linkcode extractThought}. */
export interface ThoughtOptions {
  /**
   * Longest accepted thought, in tokens (o200k_base); a longer one is taken as a runaway.
   *
   * @default {2048}
   */
  maxThoughtTokens?: number;
  /**
   * Counts a thought whose UTF-8 size exceeds `maxThoughtTokens`; a smaller one cannot exceed
   * the limit. Needed only when {@linkcode thoughtMayNeedTokenCount} says so.
   */
  tokenizer?: Pick<Tokenizer, "isWithinTokenLimit">;
}

// Global for `find`. `[^<>]`, not `[^>]`: else each of many "<think " with no ">" after them reads
// the rest of the reply. The prompt's tags take no attributes, let alone ones holding "<".
const THINK_OPEN = /<think(?:\s[^<>]*)?>/gi;
const THINK_CLOSE = /<\/think\s*>/gi;
const OPEN_TAG = /<\s*thought_process\s*>/i;
const CLOSE_TAG = /<\s*\/\s*thought_process\s*>/i;
// The prompt's own tags (see prompts/thought_process.yaml): inside a thought they mean the model
// echoed the prompt or nested its output. `\s*(?:\/\s*)?`, not `\s*\/?\s*`: two runs of white
// space side by side split a long one every way there is (2 minutes on "<" and 400 KB of spaces).
const OUR_TAGS =
  /<\s*(?:\/\s*)?(?:thought_process|think|system_prompt|history|user_message|tool_activity|answer)\s*>/i;

// Refusing the task, as opposed to a thought that merely says "I can't recall...". Anchored at
// the start: a refusal leads with it, a reasoning step that mentions a limit does not.
const CANNOT = String.raw`(?:I\s+(?:can['’]?t|cannot|can\s+not|won['’]t|will\s+not|` +
  String.raw`am\s+(?:not\s+able|unable)\s+to)|I['’]m\s+(?:not\s+able|unable)\s+to)`;
const REFUSAL = new RegExp(
  "^(?:" + [
    String.raw`(?:I['’]m|I\s+am)\s+(?:so\s+|very\s+|really\s+)?sorry,?\s+(?:but\s+)?${CANNOT}`,
    String.raw`(?:Sorry|I\s+apologi[sz]e),?\s+(?:but\s+)?${CANNOT}`,
    String.raw`${CANNOT}\s+(?:help|assist|comply)(?:\s+you)?` +
    String.raw`(?:\s+with\s+(?:this|that|these|those|the|your|such|it)\b|\s+here\b|\s*[.,!;]|\s*$)`,
    String.raw`${CANNOT}\s+(?:fulfil+|complete|do|write|create|generate|provide)\s+` +
    String.raw`(?:this|that|such\s+a|your)\s+(?:request|task)\b`,
    String.raw`As\s+an\s+AI\s+language\s+model\b`,
    String.raw`As\s+an\s+AI(?:\s+assistant)?,?\s+${CANNOT}`,
  ].join("|") + ")",
  "i",
);

// The answer spoken of as an artifact that already exists ("the provided answer", "the output
// above"); a thought must read as written before it. Plain "the answer is 42" is fine.
const ANSWER_NOUN = "(?:answer|response|reply|output|completion)";
const ARTIFACT = new RegExp(
  [
    String.raw`\b(?:the|this|that)\s+(?:provided|given|existing|above|supplied|shown|reference)` +
    String.raw`\s+(?:final\s+)?${ANSWER_NOUN}`,
    String.raw`\b(?:the|this|that)\s+(?:final\s+)?${ANSWER_NOUN}\s+` +
    String.raw`(?:provided|given|supplied|shown|above|below|that\s+follows|in\s+question)\b`,
    String.raw`\bassistant['’]s\s+(?:final\s+)?${ANSWER_NOUN}`,
    String.raw`\banswer\s+(?:section|tags?)\b`,
  ].join("|"),
  "i",
);
const SENTENCE_BREAK = /(?<=[.!?…]["'’”)\]]*)\s+/;
const LINE_ENDINGS = /\r\n?/g;
const EXTRA_BLANK_LINES = /\n(?:[ \t]*\n){2,}/g;

/**
 * Takes the thought from a reply: drops leaked `<think>` reasoning, reads the first
 * `<thought_process>` block (tag case and inner spaces tolerated), and checks it, in this order:
 * truncated reply, empty reply, missing tags, nested or echoed prompt tags, empty thought, refusal
 * of the task, sentences that talk about the answer as an existing text (removed; rejected if
 * nothing else is left), length. A missing closing tag is accepted only when the reply finished
 * normally (`"stop"`), since a stop sequence on `</thought_process>` swallows it.
 *
 * Provider reasoning fields are never passed in: only the visible `content` counts.
 *
 * @example A reply with leaked reasoning
 * ```ts
 * import assert from "node:assert/strict";
 * import { extractThought } from "./thought.ts";
 * const reply = {
 *   content: "<think>draft</think>\n<thought_process>\nI need the capital: Paris.\n</thought_process>",
 *   finishReason: "stop",
 * };
 * assert.deepEqual(extractThought(reply), { ok: true, thought: "I need the capital: Paris." });
 * assert.deepEqual(extractThought({ content: "No tags here.", finishReason: "stop" }), {
 *   ok: false,
 *   reason: "no <thought_process> tags",
 * });
 * ```
 *
 * @param reply The reply's visible text and finish reason.
 * @param options The token limit, and the tokenizer when the thought may need counting.
 * @returns The thought (trimmed, `\n` line endings, at most one blank line in a row), or a reason.
 * @throws {RangeError} When `maxThoughtTokens` is not a positive integer.
 * @throws {TypeError} When the thought needs counting and no `tokenizer` was given.
 */
export function extractThought(
  reply: { content: string | null; finishReason: string | null },
  options: ThoughtOptions = {},
): ThoughtResult {
  const maxTokens = options.maxThoughtTokens ?? 2048;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new RangeError(`Cannot use maxThoughtTokens ${maxTokens}: expected a positive integer`);
  }
  if (reply.finishReason === "length") {
    return { ok: false, reason: "runaway: the reply hit the token limit" };
  }
  let content = reply.content ?? "";
  if (!content.trim()) return { ok: false, reason: "empty reply" };
  if (content.includes("\r")) content = content.replace(LINE_ENDINGS, "\n");

  content = removeReasoning(content);
  const open = OPEN_TAG.exec(content);
  if (!open) return { ok: false, reason: "no <thought_process> tags" };
  const rest = content.slice(open.index + open[0].length);
  const close = CLOSE_TAG.exec(rest);
  if (!close && reply.finishReason !== "stop") {
    return { ok: false, reason: "unclosed <thought_process> tag" };
  }
  const inner = close ? rest.slice(0, close.index) : rest;

  if (OUR_TAGS.test(inner)) return { ok: false, reason: "thought still holds tags" };
  let thought = inner.trim();
  if (!thought) return { ok: false, reason: "empty thought" };
  if (REFUSAL.test(thought)) return { ok: false, reason: "refusal" };

  if (ARTIFACT.test(thought)) {
    thought = removeArtifactSentences(thought).trim();
    if (!thought) return { ok: false, reason: "thought only describes the answer" };
  }
  thought = thought.replace(EXTRA_BLANK_LINES, "\n\n");

  // Most thoughts are shorter in bytes than the limit in tokens: no tokenizing for them.
  if (tokenBound(thought) > maxTokens) {
    if (!options.tokenizer) {
      throw new TypeError(
        `Cannot check a thought against ${maxTokens} tokens: no tokenizer given`,
      );
    }
    if (!options.tokenizer.isWithinTokenLimit(thought, maxTokens)) {
      return { ok: false, reason: `runaway: thought over ${maxTokens} tokens` };
    }
  }
  return { ok: true, thought };
}

/**
 * Whether {@linkcode extractThought} may need a tokenizer for this reply: only when the reply's
 * UTF-8 size, which bounds the thought's tokens, exceeds the limit. Lets a caller load the
 * tokenizer only then.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { thoughtMayNeedTokenCount } from "./thought.ts";
 * const reply = { content: "<thought_process>\nShort.\n</thought_process>", finishReason: "stop" };
 * assert.equal(thoughtMayNeedTokenCount(reply), false);
 * assert.equal(thoughtMayNeedTokenCount(reply, { maxThoughtTokens: 10 }), true);
 * ```
 *
 * @param reply The reply's visible text and finish reason.
 * @param options The token limit.
 * @returns `false` when `extractThought` will not use `options.tokenizer` for this reply.
 */
export function thoughtMayNeedTokenCount(
  reply: { content: string | null; finishReason: string | null },
  options: Pick<ThoughtOptions, "maxThoughtTokens"> = {},
): boolean {
  // A reply cut at the token limit is rejected before any counting.
  if (reply.finishReason === "length" || reply.content === null) return false;
  return tokenBound(reply.content) > (options.maxThoughtTokens ?? 2048);
}

/** Drops `<think>` blocks, an unclosed `<think>` up to the thought, and text before a stray `</think>`. */
function removeReasoning(content: string): string {
  if (!/<\/?think/i.test(content)) return content;
  let text = removeThinkBlocks(content);
  // Only tags before the thought are leaks; one inside it is left for the tag check to reject.
  const thoughtAt = OPEN_TAG.exec(text)?.index ?? text.length;
  const open = find(THINK_OPEN, text, 0);
  if (open && open.index < thoughtAt) text = text.slice(0, open.index) + text.slice(thoughtAt);
  // Some chat templates put the opening <think> in the prompt, so only the closing one shows.
  const close = find(THINK_CLOSE, text, 0);
  if (close && close.index < (OPEN_TAG.exec(text)?.index ?? text.length)) {
    text = text.slice(close.index + close[0].length);
  }
  return text;
}

/**
 * Drops each `<think>` block, from an opening tag to the first closing tag after it. One pass,
 * where a lazy `<think>[\s\S]*?</think>` reads the rest of the reply once per opening tag left
 * unclosed: once one has no closing tag after it, no later one has.
 */
function removeThinkBlocks(text: string): string {
  let kept = "";
  let from = 0;
  for (;;) {
    const open = find(THINK_OPEN, text, from);
    const close = open && find(THINK_CLOSE, text, open.index + open[0].length);
    if (!open || !close) return from === 0 ? text : kept + text.slice(from);
    kept += text.slice(from, open.index);
    from = close.index + close[0].length;
  }
}

/** The first match of a global `pattern` at or after `from`. */
function find(pattern: RegExp, text: string, from: number): RegExpExecArray | null {
  pattern.lastIndex = from;
  return pattern.exec(text);
}

function removeArtifactSentences(thought: string): string {
  return thought
    .split("\n")
    .map((line) =>
      ARTIFACT.test(line)
        ? line.split(SENTENCE_BREAK).filter((sentence) => !ARTIFACT.test(sentence)).join(" ")
        : line
    )
    .join("\n");
}

/** The non-blank lines of a framing, trimmed, worked out once per framing. */
const framingLines = new WeakMap<Framing, readonly string[]>();

/**
 * The first line of `framing` (its preface's or suffix's non-blank lines, trimmed) that stands as
 * a line of its own in `thought`, or `null`. Such a thought is invalid: framed, it would read as
 * a second answer (or thought) to whoever splits the text on those lines, as training-data
 * parsers do.
 *
 * @param thought A thought, `\n` line ends.
 * @param framing The preface and suffix the thought goes between.
 * @returns The framing line found, or `null`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { framingLineIn } from "./thought.ts";
 *
 * const framing = { preface: "Thought Process:", suffix: "\nAnswer:" };
 * assert.equal(framingLineIn("Add them.\n\nAnswer:\n4", framing), "Answer:");
 * assert.equal(framingLineIn("  Thought Process:  \nAdd them.", framing), "Thought Process:");
 * assert.equal(framingLineIn("The Answer: is 4.", framing), null);
 * ```
 */
export function framingLineIn(thought: string, framing: Framing): string | null {
  let lines = framingLines.get(framing);
  if (lines === undefined) {
    lines = `${framing.preface}\n${framing.suffix}`.split("\n").map((line) => line.trim())
      .filter((line) => line !== "");
    framingLines.set(framing, lines);
  }
  for (const line of lines) {
    // Most thoughts hold no framing text at all: indexOf finds that without splitting lines.
    for (let at = thought.indexOf(line); at >= 0; at = thought.indexOf(line, at + 1)) {
      const start = thought.lastIndexOf("\n", at - 1) + 1;
      const endAt = thought.indexOf("\n", at + line.length);
      const end = endAt < 0 ? thought.length : endAt;
      if (thought.slice(start, end).trim() === line) return line;
    }
  }
  return null;
}
