/**
 * One record in and out: parse and validate a ShareGPT (`{from, value}`) or OpenAI
 * (`{role, content}`) conversation, under a key or as a bare array of turns, normalise its roles,
 * and write it back in its own format with thoughts in front of chosen answers, every other field
 * untouched.
 *
 * @module
 */
import {
  carryKeyOrder,
  isDigitKey,
  learnKeyOrder,
  mayHaveIndexKeys,
  stringifyInSourceOrder,
} from "./key_order.ts";
import type { Conversation, ObjectConversation, Role, Turn, TurnShape } from "./types.ts";
import { cutText } from "./text_cut.ts";

/**
 * A record that cannot be used, with the 1-based line it starts on and a reason a person
 * understands.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRecord, RecordError } from "./records.ts";
 *
 * assert.throws(() => parseRecord("[1]", 7), (error) => {
 *   assert(error instanceof RecordError);
 *   assert.equal(error.line, 7);
 *   assert.equal(error.reason, "not a JSON object (found an array)");
 *   return true;
 * });
 * ```
 */
export class RecordError extends SyntaxError {
  /**
   * @param line The 1-based line the record starts on.
   * @param reason What is wrong with it.
   */
  constructor(readonly line: number, readonly reason: string) {
    super(`Cannot read record at line ${line}: ${reason}`);
    this.name = "RecordError";
  }
}

/** The text around a thought in a rewritten answer. */
export interface Framing {
  /** Goes before the thought, e.g. `Thought Process:`. */
  readonly preface: string;
  /** Goes between the thought and the original answer, e.g. `\nAnswer:`. */
  readonly suffix: string;
}

const ROLES: ReadonlyMap<string, Role> = new Map([
  ["human", "user"],
  ["user", "user"],
  // OpenAssistant's message trees (oasst1, oasst2) name the user so.
  ["prompter", "user"],
  ["gpt", "assistant"],
  ["assistant", "assistant"],
  ["bot", "assistant"],
  ["model", "assistant"],
  ["chatgpt", "assistant"],
  // ShareGPT_Vicuna_unfiltered, the original ShareGPT dump, names the other chatbots it saw.
  ["bing", "assistant"],
  ["bard", "assistant"],
  ["system", "system"],
  ["developer", "system"],
  ["tool", "tool"],
  ["function", "tool"],
  ["function_call", "tool"],
  ["observation", "tool"],
  ["ipython", "tool"],
  ["tool_call", "tool"],
  ["tool_response", "tool"],
  ["function_response", "tool"],
]);

// "conversation" is lmsys-chat-1m's key (OpenAI-style turns).
const LIST_KEYS = ["conversations", "messages", "conversation"];

/** A conversation as bare strings, user and assistant by turns (UltraChat, LIMA). */
function isTextList(value: unknown): value is string[] {
  return Array.isArray(value) && value.length > 0 &&
    value.every((item) => typeof item === "string");
}

/** U+FEFF, a byte order mark. */
const BOM = 0xfeff;

/**
 * `JSON.rawJSON` and `JSON.isRawJSON` (JSON.parse source text access): in V8, so in Deno, but not
 * yet in TypeScript's lib.
 */
const RAW_JSON = JSON as unknown as {
  rawJSON(text: string): unknown;
  isRawJSON(value: unknown): boolean;
};

/**
 * Parsed records holding an object whose key order JavaScript changed: only these pay for
 * {@linkcode stringifyInSourceOrder}, the rest are written by `JSON.stringify`.
 */
const IN_SOURCE_ORDER = new WeakSet<object>();

/** A flat record's keys: the request's, the answer's, and the optional ones beside them. */
interface FlatFormat {
  readonly request: string;
  readonly answer: string;
  /** Text the request adds after a blank line (Alpaca's `input`, Dolly's `context`). */
  readonly extra?: string;
  /** The system prompt's key when it is not the top-level `system`. */
  readonly system?: string;
  /** Earlier `[query, response]` pairs may come in `history` (LLaMA-Factory's Alpaca). */
  readonly history?: true;
}

/** Flat formats, tried in order; the first whose request and answer keys are present wins. */
const FLAT_FORMATS: readonly FlatFormat[] = [
  { request: "instruction", answer: "output", extra: "input", history: true }, // Alpaca
  { request: "instruction", answer: "response", extra: "context", history: true }, // Dolly
  { request: "question", answer: "response", system: "system_prompt" }, // OpenOrca
  { request: "question", answer: "answer", extra: "context" }, // GSM8K, sql-create-context
  { request: "prompt", answer: "completion" }, // OpenAI's legacy fine-tuning files, TRL
  { request: "prompt", answer: "response" }, // GPT4All, HelpSteer
  { request: "query", answer: "response" }, // MetaMathQA
  { request: "query", answer: "answer" }, // CodeFeedback
  { request: "problem", answer: "solution" }, // MATH, Magicoder OSS-Instruct
  { request: "inputs", answer: "targets" }, // FLAN, P3
  { request: "input", answer: "output" }, // Alpaca without an instruction
];

