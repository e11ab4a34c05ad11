/**
 * Shared data shapes of the cotfit pipeline. Pure types: no runtime code lives here, so every
 * module can import them without pulling anything else in.
 *
 * @module
 */

/**
 * One unit of input text: a JSONL line, or one element of a JSON array file. `line` is the
 * 1-based line number where it starts in its source.
 */
export type Line =
  | { readonly line: number; readonly text: string }
  | {
    readonly line: number;
    /** Why the line cannot be used (over-long, invalid UTF-8...). */
    readonly error: string;
    /** The start of the raw text, cut, for the rejects file. */
    readonly preview: string;
    /**
     * Nothing after this line could be read: compressed or UTF-16 data broke off here (cutting
     * this line's record, if any), or bytes that are not gzip data follow its end.
     */
    readonly final?: true;
  };

/**
 * Why an input could not be read to its end: compressed data that breaks off, is corrupt or is
 * followed by junk, or UTF-16 that turns into bytes that are not UTF-16.
 */
export interface InputFault {
  /** What broke, where in the input's bytes, and what could not be read. */
  readonly reason: string;
  /**
   * Whether the text decoded before the fault may stop inside a record: true when the data broke
   * off or went bad mid-stream, false when it ended whole and only what came after it is unreadable.
   */
  readonly cut: boolean;
}

/** A turn's role after normalisation (`human` -> `user`, `gpt` -> `assistant`...). */
export type Role = "system" | "user" | "assistant" | "tool";

/** One turn of a conversation, normalised; the raw object stays in the record. */
export interface Turn {
  /** Position in the record's turn array. */
  readonly index: number;
  readonly role: Role;
  /** The role as the record wrote it (`gpt`, `human`, `function_call`...). */
  readonly name: string;
  /** The turn's text; `null` when it has none (an assistant tool-call turn with content null). */
  readonly text: string | null;
  /**
   * The turn carries its own reasoning beside its text (a `reasoning_content` or `reasoning`
   * field, or a `thinking` content part), so its answer already has a thought.
   */
  readonly reasoned?: true;
  /**
   * An assistant turn whose content parts hold no text (only images, audio...): its `text` shows
   * them as `[type]` to the model, but there is no answer to give a thought.
   */
  readonly textless?: true;
  /**
   * The tool calls of an assistant turn (OpenAI `tool_calls` or the legacy `function_call`), as
   * `name(arguments)` joined by `; `, arguments cut; shown to the model with the turn.
   */
  readonly calls?: string;
}

/**
 * Record shape: turns as ShareGPT `{from, value}` or OpenAI `{role, content}`, `{input, output}`
 * pairs (Capybara's `conversation`), each a user turn and its answer, bare strings taking turns
 * from the user (UltraChat's `data`: `texts`), or a flat `instruction`
 * record (Alpaca `instruction`/`input`/`output`, Dolly `instruction`/`context`/`response`,
 * OpenOrca `question`/`response`, `prompt`/`completion`, FLAN `inputs`/`targets`...) read as one
 * user turn and its answer.
 */
export type TurnShape = "sharegpt" | "openai" | "pairs" | "texts" | "instruction";

/** What every parsed record has, whatever its JSON value. */
interface ConversationBase {
  /** 1-based source line number. */
  readonly line: number;
  readonly shape: TurnShape;
  /** A top-level `system` string field, when the record has one (LLaMA-Factory style). */
  readonly system: string | null;
  readonly turns: readonly Turn[];
}

/** A record that is a JSON object, its turns under a key or in flat fields. */
export interface ObjectConversation extends ConversationBase {
  /**
   * The key holding the turn array (`conversations`, `messages`, `conversation`, or `data` for
   * `texts`); for an
   * `instruction` record, the answer's key (`output`, `response`, `completion`...).
   */
  readonly listKey: string;
  /**
   * Where turns continue in a second list: TRL's conversational prompt-completion, whose
   * `completion` turns follow the `prompt` ones (`listKey`) from turn index `from` on.
   */
  readonly tail?: { readonly key: string; readonly from: number };
  /** The parsed JSON object, every field untouched, for re-serialisation in its own format. */
  readonly record: Record<string, unknown>;
}

/**
 * A record that is itself the turn list: a bare JSON array of ShareGPT or OpenAI turns, as
 * `json.dumps(messages)` writes one per line. It has no key and no top-level `system`.
 */
export interface BareListConversation extends ConversationBase {
  readonly shape: "sharegpt" | "openai";
  /** `null`: the turns are the record itself, not under a key. */
  readonly listKey: null;
  /** The parsed JSON array, every turn untouched, for re-serialisation as an array. */
  readonly record: readonly unknown[];
  readonly system: null;
}

/** A parsed, validated input record; `listKey` tells an object from a bare turn list. */
export type Conversation = ObjectConversation | BareListConversation;

/** Everything the LLM needs to write the thought for one assistant turn. */
export interface ThoughtRequest {
  /** Index of the assistant turn in the record's turn array. */
  readonly turnIndex: number;
  /** The record's system prompt (leading system turns and/or a top-level `system` field). */
  readonly system: string | null;
  /** Turns before `request`, oldest first, trimmed to the history budget. */
  readonly history: readonly Turn[];
  /** How many of the oldest history turns were dropped to fit the budget. */
  readonly droppedTurns: number;
  /** The latest user turn before the answer. */
  readonly request: Turn;
  /** Turns between the user turn and the answer (tool calls, tool results, earlier answers). */
  readonly between: readonly Turn[];
  /** The existing assistant answer, never altered. */
  readonly answer: string;
}

/** A chat message as sent to an OpenAI-compatible endpoint. */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant";
  readonly content: string;
}

/** Token counts of one LLM call. */
export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** True when the server sent no `usage` and the counts come from a local tokenizer. */
  readonly estimated: boolean;
}

/** What one pipeline stage made of one input line, in input order. */
export type Outcome =
  | { readonly kind: "record"; readonly line: number; readonly json: string }
  | {
    readonly kind: "reject";
    readonly line: number;
    readonly reason: string;
    /** The raw input text, cut when huge. */
    readonly raw: string;
    /** Nothing after this line could be read (see {@linkcode Line}). */
    readonly final?: true;
  };
