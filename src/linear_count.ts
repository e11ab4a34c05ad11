/**
 * Token counting in time linear in the text. A BPE encoder merges each pre-token (a word, a run
 * of punctuation or of spaces) in time quadratic in its length, and a pre-token is as long as the
 * text lets it be: one 400 KB word took 40 s, and o200k's pre-tokenizing regex itself overflows
 * the stack on 5 million Chinese characters. So runs long enough to make a long pre-token are cut into
 * pieces of at most {@linkcode MAX_PRETOKEN_LENGTH} before the encoder sees them; text without
 * such runs, which is nearly all text, goes to the encoder whole and is counted exactly.
 *
 * @module
 */

/**
 * The longest pre-token the encoder is given, in UTF-16 code units (`String.length`). At this
 * length merging costs about as much a character as for short words the encoder has not seen
 * (2 to 5 µs on random text); at 1,024 up to twice that. Longer ones in normal text (a row of
 * 300 dashes) are rare.
 */
export const MAX_PRETOKEN_LENGTH = 256;

/**
 * Counts the tokens of `text` exactly when there are at most `limit`; past `limit` it may stop
 * and return any larger number. `limit` is `Infinity` for a full count.
 */
export type LimitedCount = (text: string, limit: number) => number;

// Every o200k (and cl100k) pre-token is a run of letters and marks, with one character before it
// and a contraction ("'ll") after; or up to 3 digits; or a space and a run of symbols (neither
// letters, digits nor spaces) and line ends; or a run of spaces. So in text where no run of one
// class reaches RUN code units, a pre-token has at most RUN - 1, plus 2 for an astral character
// before, plus 3 for the contraction: MAX_PRETOKEN_LENGTH.
const RUN = MAX_PRETOKEN_LENGTH - 4;
const KNOWN = 1;
const LETTER = 2;
const SYMBOL = 4;
const SPACE = 8;
const CLASSES = [LETTER, SYMBOL, SPACE];
const LETTER_CHAR = /^[\p{L}\p{M}]$/u;
const SYMBOL_CHAR = /^[^\s\p{L}\p{N}]$|^[\r\n]$/u;
const SPACE_CHAR = /^\s$/u;

/**
 * Wraps an exact BPE count so that it takes linear time on any text. The count is unchanged for
 * text without a run of {@linkcode MAX_PRETOKEN_LENGTH} - 4 letters, symbols or spaces; such a
 * run is counted in pieces, which adds at most about one token per piece (the merges across each
 * cut that are lost) and costs about as much time a character as short words do.
 *
 * @param count The encoder's exact count, for an o200k- or cl100k-like pre-tokenizer.
 * @returns The count, taking the same `limit`, which defaults to `Infinity`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearCounter, MAX_PRETOKEN_LENGTH } from "./linear_count.ts";
 *
 * const seen: string[] = [];
 * // A stand-in encoder: one token per character.
 * const count = linearCounter((text) => {
 *   seen.push(text);
 *   return text.length;
 * });
 * assert.equal(count("Short words go to the encoder whole."), 36);
 * assert.deepEqual(seen, ["Short words go to the encoder whole."]);
 *
 * seen.length = 0;
 * assert.equal(count("ACGT".repeat(1000)), 4000);
 * assert.equal(seen.length, Math.ceil(4000 / MAX_PRETOKEN_LENGTH));
 * assert.ok(seen.every((text) => text.length <= MAX_PRETOKEN_LENGTH));
 * ```
 */
export function linearCounter(count: LimitedCount): (text: string, limit?: number) => number {
  // Each UTF-16 unit's classes, looked up on first sight; surrogates may be either.
  const classes = new Uint8Array(0x10000);
  classes.fill(KNOWN | LETTER | SYMBOL, 0xd800, 0xe000);
  const classOf = (code: number): number => {
    let kind = classes[code];
    if (kind === 0) {
      const char = String.fromCharCode(code);
      kind = classes[code] = KNOWN | (LETTER_CHAR.test(char) ? LETTER : 0) |
        (SYMBOL_CHAR.test(char) ? SYMBOL : 0) | (SPACE_CHAR.test(char) ? SPACE : 0);
    }
    return kind;
  };
  return (text, limit = Infinity) => {
    let total = 0;
    let from = 0;
    for (let run = longRun(text, 0, classOf); run !== null; run = longRun(text, from, classOf)) {
      if (run.start > from) total += count(text.slice(from, run.start), limit - total);
      for (let start = run.start; start < run.end && total <= limit;) {
        const end = pieceEnd(text, start, run.end);
        total += count(text.slice(start, end), limit - total);
        start = end;
      }
      if (total > limit) return total;
      from = run.end;
    }
    if (from < text.length) total += count(from === 0 ? text : text.slice(from), limit - total);
    return total;
  };
}

/**
 * The first run of at least RUN code units of one class that starts at or after `from`, whole.
 * Any such run holds one of every RUN-th position, so only those are probed: each probe reads
 * at most its run, and a run shorter than RUN, so the search reads each character a few times
 * at worst and about one in 25 in normal text.
 */
function longRun(
  text: string,
  from: number,
  classOf: (code: number) => number,
): { start: number; end: number } | null {
  for (let probe = from + RUN - 1; probe < text.length; probe += RUN) {
    const kind = classOf(text.charCodeAt(probe));
    for (const bit of CLASSES) {
      if ((kind & bit) === 0) continue;
      let start = probe;
      while (start > from && classOf(text.charCodeAt(start - 1)) & bit) start--;
      let end = probe + 1;
      while (end < text.length && classOf(text.charCodeAt(end)) & bit) end++;
      if (end - start >= RUN) return { start, end };
    }
  }
  return null;
}

/** Where the piece of a long run that starts at `start` ends: not inside a surrogate pair. */
function pieceEnd(text: string, start: number, end: number): number {
  if (end - start <= MAX_PRETOKEN_LENGTH) return end;
  const cut = start + MAX_PRETOKEN_LENGTH;
  const code = text.charCodeAt(cut - 1);
  return code >= 0xd800 && code <= 0xdbff ? cut - 1 : cut;
}