/** The flat formats as `"request" with "answer" or "answer"`, one entry per request key. */
function flatFormatList(): string {
  const answers = new Map<string, string[]>();
  for (const { request, answer } of FLAT_FORMATS) {
    answers.set(request, [...answers.get(request) ?? [], `"${answer}"`]);
  }
  return [...answers].map(([request, keys]) => `"${request}" with ${keys.join(" or ")}`)
    .join(", ");
}

const NO_CONVERSATION = 'no conversation: expected a "conversations", "messages" or ' +
  `"conversation" array, "prompt" and "completion" arrays, or a flat record (${flatFormatList()})`;

type ListShape = Exclude<TurnShape, "instruction" | "pairs" | "texts">;

const SHAPE_KEYS: Readonly<Record<ListShape, { role: string; text: string }>> = {
  sharegpt: { role: "from", text: "value" },
  openai: { role: "role", text: "content" },
};

/**
 * Parses one record's JSON text and checks it is a conversation: an object whose
 * `conversations`, `messages` or `conversation` array holds ShareGPT `{from, value}` or OpenAI
 * `{role, content}` turns (one shape per record), or such an array itself (`listKey` `null`),
 * known by its first element being a turn (an object with `from` or `role`); a lone turn is
 * rejected as one. Roles are normalised case-insensitively (`human` -> `user`, `gpt` ->
 * `assistant`, `function_call` -> `tool`...). OpenAI content may be a string, an array of parts
 * (text parts joined, others shown as `[type]`), or `null` (or absent) on assistant turns. A
 * top-level `system` string becomes `system`. Odd turn orders are accepted: which turns get
 * thoughts is decided elsewhere. A number JavaScript would write back differently (`1.50`, an id
 * past 2^53, `1e400`) is kept as its source text (`JSON.rawJSON`), and an object whose keys
 * JavaScript would reorder (integer-like keys, `"2024"`, come first) has its source order noted
 * for {@linkcode assembleRecord}.
 *
 * @param text The record's JSON text.
 * @param line The 1-based line it starts on, for errors.
 * @returns The parsed record, every field kept in `record`.
 * @throws {RecordError} When the text is not such a record; `reason` says why.
 *
 * @example Parsing a ShareGPT record
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRecord } from "./records.ts";
 *
 * const text = '{"id":7,"conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}';
 * const conversation = parseRecord(text, 3);
 * assert.equal(conversation.shape, "sharegpt");
 * assert.equal(conversation.listKey, "conversations");
 * assert.deepEqual(conversation.turns, [
 *   { index: 0, role: "user", name: "human", text: "Hi" },
 *   { index: 1, role: "assistant", name: "gpt", text: "Hello" },
 * ]);
 * ```
 */
export function parseRecord(text: string, line: number): Conversation {
  // A byte order mark inside the input, where files were joined (`cat a.jsonl b.jsonl`): it
  // stands before the JSON value, so it is no part of the record.
  if (text.charCodeAt(0) === BOM) text = text.slice(1);
  const needs = textNeeds(text);
  let value: unknown;
  try {
    value = needs & NUMBER_TEXT ? JSON.parse(text, keepNumberText) : JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Valid JSON can still be too deep for the reviver's recursion: say so, not "invalid".
    if (error instanceof RangeError) throw new RecordError(line, `nested too deeply: ${message}`);
    throw new RecordError(line, `not valid JSON: ${message}${utf16Hint(text)}${nanHint(text)}`);
  }
  if (needs & KEY_ORDER && learnKeyOrder(text, value)) IN_SOURCE_ORDER.add(value as object);
  if (!isObject(value)) {
    if (Array.isArray(value) && isTurn(value[0])) {
      // The first element decides, as for a keyed list: later ones get the turn errors.
      return { line, listKey: null, record: value, system: null, ...readListTurns(value, line) };
    }
    if (Array.isArray(value) && value.length === 0) {
      throw new RecordError(line, "an empty array: a conversation needs turns");
    }
    throw new RecordError(line, `not a JSON object (found ${describe(value)})`);
  }
  const record = value;

  const system = own(record, "system");
  // null is how dataframe exports write "no system prompt" in a column others fill.
  if (system !== undefined && system !== null && typeof system !== "string") {
    throw new RecordError(line, `"system" must be a string (found ${describe(system)})`);
  }
  const systemPrompt = typeof system === "string" ? system : null;

  // A turn list wins over every other field: flat keys, `prompt`/`completion`, `data` beside it
  // are metadata then. An empty one gives way to a flat format, as an empty column would.
  const listKey = LIST_KEYS.find((key) => Array.isArray(own(record, key)));
  const list = listKey === undefined ? [] : own(record, listKey) as unknown[];
  if (listKey !== undefined && list.length > 0) {
    if (isTextList(list)) return textsConversation(record, listKey, list, line, systemPrompt);
    if (isObject(list[0]) && isPair(list[0])) {
      return {
        line,
        shape: "pairs",
        listKey,
        record,
        system: systemPrompt,
        turns: readPairs(list, line),
      };
    }
    return { line, listKey, record, system: systemPrompt, ...readListTurns(list, line) };
  }
  const prompt = own(record, "prompt");
  const completion = own(record, "completion");
  if (Array.isArray(prompt) && Array.isArray(completion) && completion.length > 0) {
    // TRL's conversational prompt-completion: the completion's turns follow the prompt's.
    const { shape, turns } = readListTurns([...prompt, ...completion], line);
    const tail = { key: "completion", from: prompt.length };
    return { line, shape, listKey: "prompt", tail, record, system: systemPrompt, turns };
  }
  // null is how dataframe exports write an empty column of a merged dataset's other format.
  const present = LIST_KEYS.find((key) => {
    const value = own(record, key);
    return value !== undefined && value !== null && !Array.isArray(value);
  });
  if (present !== undefined) {
    throw new RecordError(
      line,
      `"${present}" must be an array (found ${describe(own(record, present))})`,
    );
  }
  const flat = readInstructionRecord(record, line, systemPrompt);
  if (flat !== null) return flat;
  if (listKey !== undefined) throw new RecordError(line, "conversation has no turns");
  // UltraChat's bare strings, only when no flat format reads the record: elsewhere a `data`
  // list of strings is metadata (tags, sources).
  const data = own(record, "data");
  if (isTextList(data)) return textsConversation(record, "data", data, line, systemPrompt);
  if (isTurn(record)) throw new RecordError(line, loneTurn(record));
  const empty = LIST_KEYS.find((key) => own(record, key) === null);
  if (empty !== undefined) throw new RecordError(line, `"${empty}" must be an array (found null)`);
  throw new RecordError(
    line,
    NO_CONVERSATION + wrapperHint(record) + transcriptHint(record) + preferenceHint(record),
  );
}

