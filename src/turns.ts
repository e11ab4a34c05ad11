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

import { tokenBound } from "./tokenizer.ts";
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
   * Counts the tokens of a text; past `limit` it may stop and return any larger number. Only
   * called when the history's UTF-8 size does not already fit the budget: see
   * {@linkcode historyNeedsTokenCount}.
   *
   * @default {(text) => Math.ceil(text.length / 3)}
   */
  countTokens?: (text: string, limit: number) => number;
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
  const start = historyStart(turns);
  const systemParts = [
    conversation.system,
    ...turns.slice(0, start).map((turn) => turn.text),
  ].filter((text): text is string => typeof text === "string" && text.length > 0);
  const system = systemParts.length > 0 ? systemParts.join("\n\n") : null;

  const costs = new Array<number | undefined>(turns.length);
  // A turn over the whole budget never fits: its count can stop there, so a 4 MB turn costs
  // the budget's worth of tokenizing, not 4 MB's.
  const limit = Math.max(0, budget - TURN_OVERHEAD_TOKENS);
  function costOf(index: number): number {
    return costs[index] ??= countTokens(shownText(turns[index]), limit) + TURN_OVERHEAD_TOKENS;
  }
  // The token bound of turns[start, boundEnd): histories only grow, so it is summed once.
  let bound = 0;
  let boundEnd = start;

  const requests: ThoughtRequest[] = [];
  let lastUser = -1;
  for (let index = start; index < turns.length; index++) {
    const turn = turns[index];
    if (turn.role === "user") {
      lastUser = index;
      continue;
    }
    if (lastUser < 0 || !isAnswer(turn)) continue;

    for (; boundEnd < lastUser; boundEnd++) bound += turnBound(turns[boundEnd]);
    // Within the bound the whole history fits: only a longer one is counted.
    const first = bound <= budget ? start : firstKept(start, lastUser, budget, costOf);
    requests.push({
      turnIndex: index,
      system,
      history: turns.slice(first, lastUser),
      droppedTurns: first - start,
      request: turns[lastUser],
      between: turns.slice(lastUser + 1, index),
      answer: turn.text,
    });
  }
  return requests;
}

/**
 * Whether {@linkcode planTurns} will count tokens for this conversation: some history's UTF-8
 * size (an upper bound on its tokens) exceeds the budget. When it does not, every history fits
 * whole and no tokenizer is needed.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { historyNeedsTokenCount } from "./turns.ts";
 * const turns = [
 *   { index: 0, role: "user", name: "human", text: "x".repeat(200) },
 *   { index: 1, role: "assistant", name: "gpt", text: "y".repeat(200) },
 *   { index: 2, role: "user", name: "human", text: "Shorter?" },
 *   { index: 3, role: "assistant", name: "gpt", text: "Yes." },
 * ] as const;
 * const conversation = { line: 1, shape: "sharegpt", listKey: "conversations", record: {}, system: null, turns } as const;
 * assert.equal(historyNeedsTokenCount(conversation, { historyTokens: 500 }), false);
 * assert.equal(historyNeedsTokenCount(conversation, { historyTokens: 300 }), true);
 * ```
 *
 * @param conversation A parsed record.
 * @param options The history budget, as passed to {@linkcode planTurns}.
 * @returns `true` when `planTurns` would call `countTokens`.
 */
export function historyNeedsTokenCount(
  conversation: Conversation,
  options: Pick<PlanOptions, "historyTokens"> = {},
): boolean {
  const budget = options.historyTokens ?? 3000;
  const { turns } = conversation;
  const start = historyStart(turns);
  // The longest history is the one before the last user turn that an assistant turn answers.
  let lastUser = -1;
  let end = -1;
  for (let index = start; index < turns.length; index++) {
    const turn = turns[index];
    if (turn.role === "user") lastUser = index;
    else if (lastUser >= 0 && isAnswer(turn)) end = lastUser;
  }
  let bound = 0;
  for (let index = start; index < end; index++) {
    bound += turnBound(turns[index]);
    if (bound > budget) return true;
  }
  return false;
}

/** The index of the first turn after the leading system turns. */
function historyStart(turns: readonly Turn[]): number {
  let index = 0;
  while (index < turns.length && turns[index].role === "system") index++;
  return index;
}

/** An assistant turn with text to think about (not a tool call, not blank, not only images). */
function isAnswer(turn: Turn): turn is Turn & { text: string } {
  return turn.role === "assistant" && turn.text !== null && turn.textless !== true &&
    turn.text.trim() !== "";
}

function turnBound(turn: Turn): number {
  return tokenBound(shownText(turn)) + TURN_OVERHEAD_TOKENS;
}

/** What the prompt shows of a turn: its text and its tool calls, which can be as long. */
function shownText(turn: Turn): string {
  return turn.calls === undefined ? turn.text ?? "" : (turn.text ?? "") + turn.calls;
}

/** The first history turn kept: the newest turns that fit the budget, by exact count. */
function firstKept(
  start: number,
  end: number,
  budget: number,
  costOf: (index: number) => number,
): number {
  let used = 0;
  let first = end;
  while (first > start && used + costOf(first - 1) <= budget) {
    used += costOf(first - 1);
    first--;
  }
  return first;
}
