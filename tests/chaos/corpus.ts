/**
 * Deterministic chat datasets for the chaos suite: the same seed gives the same bytes. Each
 * record knows which of its turns must get a thought, so a scenario can compute the ideal
 * number of LLM calls and check every written record against its input.
 *
 * @module
 */

import { isRecord } from "./harness.ts";

/** A seeded source of numbers in [0, 1) (mulberry32). */
export type Random = () => number;

/** Makes a seeded PRNG; the same seed gives the same sequence. */
export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One generated record. */
export interface GeneratedRecord {
  readonly id: string;
  /** The record as written to the input file. */
  readonly record: Record<string, unknown>;
  /** Indexes of the turns that must come out with a thought (the others come out unchanged). */
  readonly thoughtTurns: readonly number[];
}

/** A generated dataset. */
export interface Corpus {
  readonly records: readonly GeneratedRecord[];
  /** The JSONL text, one record a line, with a final newline. */
  readonly text: string;
  /** Assistant turns needing a thought: the fewest LLM calls the run can make. */
  readonly ideal: number;
  readonly byId: ReadonlyMap<string, GeneratedRecord>;
}

const TOPICS = [
  "sorting a list of numbers",
  "the boiling point of water at altitude",
  "writing a polite follow-up email",
  "why leaves change colour in autumn",
  "the difference between TCP and UDP",
  "a recipe for crêpes",
  "compound interest over ten years",
  "how vaccines train the immune system",
  "naming a black cat",
  "reading a CSV file in Python",
  "the plot of Hamlet",
  "translating 'good morning' into Japanese (おはよう)",
  "planning a 3-day trip to Lisbon 🇵🇹",
  "the Pythagorean theorem",
  "fixing a leaking tap",
];

const SYSTEMS = [
  "You are a concise assistant.",
  "You are a patient tutor who explains step by step.",
  "Answer as a senior software engineer.",
  "Réponds en français si on te parle français.",
];

/**
 * Makes `count` conversations, mixed: ShareGPT and OpenAI, single and multi-turn, with system
 * prompts, tool calls, a greeting before the first question, a trailing question, an empty
 * answer. Every question carries the record's id, so no two prompts are the same and the
 * ideal call count is exact.
 *
 * @param count How many records.
 * @param seed Seed of the mix and the texts.
 * @returns The dataset and what it must become.
 */
export function generateCorpus(count: number, seed: number): Corpus {
  const random = createRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const records: GeneratedRecord[] = [];
  const lines: string[] = [];
  let ideal = 0;

  for (let i = 0; i < count; i++) {
    const id = `c${seed}-${String(i).padStart(6, "0")}`;
    const question = (n: number) => `[${id}.${n}] Could you help me with ${pick(TOPICS)}?`;
    const answer = () => answerText(random, pick(TOPICS));
    const draw = random();
    let generated: GeneratedRecord;
    if (draw < 0.4) {
      generated = {
        id,
        record: {
          id,
          source: "chaos-single",
          conversations: [{ from: "human", value: question(1) }, { from: "gpt", value: answer() }],
        },
        thoughtTurns: [1],
      };
    } else if (draw < 0.6) {
      const exchanges = 2 + Math.floor(random() * 3);
      const turns: Record<string, unknown>[] = [{ from: "system", value: pick(SYSTEMS) }];
      const thoughtTurns: number[] = [];
      for (let n = 1; n <= exchanges; n++) {
        turns.push({ from: "human", value: question(n) });
        thoughtTurns.push(turns.length);
        turns.push({ from: "gpt", value: answer() });
      }
      generated = {
        id,
        record: { id, conversations: turns, weight: Math.round(random() * 100) / 100 },
        thoughtTurns,
      };
    } else if (draw < 0.75) {
      generated = {
        id,
        record: {
          id,
          messages: [{ role: "user", content: question(1) }, {
            role: "assistant",
            content: answer(),
          }],
        },
        thoughtTurns: [1],
      };
    } else if (draw < 0.85) {
      const exchanges = 2 + Math.floor(random() * 2);
      const messages: Record<string, unknown>[] = [{ role: "system", content: pick(SYSTEMS) }];
      const thoughtTurns: number[] = [];
      for (let n = 1; n <= exchanges; n++) {
        messages.push({ role: "user", content: question(n) });
        thoughtTurns.push(messages.length);
        messages.push({ role: "assistant", content: answer() });
      }
      generated = { id, record: { id, messages, meta: { split: "train", n: i } }, thoughtTurns };
    } else if (draw < 0.93) {
      const call = {
        id: `call_${i}`,
        type: "function",
        function: { name: "lookup", arguments: "{}" },
      };
      generated = {
        id,
        record: {
          id,
          messages: [
            { role: "user", content: question(1) },
            { role: "assistant", content: null, tool_calls: [call] },
            { role: "tool", tool_call_id: `call_${i}`, content: `{"result": ${i}}` },
            { role: "assistant", content: answer() },
          ],
        },
        thoughtTurns: [3],
      };
    } else if (draw < 0.97) {
      // A greeting before any question and a trailing question: both pass through unchanged.
      generated = {
        id,
        record: {
          conversations: [
            { from: "gpt", value: "Hello! How can I help?" },
            { from: "human", value: question(1) },
            { from: "gpt", value: answer() },
            { from: "human", value: question(2) },
          ],
          id,
        },
        thoughtTurns: [2],
      };
    } else {
      // An empty answer gets no thought; the next question is a new request.
      generated = {
        id,
        record: {
          id,
          messages: [
            { role: "user", content: question(1) },
            { role: "assistant", content: "" },
            { role: "user", content: question(2) },
            { role: "assistant", content: answer() },
          ],
        },
        thoughtTurns: [3],
      };
    }
    ideal += generated.thoughtTurns.length;
    records.push(generated);
    lines.push(JSON.stringify(generated.record));
  }
  return {
    records,
    text: lines.join("\n") + "\n",
    ideal,
    byId: new Map(records.map((record) => [record.id, record])),
  };
}