/** Bare strings taking turns from the user, under `key` (UltraChat's `data`, LIMA's). */
function textsConversation(
  record: Record<string, unknown>,
  key: string,
  texts: readonly string[],
  line: number,
  system: string | null,
): Conversation {
  const turns = texts.map((text, index): Turn => ({
    index,
    role: index % 2 === 0 ? "user" : "assistant",
    name: key,
    text,
  }));
  return { line, shape: "texts", listKey: key, record, system, turns };
}

/**
 * Whether `value` is a bare conversation: a non-empty array whose every element is a turn, an
 * object with a ShareGPT `from` or an OpenAI `role`. The turns themselves are not checked, so a
 * malformed one is reported by {@linkcode parseRecord} like any other.
 *
 * @param value A parsed JSON value.
 * @returns `true` when `value` is such an array.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTurnList } from "./records.ts";
 *
 * const turns = [{ from: "human", value: "Hi" }, { from: "gpt", value: "Hello" }];
 * assert.equal(isTurnList(turns), true);
 * assert.equal(isTurnList([{ conversations: [] }]), false);
 * assert.equal(isTurnList([]), false);
 * ```
 */
export function isTurnList(value: unknown): boolean {
  return Array.isArray(value) && value.length > 0 && value.every(isTurn);
}

/** An object with a turn's role key, ShareGPT's `from` or OpenAI's `role`. */
function isTurn(value: unknown): value is Record<string, unknown> {
  return isObject(value) && shapeOf(value) !== null;
}

/** The reason a lone turn (a turn list's element read as a whole record) is rejected. */
function loneTurn(turn: Record<string, unknown>): string {
  return `one turn, not a conversation: a record is a whole list of ${
    braces(shapeOf(turn) ?? "sharegpt")
  } turns, as a JSON array on one line or under "conversations" or "messages"`;
}

/** ShareGPT or OpenAI turns, one shape for the whole list (not empty). */
function readListTurns(
  list: readonly unknown[],
  line: number,
): { shape: ListShape; turns: Turn[] } {
  let shape: ListShape | null = null;
  const turns: Turn[] = [];
  for (let index = 0; index < list.length; index++) {
    const raw = list[index];
    const number = index + 1;
    if (!isObject(raw)) {
      throw new RecordError(line, `turn ${number} is not an object (found ${describe(raw)})`);
    }
    const turnShape = shapeOf(raw);
    if (turnShape === null) {
      throw new RecordError(line, `turn ${number} has neither {from, value} nor {role, content}`);
    }
    shape ??= turnShape;
    if (turnShape !== shape) {
      throw new RecordError(
        line,
        `turn ${number} mixes ${braces(turnShape)} with ${braces(shape)} turns`,
      );
    }
    turns.push(readTurn(raw, index, turnShape, line));
  }

  return { shape: shape ?? "sharegpt", turns }; // always set by now: the list is not empty
}

/**
 * An answer with its thought in front: `preface`, thought, `suffix`, answer, one per line.
 *
 * @param framing The preface and suffix.
 * @param thought The thought process.
 * @param answer The original answer, kept as is.
 * @returns `preface + "\n" + thought + "\n" + suffix + "\n" + answer`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { composeAnswer } from "./records.ts";
 *
 * const framing = { preface: "Thought Process:", suffix: "\nAnswer:" };
 * assert.equal(
 *   composeAnswer(framing, "Add them.", "4"),
 *   "Thought Process:\nAdd them.\n\nAnswer:\n4",
 * );
 * ```
 */
export function composeAnswer(framing: Framing, thought: string, answer: string): string {
  return framing.preface + "\n" + thought + "\n" + framing.suffix + "\n" + answer;
}

/** An answer that opens with a reasoning block, after any white space. */
const THINK_START = /^\s*<think>/;

