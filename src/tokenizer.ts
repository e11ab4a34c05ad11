/**
 * o200k token counts: a free upper bound, and the exact counter loaded on first need. The
 * encoder costs ~60 MB of memory, and most runs never need an exact count (the bound already
 * fits, the server reports usage), so nothing imports `gpt-tokenizer` statically.
 *
 * @module
 */

import { linearCounter } from "./linear_count.ts";

/**
 * o200k token counting (GPT-4o and later), in linear time; an estimate for other model families.
 * Exact unless the text has 252 letters, symbols or spaces in a row: such a run is counted in
 * pieces of 256 characters, each within about one token of its share (see linear_count.ts).
 */
export interface Tokenizer {
  /** The tokens of `text`; 0 for the empty string. Safe to pass around unbound. */
  readonly countTokens: (text: string) => number;
  /** The tokens of `text` when at most `limit`; past it, stops there and returns a larger number. */
  readonly countTokensUpTo: (text: string, limit: number) => number;
  /** Whether `text` has at most `limit` tokens; stops encoding once past the limit. */
  readonly isWithinTokenLimit: (text: string, limit: number) => boolean;
}

// Dataset text may hold "<|endoftext|>" and the like: count it as the plain text it is, where
// the library's default throws.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

// The one module-level state STYLE allows: a memoised lazy import, so a process loads the
// encoder at most once, and only when a count is needed.
let loading: Promise<Tokenizer> | null = null;
let loaded: Tokenizer | null = null;

/**
 * Loads the o200k tokenizer, once per process; later calls share the first call's promise.
 *
 * @returns The tokenizer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTokenizer } from "./tokenizer.ts";
 *
 * const tokenizer = await loadTokenizer();
 * assert.equal(tokenizer.countTokens("Hello, world!"), 4);
 * assert.equal(tokenizer.isWithinTokenLimit("Hello, world!", 3), false);
 * assert.equal(await loadTokenizer(), tokenizer);
 * ```
 */
export function loadTokenizer(): Promise<Tokenizer> {
  loading ??= import("gpt-tokenizer").then((encoding) => {
    const count = linearCounter((text, limit) => {
      if (limit === Infinity) return encoding.countTokens(text, PLAIN_TEXT);
      const within = encoding.isWithinTokenLimit(text, limit, PLAIN_TEXT);
      return within === false ? limit + 1 : within;
    });
    loaded = {
      countTokens: (text) => count(text),
      countTokensUpTo: count,
      isWithinTokenLimit: (text, limit) => count(text, limit) <= limit,
    };
    return loaded;
  });
  return loading;
}

/**
 * The tokenizer if {@linkcode loadTokenizer} has finished loading it, else `null`. Lets a hot
 * path count synchronously once the tokenizer is there, and tests check it was never needed.
 *
 * @returns The loaded tokenizer, or `null`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadedTokenizer, loadTokenizer } from "./tokenizer.ts";
 *
 * assert.equal(loadedTokenizer(), null);
 * const tokenizer = await loadTokenizer();
 * assert.equal(loadedTokenizer(), tokenizer);
 * ```
 */
export function loadedTokenizer(): Tokenizer | null {
  return loaded;
}

// deno-lint-ignore no-control-regex
const ASCII = /^[\x00-\x7f]*$/;
// deno-lint-ignore no-control-regex
const ASCII_RUNS = /[\x00-\x7f]+/g;

/**
 * An upper bound on the o200k tokens of `text`, without the tokenizer: its UTF-8 size, since
 * every token is at least one byte. Tokenizing costs ~100 µs per KB; this, well under 1 µs.
 *
 * @param text Any text.
 * @returns At least the token count: `text.length` for ASCII, plus 2 per other UTF-16 unit.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokenBound } from "./tokenizer.ts";
 *
 * assert.equal(tokenBound("Hello, world!"), 13); // 4 tokens
 * assert.equal(tokenBound("café"), 6); // 2 tokens
 * ```
 */
export function tokenBound(text: string): number {
  // A UTF-16 unit is 1 byte when ASCII, else at most 3 (a surrogate pair: 4 bytes for 2 units).
  if (ASCII.test(text)) return text.length;
  return text.length + 2 * text.replace(ASCII_RUNS, "").length;
}
