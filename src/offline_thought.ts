/**
 * The offline endpoint's thought: a deterministic, plainly templated thought process built from
 * the prompt's sections (the question, the answer's size and shape), with no model.
 *
 * @module
 */

import { cutText } from "./text_cut.ts";

/**
 * The default reply to a chat request: a first-person thought of 2 to 4 sentences, wrapped in
 * `<thought_process>` tags. It is built from the request's data sections (`<system_prompt>`,
 * `<history>`, `<user_message>`, `<tool_activity>`, `<answer>`; the whole text when they are
 * absent): it quotes the start of the user's message and describes the answer's shape (length,
 * code, list, steps) without ever quoting the answer. Same input, same thought.
 *
 * @param prompt The last user message of a request.
 * @returns The thought, tags included.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { offlineThought } from "./offline_thought.ts";
 *
 * const prompt = "<user_message>How do I list files? Thanks.</user_message>\n" +
 *   "<answer>Run `ls -la` in the folder.</answer>";
 * const thought = offlineThought(prompt);
 * assert.match(thought, /^<thought_process>\n[^]*\n<\/thought_process>$/);
 * assert.match(thought, /How do I list files\?/);
 * assert.ok(!thought.includes("ls -la"));
 * assert.equal(offlineThought(prompt), thought);
 * ```
 */
export function offlineThought(prompt: string): string {
  const question = section(prompt, "user_message", false) ?? prompt;
  const answer = section(prompt, "answer", true) ?? "";
  const sentences: string[] = [];

  const opening = firstSentence(question);
  sentences.push(
    opening === ""
      ? "The user gives me no explicit question, so I work from the context around it."
      : `The user asks: "${opening}"${/[.?!…]$/.test(opening) ? "" : "."}`,
  );

  if (hasContent(section(prompt, "tool_activity", false))) {
    sentences.push("I have tool results to draw on, so I ground my reply in what they returned.");
  } else if (hasContent(section(prompt, "history", false))) {
    sentences.push("This continues an earlier exchange, so I keep that context in mind.");
  } else if (hasContent(section(prompt, "system_prompt", false))) {
    sentences.push("I keep the system prompt's instructions in view while I answer.");
  }

  const hasCode = answer.includes("```") || answer.includes("<code>");
  const hasSteps = /^[ \t]*(?:\d+[.)]|step \d)/im.test(answer);
  const hasList = !hasSteps && /^[ \t]*[-*•] /m.test(answer);
  // Six characters a word: close enough to describe the size, and free for a long answer.
  const words = Math.ceil(answer.length / 6);
  const size = words < 60 ? "short" : words < 250 ? "of medium length" : "long";
  const shape = hasCode
    ? ", with a code example"
    : hasSteps
    ? ", laid out as numbered steps"
    : hasList
    ? ", organised as a list"
    : "";
  if (words > 0) {
    const count = words === 1 ? "a word or two" : `roughly ${words} words`;
    sentences.push(`My reply should be ${size}, ${count}${shape}.`);
  }

  sentences.push(approach(hasCode, hasSteps, hasList, hash(opening) + words));
  return `<thought_process>\n${sentences.join(" ")}\n</thought_process>`;
}

/**
 * The text inside `<tag>...</tag>`, or `null` when the tag is absent. `last` takes the last
 * closing tag, for a section (the answer) whose own text may contain the closing tag.
 */
function section(text: string, tag: string, last: boolean): string | null {
  const open = `<${tag}>`;
  const start = text.indexOf(open);
  if (start === -1) return null;
  const from = start + open.length;
  const end = last ? text.lastIndexOf(`</${tag}>`) : text.indexOf(`</${tag}>`, from);
  return end < from ? text.slice(from) : text.slice(from, end);
}

/** cotfit's prompt marks an empty section with `(none)`. */
function hasContent(text: string | null): boolean {
  if (text === null) return false;
  const trimmed = text.trim();
  return trimmed !== "" && trimmed !== "(none)";
}

const OPENING_MAX_CHARS = 120;

/** The first sentence, on one line, cut, without angle brackets that could fake a tag. */
function firstSentence(text: string): string {
  const head = cutText(text, OPENING_MAX_CHARS * 2).replace(/[<>]/g, "").replace(/\s+/g, " ")
    .trim();
  const end = head.search(/[.?!](?:\s|$)/);
  const sentence = end === -1 ? head : head.slice(0, end + 1);
  return sentence.length > OPENING_MAX_CHARS
    ? `${cutText(sentence, OPENING_MAX_CHARS).trimEnd()}…`
    : sentence;
}

const PLAIN_APPROACHES = [
  "I will answer directly first, then add the detail that supports it.",
  "I will start from what the user needs and give a clear, focused answer.",
  "I will settle the core question plainly, then mention the one caveat that matters.",
] as const;

function approach(hasCode: boolean, hasSteps: boolean, hasList: boolean, seed: number): string {
  if (hasCode) {
    return "I will explain the idea briefly, then show the code and point out its key lines.";
  }
  if (hasSteps) return "I will walk through the steps in order and keep each one concrete.";
  if (hasList) return "I will group the points into a clear list and keep each item short.";
  return PLAIN_APPROACHES[seed % PLAIN_APPROACHES.length];
}

/** FNV-1a: a cheap, stable pick among the phrasings. */
function hash(text: string): number {
  let value = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    value = Math.imul(value ^ text.charCodeAt(i), 0x01000193);
  }
  return value >>> 0;
}