/**
 * Whether `answer` already carries a thought: in `framing`'s format, the preface on its own line
 * and the suffix on a line of its own after it, as {@linkcode composeAnswer} writes (for array
 * content, the joined text of the parts; CRLF line ends too), or as a leading `<think>...</think>`
 * block, as reasoning models (DeepSeek-R1, QwQ) and data distilled from them write it. Such an
 * answer is left alone, so a rerun on cotfit's own output, or on data that already reasons, adds
 * no second thought. A framing whose preface and suffix are both blank cannot be recognised, and
 * nothing matches it.
 *
 * @param framing The preface and suffix.
 * @param answer The answer's text.
 * @returns `true` when the answer already has a thought.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { composeAnswer, hasThought } from "./records.ts";
 *
 * const framing = { preface: "Thought Process:", suffix: "\nAnswer:" };
 * assert.equal(hasThought(framing, composeAnswer(framing, "Add them.", "4")), true);
 * assert.equal(hasThought(framing, "4"), false);
 * assert.equal(hasThought(framing, "Thought Process: none needed. 4"), false);
 * assert.equal(hasThought(framing, "Thought Process:\r\nAdd.\r\n\r\nAnswer:\r\n4"), true);
 * assert.equal(hasThought(framing, "<think>\n2 and 2 make 4.\n</think>\n\n4"), true);
 * assert.equal(hasThought(framing, "Use <think> tags."), false);
 * ```
 */
export function hasThought(framing: Framing, answer: string): boolean {
  if (THINK_START.test(answer) && answer.includes("</think>")) return true;
  const { preface, suffix } = framing;
  if (preface.trim() === "" && suffix.trim() === "") return false;
  const text = answer.includes("\r\n") ? answer.replaceAll("\r\n", "\n") : answer;
  const head = preface + "\n";
  return text.startsWith(head) && text.includes("\n" + suffix + "\n", head.length);
}

/**
 * Writes a record back as one line of JSON in its own format, with each turn listed in
 * `thoughts` given its thought (see {@linkcode composeAnswer}). A string answer is rewritten; an
 * array of content parts gets a new first text part, the original parts untouched. Everything
 * else is `JSON.stringify` of the parsed input: every extra field kept, every object's keys in
 * their source order (integer-like keys too, which JavaScript alone would move first), numbers
 * in their original text (see {@linkcode parseRecord}), no system prompt added; a bare turn list
 * stays a bare array. The input record is not modified.
 *
 * @param conversation A record from {@linkcode parseRecord}.
 * @param thoughts Thoughts by turn index (0-based position in the turn array).
 * @param framing The preface and suffix around each thought.
 * @returns The record as JSON text without a line break.
 * @throws {RangeError} When a thought names a turn the record does not have.
 * @throws {TypeError} When a thought names a turn without text (e.g. `content: null`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { assembleRecord, parseRecord } from "./records.ts";
 *
 * const conversation = parseRecord(
 *   '{"id":1,"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}],"x":0}',
 *   1,
 * );
 * const framing = { preface: "Thought Process:", suffix: "\nAnswer:" };
 * assert.equal(
 *   assembleRecord(conversation, new Map([[1, "Add."]]), framing),
 *   '{"id":1,"messages":[{"role":"user","content":"2+2?"},' +
 *     '{"role":"assistant","content":"Thought Process:\\nAdd.\\n\\nAnswer:\\n4"}],"x":0}',
 * );
 * ```
 */
export function assembleRecord(
  conversation: Conversation,
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): string {
  const written = recordWithThoughts(conversation, thoughts, framing);
  return IN_SOURCE_ORDER.has(conversation.record)
    ? stringifyInSourceOrder(written)
    : JSON.stringify(written);
}

/** A copy of the record with its thoughts in (the record itself when there are none). */
function recordWithThoughts(
  conversation: Conversation,
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): unknown {
  if (thoughts.size === 0) return conversation.record;
  if (conversation.listKey === null) {
    return turnsWithThoughts(conversation.record, conversation, thoughts, framing);
  }
  const { record, listKey, line } = conversation;
  if (conversation.shape === "instruction") {
    return assembleInstruction(conversation, thoughts, framing);
  }
  if (conversation.shape === "pairs") return assemblePairs(conversation, thoughts, framing);
  if (conversation.shape === "texts") return assembleTexts(conversation, thoughts, framing);
  const head = own(record, listKey);
  const tail = conversation.tail && own(record, conversation.tail.key);
  if (!Array.isArray(head) || (conversation.tail && !Array.isArray(tail))) {
    throw new TypeError(`Cannot assemble record at line ${line}: "${listKey}" is not an array`);
  }
  const list = Array.isArray(tail) ? [...head, ...tail] : head;
  const shape = conversation.shape;
  const turns = turnsWithThoughts(list, { shape, line }, thoughts, framing);
  if (conversation.tail === undefined) {
    return carryKeyOrder(record, { ...record, [listKey]: turns });
  }
  const { key, from } = conversation.tail;
  return carryKeyOrder(record, {
    ...record,
    [listKey]: turns.slice(0, from),
    [key]: turns.slice(from),
  });
}

