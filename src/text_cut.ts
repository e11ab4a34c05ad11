/**
 * Cutting text to a length without splitting a character: JavaScript counts UTF-16 code units,
 * and a cut between the two halves of a surrogate pair (an emoji, a rare CJK character) leaves a
 * lone surrogate, which strict JSON readers refuse and UTF-8 encoders replace.
 *
 * @module
 */

/**
 * The first `max` code units of `text`, one fewer when the cut would split a surrogate pair;
 * then `mark` when anything was cut.
 *
 * @param text Any text.
 * @param max The most code units kept.
 * @param mark Appended when the text was cut (`"…"` says so to a reader).
 * @returns `text` itself when it fits.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { cutText } from "./text_cut.ts";
 *
 * assert.equal(cutText("ab😀", 3, "…"), "ab…");
 * assert.equal(cutText("abc😀", 3, "…"), "abc…");
 * assert.equal(cutText("ab", 3, "…"), "ab");
 * ```
 */
export function cutText(text: string, max: number, mark = ""): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  const end = last >= 0xd800 && last <= 0xdbff ? max - 1 : max;
  return text.slice(0, Math.max(0, end)) + mark;
}
