/**
 * Picks the assistant turns that get a thought and gives each its context: system prompt,
 * history trimmed to a token budget, the user turn it answers and anything in between.
 *
 * Policy (also in the README): an assistant turn gets a thought when it has non-empty text and a
 * user turn stands somewhere before it; it answers the latest such user turn. Greetings before any
 * user turn, empty answers and tool-call-only turns (text null) are passed through unchanged and
 * stay visible in later turns' history. Leading system turns (and a top-level `system` field)
 * form the system prompt; system turns later on are part of the history.
 *
 * @module
 */

import type { Conversation, ThoughtRequest, Turn } from "./types.ts";

/** Options of {@linkcode planTurns}. */
export interface PlanOptions {
  /**
   * Token budget for the history before the user turn; oldest turns are dropped first.
   *
   * @default {3000}
   */
  historyTokens?: number;
  /**
   * Counts the tokens of a text. Only called when a cheap upper bound does not already fit.
   *
   * @default {(text) => Math.ceil(text.length / 3)}
   */
  countTokens?: (text: string) => number;
}

// Per-turn framing the prompt adds around history text ("user: ..."), in tokens.
const TURN_OVERHEAD_TOKENS = 4;

/**
 * Lists one {@linkcode ThoughtRequest} per assistant turn that answers a user turn, in turn order.
 *
 * @example A two-turn chat
 * ```ts
 * import assert from "node:assert/strict";
 * import { planTurns } from "./turns.ts";
 * const turns = [
 *   { index: 0, role: "user", name: "human", text: "Hi, what is 2+2?" },
 *   { index: 1, role: "assistant", name: "gpt", text: "4." },
 *   { index: 2, role: "user", name: "human", text: "And 3+3?" },
 *   { index: 3, role: "assistant", name: "gpt", text: "6." },
 * ] as const;
 * const plan = planTurns({ line: 1, shape: "sharegpt", listKey: "conversations", record: {}, system: null, turns });
 * assert.deepEqual(plan.map((r) => [r.turnIndex, r.history.length, r.answer]), [[1, 0, "4."], [3, 2, "6."]]);
 * ```
 *
 * @param conversation A parsed record.
 * @param options History budget and token counter.
 * @returns The requests; empty when no assistant turn answers a user turn.
 */
export function planTurns(conversation: Conversation, options: PlanOptions = {}): ThoughtRequest[] {
  const budget = options.historyTokens ?? 3000;
  const countTokens = options.countTokens ?? ((text: string) => Math.ceil(text.length / 3));
  const { turns } = conversation;

  let firstAfterSystem = 0;
  while (firstAfterSystem < turns.length && turns[firstAfterSystem].role === "system") {
    firstAfterSystem++;
  }
  const systemParts = [
    conversation.system,
    ...turns.slice(0, firstAfterSystem).map((turn) => turn.text),
  ].filter((text): text is string => typeof text === "string" && text.length > 0);
  const system = systemParts.length > 0 ? systemParts.join("\n\n") : null;

  const costs = new Array<number | undefined>(turns.length);
  function costOf(index: number): number {
    return costs[index] ??= countTokens(turns[index].text ?? "") + TURN_OVERHEAD_TOKENS;
  }

  const requests: ThoughtRequest[] = [];
  let lastUser = -1;
  for (let index = firstAfterSystem; index < turns.length; index++) {
    const turn = turns[index];
    if (turn.role === "user") {
      lastUser = index;
      continue;
    }
    if (turn.role !== "assistant" || lastUser < 0) continue;
    if (turn.text === null || turn.text.trim() === "") continue;

    const { history, dropped } = trimHistory(turns, firstAfterSystem, lastUser, budget, costOf);
    requests.push({
      turnIndex: index,
      system,
      history,
      droppedTurns: dropped,
      request: turns[lastUser],
      between: turns.slice(lastUser + 1, index),
      answer: turn.text,
    });
  }
  return requests;
}

function trimHistory(
  turns: readonly Turn[],
  start: number,
  end: number,
  budget: number,
  costOf: (index: number) => number,
): { history: Turn[]; dropped: number } {
  // A token is at least one UTF-8 byte, and a UTF-16 unit at most 3 bytes (1 when ASCII): if
  // that bound fits, skip the tokenizer entirely (about 100 µs per KB).
  let upperBound = 0;
  for (let index = start; index < end; index++) {
    upperBound += maxUtf8Bytes(turns[index].text ?? "") + TURN_OVERHEAD_TOKENS;
  }
  if (upperBound <= budget) return { history: turns.slice(start, end), dropped: 0 };

  let used = 0;
  let first = end;
  while (first > start && used + costOf(first - 1) <= budget) {
    used += costOf(first - 1);
    first--;
  }
  return { history: turns.slice(first, end), dropped: first - start };
}

// deno-lint-ignore no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

function maxUtf8Bytes(text: string): number {
  return ASCII.test(text) ? text.length : text.length * 3;
}