/** A copy of a ShareGPT or OpenAI turn list with each thought put in its turn's text. */
function turnsWithThoughts(
  list: readonly unknown[],
  { shape, line }: { readonly shape: ListShape; readonly line: number },
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): unknown[] {
  const textKey = SHAPE_KEYS[shape].text;
  const turns = list.slice();
  for (const [index, thought] of thoughts) {
    const turn: unknown = list[index];
    if (!Number.isInteger(index) || !isObject(turn)) {
      throw new RangeError(
        `Cannot add a thought to turn ${index + 1} of record at line ${line}: no such turn`,
      );
    }
    const answer = own(turn, textKey);
    if (typeof answer === "string") {
      const text = composeAnswer(framing, thought, answer);
      turns[index] = carryKeyOrder(turn, { ...turn, [textKey]: text });
    } else if (Array.isArray(answer)) {
      // In the answer's own kind of text part (the Responses API's `output_text`, say).
      const type = answer.find(isTextPart)?.type ?? "text";
      const thoughtPart = { type, text: composeAnswer(framing, thought, "") };
      turns[index] = carryKeyOrder(turn, { ...turn, [textKey]: [thoughtPart, ...answer] });
    } else {
      throw new TypeError(
        `Cannot add a thought to turn ${index + 1} of record at line ${line}: it has no text`,
      );
    }
  }
  return turns;
}

/** A run that reads as a number, strings included: every number token of the JSON is one. */
const NUMBER_LIKE = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
/** Past this many number-like runs, checking them would cost more than the reviver. */
const MAX_CHECKED_NUMBERS = 64;
/**
 * Fewer opening brackets than this cannot nest deep enough to overflow a recursion (the
 * reviver's own limit is about 3,400 levels, `JSON.stringify`'s beyond it), so such a record
 * needs no reviver to be caught at parse time.
 */
const SHALLOW_BRACKETS = 1_000;

/** A {@linkcode textNeeds} flag: parse with {@linkcode keepNumberText}. */
const NUMBER_TEXT = 1;
/** A {@linkcode textNeeds} flag: some key may be integer-like, so learn the key order. */
const KEY_ORDER = 2;

/**
 * What parsing `text` needs beyond `JSON.parse`, as flags, from one pass over its number-like
 * runs. `NUMBER_TEXT`: some run would be written back differently, or the text may nest deeply
 * enough to overflow a recursion, which the reviver's walk meets at parse time. Most records
 * need neither, and the reviver cost ~3 µs and ~1.3 KB of garbage per 1.2 KB record. The check
 * applies the reviver's own test (`String(value) === source`) to a superset of the number
 * tokens, so a record it passes parses to the same values without it. `KEY_ORDER`: a run is a
 * whole key (`"2024":`), as every integer-like key written in plain digits is; one escaped
 * (`"\u0032"`) has a run that fails the number test (`0032`), and when that test stops the pass
 * early, {@linkcode mayHaveIndexKeys} looks at the whole text instead. So a record with no such
 * key pays a few character reads for it.
 */
function textNeeds(text: string): number {
  let numbers = 0;
  let needs = 0;
  for (const match of text.matchAll(NUMBER_LIKE)) {
    const run = match[0];
    if (++numbers > MAX_CHECKED_NUMBERS || String(Number(run)) !== run) {
      return NUMBER_TEXT | (mayHaveIndexKeys(text) ? KEY_ORDER : 0);
    }
    if (isDigitKey(text, match.index, match.index + run.length)) needs = KEY_ORDER;
  }
  let brackets = 0;
  for (const open of ["{", "["]) {
    for (let at = text.indexOf(open); at !== -1; at = text.indexOf(open, at + 1)) {
      if (++brackets >= SHALLOW_BRACKETS) return NUMBER_TEXT | needs;
    }
  }
  return needs;
}

/**
 * A `JSON.parse` reviver that keeps the source text of every number that JavaScript would
 * write back differently (`1.50`, `1e5`, `-0`, `12345678901234567890`, `1e400`), as
 * `JSON.rawJSON`, which `JSON.stringify` writes verbatim: ids past 2^53 keep their digits and a
 * number too large for a double does not become `null`. Other values are kept as parsed.
 */
function keepNumberText(
  _key: string,
  value: unknown,
  context?: { readonly source?: string },
): unknown {
  if (typeof value !== "number") return value;
  const source = context?.source;
  return source === undefined || String(value) === source ? value : RAW_JSON.rawJSON(source);
}

/**
 * An `instruction` record with its thoughts: the last turn's in its answer field, the others in
 * the responses of its `history` pairs (turn 2i + 1 is pair i's response).
 */
function assembleInstruction(
  conversation: ObjectConversation,
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): Record<string, unknown> {
  const { record, listKey, line, turns } = conversation;
  const last = turns.length - 1;
  const history = own(record, "history");
  const pairs = Array.isArray(history) ? history.slice() : [];
  const updated: Record<string, unknown> = carryKeyOrder(record, { ...record });
  for (const [index, thought] of thoughts) {
    // Every assistant turn but the last comes from a history pair.
    const answer = turns[index]?.role === "assistant" ? turns[index].text : null;
    if (answer === null || answer === undefined) throw noSuchAnswer(index, line);
    const composed = composeAnswer(framing, thought, answer);
    if (index === last) updated[listKey] = composed;
    else {
      const at = (index - 1) / 2;
      pairs[at] = [(pairs[at] as unknown[])[0], composed];
    }
  }
  if (Array.isArray(history)) updated.history = pairs;
  return updated;
}