function answerText(random: Random, topic: string): string {
  const shape = random();
  if (shape < 0.5) return `Here is a short note on ${topic}: it depends on the details you give.`;
  if (shape < 0.7) return `About ${topic}:\n- first point\n- second point\n- third point`;
  if (shape < 0.85) return `1. Start with ${topic}.\n2. Check the result.\n3. Repeat if needed.`;
  return `For ${topic}, try:\n\`\`\`python\nprint(sorted([3, 1, 2]))\n\`\`\`\nThat prints [1, 2, 3].`;
}

const THOUGHT_FRAME = /^Thought Process:\n([^]+)\n\nAnswer:\n/;

/**
 * Why a written record is not its input with thoughts added (default framing), or null when it
 * is: same keys in the same order, untouched turns identical, each thought turn being
 * `Thought Process:\nTHOUGHT\n\nAnswer:\nANSWER` with the original answer and a clean thought.
 *
 * @param expected The generated record.
 * @param written The parsed output line.
 * @returns The first difference found, or null.
 */
export function recordMismatch(expected: GeneratedRecord, written: unknown): string | null {
  if (!isRecord(written)) return "not an object";
  const input = expected.record;
  const keys = Object.keys(input);
  if (JSON.stringify(Object.keys(written)) !== JSON.stringify(keys)) {
    return `keys ${Object.keys(written).join(",")} instead of ${keys.join(",")}`;
  }
  for (const key of keys) {
    const before = input[key];
    const after = written[key];
    if (!Array.isArray(before)) {
      if (JSON.stringify(before) !== JSON.stringify(after)) return `field ${key} changed`;
      continue;
    }
    if (!Array.isArray(after) || after.length !== before.length) return `${key} length changed`;
    for (let index = 0; index < before.length; index++) {
      const turnBefore = before[index] as Record<string, unknown>;
      const turnAfter: unknown = after[index];
      if (!expected.thoughtTurns.includes(index)) {
        if (JSON.stringify(turnBefore) !== JSON.stringify(turnAfter)) {
          return `turn ${index + 1} changed though it needs no thought`;
        }
        continue;
      }
      const field = "value" in turnBefore ? "value" : "content";
      if (!isRecord(turnAfter)) return `turn ${index + 1} is not an object`;
      const text = turnAfter[field];
      const original = turnBefore[field] as string;
      if (typeof text !== "string") return `turn ${index + 1} lost its text`;
      const match = text.match(THOUGHT_FRAME);
      if (!match) return `turn ${index + 1} has no thought framing`;
      if (text.slice(match[0].length) !== original) return `turn ${index + 1} answer altered`;
      const thought = match[1];
      if (thought.trim() === "" || /<\/?thought_process>|<\/?think>/.test(thought)) {
        return `turn ${index + 1} has a bad thought: ${thought.slice(0, 80)}`;
      }
    }
  }
  return null;
}