/**
 * Reads a flat record (see {@linkcode FLAT_FORMATS}) as a user turn (the request, then its extra
 * text after a blank line) and the answer, after the `[query, response]` pairs of its `history`
 * when its format has one; `null` when the record is none of them. `system` is the top-level
 * `system` prompt, used unless the format has a system key of its own that holds a string.
 */
function readInstructionRecord(
  record: Record<string, unknown>,
  line: number,
  system: string | null,
): ObjectConversation | null {
  for (const format of FLAT_FORMATS) {
    const request = own(record, format.request);
    const answer = own(record, format.answer);
    if (typeof request !== "string" || answer === undefined) continue;
    if (typeof answer !== "string") {
      throw new RecordError(
        line,
        `"${format.answer}" must be a string (found ${describe(answer)})`,
      );
    }
    const extra = optionalString(record, format.extra, line);
    const ownSystem = optionalString(record, format.system, line);
    const text = extra !== null && extra.trim() !== "" ? `${request}\n\n${extra}` : request;
    const turns = format.history ? historyTurns(own(record, "history"), line) : [];
    turns.push(
      { index: turns.length, role: "user", name: format.request, text },
      { index: turns.length + 1, role: "assistant", name: format.answer, text: answer },
    );
    return {
      line,
      shape: "instruction",
      listKey: format.answer,
      record,
      system: ownSystem ?? system,
      turns,
    };
  }
  return null;
}

/** `record[key]` when it is a string, `null` when it is absent or null (or `key` is undefined). */
function optionalString(
  record: Record<string, unknown>,
  key: string | undefined,
  line: number,
): string | null {
  const value = key === undefined ? undefined : own(record, key);
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") {
    throw new RecordError(line, `"${key}" must be a string (found ${describe(value)})`);
  }
  return value;
}

/** The turns of an Alpaca record's `history`: a list of `[query, response]` string pairs. */
function historyTurns(history: unknown, line: number): Turn[] {
  if (history === undefined || history === null) return [];
  if (!Array.isArray(history)) {
    throw new RecordError(line, `"history" must be an array (found ${describe(history)})`);
  }
  return history.flatMap((pair: unknown, i): Turn[] => {
    if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((t) => typeof t === "string")) {
      throw new RecordError(
        line,
        `"history" item ${i + 1} must be a [query, response] pair of strings`,
      );
    }
    return [
      { index: 2 * i, role: "user", name: "history", text: pair[0] },
      { index: 2 * i + 1, role: "assistant", name: "history", text: pair[1] },
    ];
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !RAW_JSON.isRawJSON(value);
}

/** An own property, so that keys like `constructor` never come from the prototype. */
function own(object: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (RAW_JSON.isRawJSON(value)) return "a number";
  if (value === undefined) return "nothing";
  const type = typeof value;
  return type === "object" ? "an object" : `a ${type}`;
}

function braces(shape: ListShape): string {
  const keys = SHAPE_KEYS[shape];
  return `{${keys.role}, ${keys.text}}`;
}

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
}

function shapeOf(turn: Record<string, unknown>): ListShape | null {
  const from = own(turn, "from");
  const role = own(turn, "role");
  // A null key is a dataframe export's empty column: a turn of both shapes is read by the other.
  if (from !== undefined && (from !== null || role === undefined || role === null)) {
    return "sharegpt";
  }
  return role === undefined ? null : "openai";
}

/**
 * How to unwrap `record` when it is a wrapper around records (`{"data": [{...}, ...]}`, as some
 * datasets ship a whole `.json` file), else "".
 */
function wrapperHint(record: Record<string, unknown>): string {
  for (const key of Object.keys(record)) {
    const value = record[key];
    if (!Array.isArray(value) || !isObject(value[0])) continue;
    const first = value[0];
    const looksLikeRecord = LIST_KEYS.some((listKey) => Array.isArray(own(first, listKey))) ||
      FLAT_FORMATS.some((format) => typeof own(first, format.request) === "string");
    if (!looksLikeRecord) continue;
    const name = JSON.stringify(key);
    const path = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `.[${name}]`;
    const count = value.length === 1 ? "1 record" : `${value.length} records`;
    return `; its ${name} array holds ${count}: unwrap them first (jq -c '${path}[]' in.json > in.jsonl)`;
  }
  return "";
}

/**
 * What a lone `text` (or glaive's `chat`) string is, when the record has one: a whole chat
 * template or transcript (openassistant-guanaco's `### Human: ... ### Assistant: ...`, glaive's
 * `USER: ... ASSISTANT: ...`), whose turns cotfit cannot tell apart safely; else "".
 */
function transcriptHint(record: Record<string, unknown>): string {
  const key = TRANSCRIPT_KEYS.find((key) => typeof own(record, key) === "string");
  if (key === undefined) return "";
  return `; "${key}" holds a whole transcript in one string: split it into turns first`;
}

const TRANSCRIPT_KEYS = ["text", "chat"];

/** What a preference pair (DPO data: `chosen` and `rejected`) is, when the record is one; else "". */
function preferenceHint(record: Record<string, unknown>): string {
  if (own(record, "chosen") === undefined || own(record, "rejected") === undefined) return "";
  return '; "chosen" and "rejected" make a preference pair (DPO data), not one conversation: ' +
    'take the "chosen" side as the conversation first';
}

/**
 * What JSON that does not parse may be: text that is a third NUL characters or more is most
 * likely UTF-16 read as UTF-8 (every ASCII character comes with a NUL), which has no byte order
 * mark to tell it by; else "".
 */
function utf16Hint(text: string): string {
  let nuls = 0;
  for (let at = text.indexOf("\0"); at !== -1; at = text.indexOf("\0", at + 1)) nuls++;
  if (nuls * 3 < text.length) return "";
  return "; it holds NUL characters, as UTF-16 text without a byte order mark does: convert it " +
    "to UTF-8 first (iconv -f UTF-16LE -t UTF-8)";
}

/** A bare `NaN` or `Infinity` where a value stands, as Python's `json.dumps` writes them. */
const NON_JSON_NUMBER = /[:[,]\s*(?:NaN|-?Infinity)\s*[,\]}]/;

function nanHint(text: string): string {
  if (!NON_JSON_NUMBER.test(text)) return "";
  return "; NaN and Infinity are not JSON (Python's json.dumps writes them): write null " +
    "instead, or dump with allow_nan=False to find them";
}

/** A Capybara-style `{input, output}` element: neither ShareGPT's `from` nor OpenAI's `role`. */
function isPair(element: Record<string, unknown>): boolean {
  return Object.hasOwn(element, "input") && Object.hasOwn(element, "output") &&
    !Object.hasOwn(element, "from") && !Object.hasOwn(element, "role");
}

/** `{input, output}` pairs as turns: pair i is user turn 2i and its answer, turn 2i + 1. */
function readPairs(list: readonly unknown[], line: number): Turn[] {
  const turns: Turn[] = [];
  for (let at = 0; at < list.length; at++) {
    const pair = list[at];
    const number = at + 1;
    if (!isObject(pair)) {
      throw new RecordError(line, `pair ${number} is not an object (found ${describe(pair)})`);
    }
    if (!isPair(pair)) {
      throw new RecordError(line, `pair ${number} is not an {input, output} pair like pair 1`);
    }
    for (const key of ["input", "output"]) {
      const text = own(pair, key);
      if (typeof text !== "string") {
        throw new RecordError(
          line,
          `pair ${number}: "${key}" must be a string (found ${describe(text)})`,
        );
      }
      turns.push({
        index: 2 * at + (key === "input" ? 0 : 1),
        role: key === "input" ? "user" : "assistant",
        name: key,
        text,
      });
    }
  }
  return turns;
}

/** A `pairs` record with its thoughts in the outputs (turn 2i + 1 is pair i's output). */
function assemblePairs(
  conversation: ObjectConversation,
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): Record<string, unknown> {
  return assembleList(conversation, thoughts, (pairs, index, thought) => {
    const at = (index - 1) / 2;
    const pair: unknown = pairs[at];
    const answer = Number.isInteger(at) && isObject(pair) ? own(pair, "output") : undefined;
    if (typeof answer !== "string") return false;
    const output = composeAnswer(framing, thought, answer);
    pairs[at] = carryKeyOrder(pair as object, { ...pair as Record<string, unknown>, output });
    return true;
  });
}

/** A `texts` record with its thoughts in the answers (every odd index). */
function assembleTexts(
  conversation: ObjectConversation,
  thoughts: ReadonlyMap<number, string>,
  framing: Framing,
): Record<string, unknown> {
  return assembleList(conversation, thoughts, (texts, index, thought) => {
    const answer: unknown = index % 2 === 1 ? texts[index] : undefined;
    if (typeof answer !== "string") return false;
    texts[index] = composeAnswer(framing, thought, answer);
    return true;
  });
}

/**
 * A copy of the record with a copy of its `listKey` list, each thought put in by `put`, which
 * says `false` when turn `index` is no answer it can hold one.
 */
function assembleList(
  conversation: ObjectConversation,
  thoughts: ReadonlyMap<number, string>,
  put: (items: unknown[], index: number, thought: string) => boolean,
): Record<string, unknown> {
  const { record, listKey, line } = conversation;
  const list = own(record, listKey);
  const items = Array.isArray(list) ? list.slice() : [];
  for (const [index, thought] of thoughts) {
    if (!put(items, index, thought)) throw noSuchAnswer(index, line);
  }
  return carryKeyOrder(record, { ...record, [listKey]: items });
}

function noSuchAnswer(index: number, line: number): RangeError {
  return new RangeError(
    `Cannot add a thought to turn ${index + 1} of record at line ${line}: no such answer`,
  );
}

/** The normalised turn. */
function readTurn(
  raw: Record<string, unknown>,
  index: number,
  shape: ListShape,
  line: number,
): Turn {
  const keys = SHAPE_KEYS[shape];
  const name = own(raw, keys.role);
  if (typeof name !== "string") {
    throw turnError(line, index, `"${keys.role}" must be a string (found ${describe(name)})`);
  }
  const role = ROLES.get(name.toLowerCase());
  if (role === undefined) throw turnError(line, index, `unknown role ${quote(name)}`);

  const value = own(raw, keys.text);
  let text: string | null;
  if (typeof value === "string") text = value;
  else if (shape === "sharegpt") {
    throw turnError(
      line,
      index,
      value === undefined
        ? '"value" is missing'
        : `"value" must be a string (found ${describe(value)})`,
    );
  } else if (Array.isArray(value)) {
    const parts = partsText(value, index, line);
    text = parts.text;
    if (!parts.hasText && role === "assistant") return { index, role, name, text, textless: true };
  } else if (value === null || value === undefined) {
    // Assistant turns that only call tools carry no text.
    if (role !== "assistant") {
      throw turnError(
        line,
        index,
        value === null ? '"content" may be null only on assistant turns' : '"content" is missing',
      );
    }
    text = null;
  } else {
    throw turnError(
      line,
      index,
      `"content" must be a string, an array of parts or null (found ${describe(value)})`,
    );
  }
  if (role !== "assistant") return { index, role, name, text };
  const calls = shape === "openai" ? toolCalls(raw) : null;
  const reasoned = hasReasoning(raw, value);
  if (calls === null && !reasoned) return { index, role, name, text };
  return {
    index,
    role,
    name,
    text,
    ...(reasoned && { reasoned }),
    ...(calls !== null && { calls }),
  };
}

/** Characters of a call's arguments shown to the model; tool arguments are short as a rule. */
const MAX_CALL_ARGUMENT_CHARS = 500;

/**
 * An OpenAI assistant turn's tool calls (`tool_calls`, or the legacy `function_call`) as
 * `name(arguments)` joined by `; `, or `null` when it names none.
 */
function toolCalls(raw: Record<string, unknown>): string | null {
  const list = own(raw, "tool_calls");
  const legacy = own(raw, "function_call");
  if (!Array.isArray(list) && !isObject(legacy)) return null;
  const calls = [
    ...(Array.isArray(list) ? list : []),
    ...(isObject(legacy) ? [{ function: legacy }] : []),
  ];
  const shown: string[] = [];
  for (const call of calls) {
    const fn = isObject(call) ? own(call, "function") : undefined;
    const name = isObject(fn) ? own(fn, "name") : undefined;
    if (typeof name !== "string" || !isObject(fn)) continue;
    const args = own(fn, "arguments");
    const text = typeof args === "string" ? args : args === undefined ? "" : JSON.stringify(args);
    shown.push(
      `${name}(${cutText(text, MAX_CALL_ARGUMENT_CHARS, "…")})`,
    );
  }
  return shown.length > 0 ? shown.join("; ") : null;
}

const REASONING_KEYS = ["reasoning_content", "reasoning"];
const REASONING_PARTS = new Set(["thinking", "reasoning"]);

/**
 * Whether an answer's turn keeps its reasoning beside its text: a `reasoning_content` or
 * `reasoning` field, as DeepSeek's API and OpenRouter return them and datasets built from them
 * keep them, or a `thinking` content part (Anthropic's messages).
 */
function hasReasoning(raw: Record<string, unknown>, content: unknown): boolean {
  for (const key of REASONING_KEYS) {
    const value = own(raw, key);
    if (typeof value === "string" && value.trim() !== "") return true;
  }
  return Array.isArray(content) &&
    content.some((part) => isObject(part) && REASONING_PARTS.has(own(part, "type") as string));
}

/**
 * Text parts joined, a refusal part's refusal too (it is the answer's text); other parts (images,
 * audio...) shown as `[type]` so a reader knows. `hasText`: some part had non-blank text.
 */
/** Content part types that hold text: Chat Completions' and the Responses API's. */
const TEXT_PART_TYPES = new Set(["text", "input_text", "output_text"]);

function isTextPart(part: unknown): part is { type: string } {
  return isObject(part) && typeof part.type === "string" && TEXT_PART_TYPES.has(part.type);
}

function partsText(
  parts: readonly unknown[],
  index: number,
  line: number,
): { text: string; hasText: boolean } {
  let text = "";
  let hasText = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    const label = `content part ${i + 1}`;
    if (!isObject(part)) {
      throw turnError(line, index, `${label} is not an object (found ${describe(part)})`);
    }
    const type = own(part, "type");
    if (typeof type !== "string") {
      throw turnError(line, index, `${label}: "type" must be a string (found ${describe(type)})`);
    }
    const refusal = type === "refusal" ? own(part, "refusal") : undefined;
    if (typeof refusal === "string") {
      text += refusal;
      hasText ||= refusal.trim() !== "";
      continue;
    }
    if (!TEXT_PART_TYPES.has(type)) {
      text += `[${type}]`;
      continue;
    }
    const partText = own(part, "text");
    if (typeof partText !== "string") {
      throw turnError(
        line,
        index,
        `${label}: "text" must be a string (found ${describe(partText)})`,
      );
    }
    text += partText;
    hasText ||= partText.trim() !== "";
  }
  return { text, hasText };
}

function turnError(line: number, index: number, reason: string): RecordError {
  return new RecordError(line, `turn ${index + 1}: ${reason}`);
}
